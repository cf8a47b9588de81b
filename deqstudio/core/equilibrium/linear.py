"""The two linear solves through an equilibrium, both by the implicit function theorem with the same solvers.

Sensitivity: p(x) = read-out of z*(x), z* = f(z*, x), so ∂p/∂x = ∂p/∂z (I − J)⁻¹ ∂f/∂x. One adjoint fixed point
y = Jᵀ y + (∂p/∂z)ᵀ gives y = (I − J)⁻ᵀ (∂p/∂z)ᵀ, and ∂p/∂x_m = yᵀ ∂f/∂x_m for every modality at once.

Linear response: the shift z* would make under an input change Δx if the model were linear at z*,
δz = (I − J)⁻¹ ∂f/∂x Δx, the fixed point of δ = J δ + ∂f/∂x Δx.

Both fixed points are solved with DEQ Studio's solvers (the model's own solver and options). A solve that does
not reach its tolerance, which happens when ρ(J) ≥ 1, falls back to a direct dense solve when the Jacobian
is at hand, and says so.
"""

from __future__ import annotations

from collections.abc import Callable
import torch

from ..solvers import solve
from ..solvers.settings import SolverSettings
from .report import LinearSolve

LINEAR_MAX_ITER = 200


def linear_tolerance(dtype: torch.dtype) -> float:
    """What a linear solve in this precision can reach: 1e-10 in float64, 1e-5 in float32."""
    return 1e-10 if dtype == torch.float64 else 1e-5


def solve_affine(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, settings: SolverSettings, *,
                 dense: torch.Tensor | None = None, transpose: bool = False, tol: float | None = None,
                 callback=None) -> tuple[torch.Tensor, list[LinearSolve]]:
    """y = apply(y) + b for each row, from y = 0, with ``settings``' solver; (y, per-row ``LinearSolve``).

    ``dense`` (B, D, D), when given, is J for the direct fallback (``transpose``: the system is y = Jᵀ y + b).
    ``callback`` is the solver's per-step callback (it may raise to stop).
    """
    tol = linear_tolerance(b.dtype) if tol is None else tol
    y, trace = solve(lambda v: apply(v) + b, torch.zeros_like(b), solver=settings.solver, max_iter=LINEAR_MAX_ITER,
                     tol=tol, stop_mode="rel", divergence_factor=None, callback=callback, **settings.option_dict)
    info = [LinearSolve(settings.solver, int(trace.nstep[i]), bool(trace.converged[i]), float(trace.final_rel[i]))
            for i in range(b.shape[0])]
    failed = [i for i, s in enumerate(info) if not s.converged]
    if failed and dense is not None:
        J = dense.to(torch.float64)
        eye = torch.eye(J.shape[1], dtype=torch.float64, device=J.device)
        for i in failed:
            A = eye - (J[i].T if transpose else J[i])
            direct = torch.linalg.solve(A, b[i].to(torch.float64))
            if torch.isfinite(direct).all():
                y[i] = direct.to(y.dtype)
                info[i].fallback = "direct"
    return y, info


def adjoint_sensitivity(lin, labels: torch.Tensor, settings: SolverSettings, *, dense: torch.Tensor | None = None,
                        callback=None) -> tuple[list[torch.Tensor], list[LinearSolve]]:
    """∂p_label/∂x_m of each row through its equilibrium: per modality a (B, size) gradient, and the solves.

    ``lin`` is the map linearised at the equilibria (a ``Linearisation``); ``labels`` (B,) the class (or label)
    whose probability is differentiated. With ``dense`` (the rows' Jacobians, float64) the adjoint solve runs on
    the dense matrices.
    """
    g = lin.probability_grad(labels)
    if dense is not None:
        Jt = dense.to(torch.float64).transpose(1, 2)
        y, info = solve_affine(lambda v: torch.einsum("bij,bj->bi", Jt, v), g.to(torch.float64), settings,
                               dense=dense, transpose=True, callback=callback)
    else:
        y, info = solve_affine(lin.rmatvec, g, settings, transpose=True, callback=callback)
    return lin.input_vjp(y.to(lin.dtype)), info


def linear_response(lin, dxs, settings: SolverSettings, *, dense: torch.Tensor | None = None,
                    callback=None, tol: float | None = None) -> tuple[torch.Tensor, list[LinearSolve]]:
    """δz = (I − J)⁻¹ ∂f/∂x Δx per row, (B, D), at the linearisation's states and inputs; and the solves."""
    b = lin.input_jvp(dxs)
    if dense is not None:
        J = dense.to(torch.float64)
        return solve_affine(lambda v: torch.einsum("bij,bj->bi", J, v), b.to(torch.float64), settings, dense=dense,
                            callback=callback, tol=tol)
    return solve_affine(lin.matvec, b, settings, callback=callback, tol=tol)
