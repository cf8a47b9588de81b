"""Limited-memory ("good") Broyden on ``g(z) = f(z) − z``.

The inverse Jacobian of ``g`` starts at ``−I`` and takes rank-one updates ``u vᵀ``. Each update is
built on the estimate made of all the updates before it (its secant condition holds for that
estimate), so the oldest one cannot be dropped on its own: the later ones would lose their secant
conditions and the iteration drifts off, even on a linear contraction. When the ``m`` updates of the
memory are used up, the estimate restarts from ``−I`` and the step that would have been the
(m+1)-th update becomes the first of the new memory.
"""

from __future__ import annotations

import torch

from .recorder import Recorder


def _matvec(U: torch.Tensor, Vt: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(−I + U Vᵀ) x for batched U (B, D, n), Vᵀ (B, n, D), x (B, D)."""
    return -x + torch.bmm(U, torch.bmm(Vt, x.unsqueeze(2))).squeeze(2)


def _rmatvec(U: torch.Tensor, Vt: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """xᵀ (−I + U Vᵀ) for batched U, Vᵀ and x (B, D)."""
    return -x + torch.bmm(torch.bmm(x.unsqueeze(1), U), Vt).squeeze(1)


def broyden(rec: Recorder, z0: torch.Tensor, *, m: int) -> None:
    batch, dim = z0.shape
    U = z0.new_zeros(batch, dim, m)
    Vt = z0.new_zeros(batch, m, dim)
    z = z0
    fz, keep = rec.evaluate(z)
    if keep is not None:
        z, fz, U, Vt = z[keep], fz[keep], U[keep], Vt[keep]
    g = fz - z
    update = g  # −(−I) g
    n = 0
    while not rec.done:
        z_new = z + update
        fz, keep = rec.evaluate(z_new)
        g_new = fz - z_new
        if keep is not None:
            z, z_new, g, g_new, update, U, Vt = (
                t[keep] for t in (z, z_new, g, g_new, update, U, Vt)
            )
        dz, dg = z_new - z, g_new - g
        if n == m:
            n = 0  # memory full: restart from −I with this step's secant pair
        Un, Vtn = U[:, :, :n], Vt[:, :n]
        vt = _rmatvec(Un, Vtn, dz)
        denom = (vt * dg).sum(dim=1, keepdim=True)
        u = (dz - _matvec(Un, Vtn, dg)) / torch.where(denom.abs() > 1e-30, denom, torch.ones_like(denom))
        ok = (denom.abs() > 1e-30) & torch.isfinite(u).all(dim=1, keepdim=True) & torch.isfinite(vt).all(dim=1, keepdim=True)
        u = torch.where(ok, u, torch.zeros_like(u))
        vt = torch.where(ok, vt, torch.zeros_like(vt))
        U[:, :, n] = u
        Vt[:, n] = vt
        n += 1
        z, g = z_new, g_new
        update = -_matvec(U[:, :, :n], Vt[:, :n], g)
