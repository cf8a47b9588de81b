"""Gradients through a fixed point: implicit differentiation and the phantom gradient."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .solvers import solve
from .solvers.registry import DEFAULT_SOLVER


def attach_implicit_backward(
    new_z: torch.Tensor,
    z_star: torch.Tensor,
    *,
    solver: str = DEFAULT_SOLVER,
    max_iter: int = 50,
    tol: float = 1e-6,
    stop_mode: str = "abs",
    **solver_opts,
) -> torch.Tensor:
    """Make backward through ``new_z = f(z*)`` use the implicit-function-theorem gradient.

    ``z_star`` must be a leaf that requires grad and ``new_z = f(z_star)`` one application of the
    map with the parameters attached. On backward, the incoming gradient g is replaced by the
    solution y of the adjoint fixed point ``y = Jᵀ y + g`` (J = ∂f/∂z at z*), found with the same
    solvers, so that parameters receive ``g (I − J)⁻¹ ∂f/∂θ``.

    Returns ``new_z`` itself, with the hook registered.
    """
    if not (z_star.is_leaf and z_star.requires_grad):
        raise ValueError("z_star must be a leaf tensor that requires grad (z_star.detach().requires_grad_())")
    if not new_z.requires_grad:
        return new_z
    inside = False

    def hook(grad: torch.Tensor) -> torch.Tensor:
        nonlocal inside
        if inside:
            return grad
        inside = True
        try:
            def adjoint(y: torch.Tensor) -> torch.Tensor:
                return torch.autograd.grad(new_z, z_star, y, retain_graph=True)[0] + grad

            y, _ = solve(
                adjoint,
                grad.detach().clone(),
                solver=solver,
                max_iter=max_iter,
                tol=tol,
                stop_mode=stop_mode,
                divergence_factor=None,
                **solver_opts,
            )
        finally:
            inside = False
        return y

    new_z.register_hook(hook)
    return new_z


def phantom_gradient(
    f: Callable[[torch.Tensor], torch.Tensor], z_star: torch.Tensor, *, steps: int = 1, tau: float = 1.0
) -> torch.Tensor:
    """The phantom gradient: ``steps`` damped iterations from z* with autograd on.

    ``z ← (1 − τ)·z + τ·f(z)`` starting at ``z_star.detach()``; backward flows through these steps
    only, an inexpensive estimate of the implicit gradient.
    """
    if steps < 1 or not (0.0 < tau <= 1.0):
        raise ValueError(f"phantom gradient needs steps >= 1 and tau in (0, 1], got steps={steps}, tau={tau}")
    z = z_star.detach()
    for _ in range(steps):
        z = f(z) if tau == 1.0 else torch.lerp(z, f(z), tau)
    return z
