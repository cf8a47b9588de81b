"""Spectral radius and block coupling of the Jacobian at an equilibrium, and the contraction a solve showed.

ρ(J) < 1 is what lets plain iteration converge near z*; ρ ≥ 1 means it cannot (an accelerated solver may still
find z*). The block coupling ‖∂f_a/∂z_b‖₂ says how strongly block b's state drives block a's update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..solvers.batch_map import BlockLayout


@dataclass
class SpectralEstimate:
    """ρ per row, how it was found, the Krylov steps taken and whether each row's estimate converged."""

    radius: np.ndarray  # (B,)
    method: str  # "arnoldi"
    steps: int
    converged: np.ndarray  # (B,) bool


def arnoldi_radius(matvec: Callable[[torch.Tensor], torch.Tensor], batch: int, dim: int, *, dtype=torch.float64,
                   device="cpu", max_steps: int = 60, tol: float = 1e-6, check_every: int = 5,
                   seed: int = 0, callback: Callable[[int], None] | None = None) -> SpectralEstimate:
    """The largest |eigenvalue| of each row's J by Arnoldi iteration on products ``matvec(v)`` = J v (B, D).

    Each row builds its own Krylov basis (Gram-Schmidt applied twice, in ``dtype``). Every ``check_every``
    steps the Ritz values of the Hessenberg matrix are computed; a row has converged when the Ritz pair of
    largest modulus has a residual ‖J Q y − θ Q y‖ = h_{k+1,k}·|y_k| below ``tol``·|θ|, or when its Krylov
    space became invariant (its Ritz values are then exact eigenvalues). The start vector is seeded.
    ``callback(k)`` is called before each product (it may raise to stop).
    """
    m = max(1, min(int(max_steps), dim))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(batch, dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    q = q / q.norm(dim=1, keepdim=True)
    Q = torch.zeros(batch, m + 1, dim, dtype=dtype, device=device)
    H = torch.zeros(batch, m + 1, m, dtype=torch.float64, device=device)
    Q[:, 0] = q
    radius = np.full(batch, np.nan)
    done = np.zeros(batch, dtype=bool)
    k = 0
    for k in range(m):
        if callback is not None:
            callback(k)
        w = matvec(Q[:, k]).to(dtype)
        basis = Q[:, : k + 1]
        h = (basis * w[:, None, :]).sum(dim=2)  # broadcast products: batched mat-vec products are slow on CPUs
        w = w - (h[:, :, None] * basis).sum(dim=1)
        h2 = (basis * w[:, None, :]).sum(dim=2)
        w = w - (h2[:, :, None] * basis).sum(dim=1)
        h = (h + h2).to(torch.float64)
        beta = w.norm(dim=1).to(torch.float64)
        scale = H[:, : k + 1, : k + 1].abs().amax(dim=(1, 2)).clamp_min(h.abs().amax(dim=1)).clamp_min(1e-300)
        invariant = (beta <= 1e-12 * scale).cpu().numpy()
        H[:, : k + 1, k] = h
        H[:, k + 1, k] = torch.where(torch.as_tensor(invariant, device=device), torch.zeros_like(beta), beta)
        Q[:, k + 1] = torch.where(torch.as_tensor(invariant, device=device)[:, None], torch.zeros_like(w),
                                  w / beta.clamp_min(1e-300).to(dtype)[:, None])
        last = k + 1 == m
        if (k + 1) % check_every == 0 or last or (invariant & ~done).any():
            theta, residual = _ritz(H[:, : k + 2, : k + 1])
            ok = invariant | (residual <= tol * np.maximum(theta, 1e-12)) | (k + 1 == dim)
            update = ~done & (ok | last)
            radius[update] = theta[update]
            done |= ~done & ok
            if done.all():
                break
        # a finished row's basis is frozen: its further products are discarded
        if done.any():
            Q[torch.as_tensor(done, device=device), k + 1] = 0.0
    return SpectralEstimate(radius=radius, method="arnoldi", steps=int(k + 1), converged=done)


def dense_arnoldi_radius(J: np.ndarray, *, tol: float = 1e-8, check_every: int = 5, seed: int = 0,
                         callback: Callable[[int], None] | None = None) -> SpectralEstimate:
    """``arnoldi_radius`` for one (D, D) matrix at hand, in numpy (its small products cost far less than torch's)."""
    J = np.asarray(J, dtype=np.float64)
    dim = J.shape[0]
    q = torch.randn(dim, generator=torch.Generator(device="cpu").manual_seed(seed), dtype=torch.float64).numpy()
    Q = np.zeros((dim + 1, dim))
    H = np.zeros((dim + 1, dim))
    Q[0] = q / np.linalg.norm(q)
    radius, done, k = np.nan, False, 0
    for k in range(dim):
        if callback is not None:
            callback(k)
        w = J @ Q[k]
        h = Q[: k + 1] @ w
        w = w - h @ Q[: k + 1]
        h2 = Q[: k + 1] @ w
        w = w - h2 @ Q[: k + 1]
        H[: k + 1, k] = h + h2
        beta = float(np.linalg.norm(w))
        invariant = beta <= 1e-12 * max(float(np.abs(H[: k + 1, : k + 1]).max()), 1e-300)
        H[k + 1, k] = 0.0 if invariant else beta
        Q[k + 1] = 0.0 if invariant else w / beta
        if (k + 1) % check_every == 0 or invariant or k + 1 == dim:
            theta, residual = _ritz(torch.from_numpy(H[None, : k + 2, : k + 1]))
            radius = float(theta[0])
            if invariant or residual[0] <= tol * max(radius, 1e-12) or k + 1 == dim:
                done = True
                break
    return SpectralEstimate(radius=np.array([radius]), method="arnoldi", steps=int(k + 1), converged=np.array([done]))


def _ritz(H: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(|θ| of the largest Ritz value, its residual) per row, from the (k+1, k) Hessenberg matrices."""
    k = H.shape[2]
    values, vectors = np.linalg.eig(H[:, :k, :].cpu().numpy())
    below = np.abs(H[:, k, k - 1].cpu().numpy())
    i = np.argmax(np.abs(values), axis=1)
    rows = np.arange(H.shape[0])
    y = vectors[rows, :, i]  # (B, k): each row's eigenvector of its largest Ritz value
    theta = np.abs(values[rows, i])
    residual = below * np.abs(y[:, -1]) / np.maximum(np.linalg.norm(y, axis=1), 1e-300)
    return theta, residual


def dense_radius(jacobians: torch.Tensor) -> np.ndarray:
    """ρ of each (D, D) Jacobian from all its eigenvalues (float64): the reference, for small states."""
    values = np.linalg.eigvals(jacobians.detach().cpu().double().numpy())
    return np.abs(values).max(axis=-1)


def block_norms(jacobians: torch.Tensor, layout: BlockLayout) -> np.ndarray:
    """‖∂f_a/∂z_b‖₂ (largest singular value) for every pair of blocks, (B, nblocks, nblocks): rows the updated
    block a, columns the influencing block b."""
    J = jacobians.detach().double()
    edges = np.cumsum((0, *layout.sizes))
    n = len(layout.sizes)
    out = np.zeros((J.shape[0], n, n))
    if layout.is_uniform:
        d = layout.sizes[0]
        blocks = J.reshape(J.shape[0], n, d, n, d).permute(0, 1, 3, 2, 4)
        return torch.linalg.matrix_norm(blocks, ord=2).cpu().numpy()
    for a in range(n):
        for b in range(n):
            out[:, a, b] = torch.linalg.matrix_norm(J[:, edges[a]:edges[a + 1], edges[b]:edges[b + 1]], ord=2).cpu().numpy()
    return out


def block_norms_power(matvec, rmatvec, batch: int, layout: BlockLayout, *, dtype=torch.float64, device="cpu",
                      iterations: int = 30, seed: int = 0) -> np.ndarray:
    """``block_norms`` without the dense Jacobian: power iteration on J_abᵀ J_ab for every pair at once.

    ``matvec``/``rmatvec`` act on (B·n², D) rows (each row of the batch repeated once per pair, pair-major
    within a row: row r·n² + a·n + b); use ``Linearisation.rows`` to build them.
    """
    n = len(layout.sizes)
    edges = np.cumsum((0, *layout.sizes))
    D = int(edges[-1])
    out_mask = torch.zeros(n * n, D, dtype=dtype, device=device)
    in_mask = torch.zeros(n * n, D, dtype=dtype, device=device)
    for a in range(n):
        for b in range(n):
            out_mask[a * n + b, edges[a]:edges[a + 1]] = 1.0
            in_mask[a * n + b, edges[b]:edges[b + 1]] = 1.0
    out_mask, in_mask = out_mask.repeat(batch, 1), in_mask.repeat(batch, 1)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(batch * n * n, D, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype) * in_mask
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
    sigma = torch.zeros(batch * n * n, dtype=dtype, device=device)
    for _ in range(iterations):
        u = matvec(v) * out_mask
        sigma = u.norm(dim=1)
        w = rmatvec(u) * in_mask
        size = w.norm(dim=1, keepdim=True)
        v = torch.where(size > 0, w / size.clamp_min(1e-300), v)
    return sigma.detach().double().cpu().numpy().reshape(batch, n, n)


def observed_contraction(residuals: np.ndarray, best_step: int | None = None, last: int = 5) -> float | None:
    """The geometric mean ratio of successive residuals over the solve's last ``last`` steps up to ``best_step``.

    Plain iteration near z* shrinks the residual by about ρ(J) per step; an accelerated solver by less. None
    when the solve took fewer than two steps or a residual there is zero or not finite.
    """
    r = np.asarray(residuals, dtype=np.float64)
    end = len(r) - 1 if best_step is None else int(best_step)
    if end < 1:
        return None
    start = max(0, end - last)
    a, b = r[start], r[end]
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 0 or b <= 0:
        return None
    return float((b / a) ** (1.0 / (end - start)))
