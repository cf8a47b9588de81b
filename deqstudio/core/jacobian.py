"""Jacobian regularisation: Hutchinson estimates of ‖∂f/∂z‖_F² at the fixed point."""

from __future__ import annotations

import torch


def jacobian_frobenius_estimate(
    fz: torch.Tensor, z: torch.Tensor, *, vectors: int = 1, generator: torch.Generator | None = None, create_graph: bool = True
) -> torch.Tensor:
    """Unbiased estimate of ``‖J‖_F²`` summed over the batch, with J = ∂fz/∂z.

    Uses ``E_v ‖vᵀ J‖² = ‖J‖_F²`` for v ~ N(0, I), averaged over ``vectors`` draws. ``fz`` must be
    computed from ``z`` with autograd on. With ``create_graph`` the estimate is differentiable, to be
    used as a loss.
    """
    if vectors < 1:
        raise ValueError(f"vectors must be >= 1, got {vectors}")
    total = fz.new_zeros(())
    for _ in range(vectors):
        v = torch.randn(fz.shape, generator=generator, dtype=fz.dtype, device=fz.device)
        (vJ,) = torch.autograd.grad(fz, z, v, retain_graph=True, create_graph=create_graph)
        total = total + vJ.pow(2).sum()
    return total / vectors


def jacobian_regulariser(fz: torch.Tensor, z: torch.Tensor, *, vectors: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """The training loss term: ``‖J‖_F²`` per state element (the DEQ papers' normalisation)."""
    return jacobian_frobenius_estimate(fz, z, vectors=vectors, generator=generator) / z.numel()
