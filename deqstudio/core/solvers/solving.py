"""``solve``: find the fixed point of a batch of states with any registered solver, recording every step."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .batch_map import BlockLayout
from .recorder import Recorder
from .registry import DEFAULT_SOLVER, STOP_MODES, check_options, implementation
from .trace import SolverTrace


def solve(
    f: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    *,
    solver: str = DEFAULT_SOLVER,
    max_iter: int = 50,
    tol: float = 1e-4,
    stop_mode: str = "rel",
    callback: Callable[..., None] | None = None,
    layout: BlockLayout | None = None,
    record_states: bool = False,
    extras: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None,
    divergence_factor: float | None = 1e4,
    return_final: bool = False,
    **opts,
) -> tuple[torch.Tensor, SolverTrace]:
    """Find ``z* = f(z*)`` for a batch of states, recording every step.

    Step k is the k-th iterate ``z_k`` the solver evaluated (``z_0`` is ``z0``): the trace's residuals
    at step k are ``f(z_k) − z_k``, the recorded state is ``z_k`` and the extras are computed from
    ``z_k``. The solve returns, per sample, the iterate with the lowest residual, so
    ``trace.final_rel`` is the residual of the returned state itself.

    Each sample stops on its own when its residual (``stop_mode``) reaches ``tol``, turns non-finite
    (any norm, of ``f(z)``, of the residual or of a block, overflows or is NaN: never convergence),
    grows ``divergence_factor`` times past its smallest value, or after ``max_iter`` evaluations of
    ``f``. When ``f`` is a ``BatchMap`` (has ``select``), stopped samples leave the active batch.
    Divergence and non-finite values are results (``converged=False`` with a reason), never
    exceptions. The solve runs under ``torch.no_grad()``.

    Args:
        f: the map, (b, D) → (b, D).
        z0: initial states, (B, D), floating point.
        solver: ``"anderson"``, ``"fixed_point"`` or ``"broyden"``.
        max_iter: the most evaluations of ``f`` per sample.
        tol: stop when the residual is at most this.
        stop_mode: ``"rel"`` (‖f(z) − z‖ / ‖f(z)‖) or ``"abs"`` (‖f(z) − z‖).
        callback: called after each evaluation as ``callback(k, z, fz, residual, active_rows)``.
        layout: the blocks of the state, for per-block residuals; defaults to ``f.layout``.
        record_states: keep the iterate ``z_k`` of every step in ``trace.states``.
        extras: computes per-step quantities from recorded states, ``(n, D) → {name: (n, ...)}``.
        divergence_factor: a residual this many times its minimum is divergence; None never.
        return_final: return each sample's last iterate instead of its best one (``best_step`` is
            then the last step).
        **opts: the solver's own options (anderson: ``m``, ``lam``, ``tau``; fixed_point: ``tau``;
            broyden: ``m``).

    Returns:
        ``(z_star, trace)``: for each sample the iterate ``z_k`` at its best step (lowest residual;
        steps with a non-finite norm never count as best), and the trace.
    """
    options = check_options(solver, opts)
    run = implementation(solver)
    _validate_common(z0, max_iter, tol, stop_mode, divergence_factor, extras, record_states)
    if layout is None:
        layout = getattr(f, "layout", None)
    if layout is not None and layout.dim != z0.shape[1]:
        raise ValueError(f"block layout covers {layout.dim} features but the state has {z0.shape[1]}")

    z0 = z0.detach()
    with torch.no_grad():
        rec = Recorder(
            f,
            z0,
            solver=solver,
            max_iter=int(max_iter),
            tol=float(tol),
            stop_mode=stop_mode,
            layout=layout,
            record_states=record_states,
            divergence_factor=divergence_factor,
            callback=callback,
            return_final=return_final,
        )
        run(rec, z0, **options)
        return rec.finish(extras)


def _validate_common(z0, max_iter, tol, stop_mode, divergence_factor, extras, record_states) -> None:
    if not isinstance(z0, torch.Tensor) or z0.dim() != 2 or not z0.is_floating_point():
        raise ValueError("z0 must be a floating-point tensor of shape (batch, features)")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    if stop_mode not in STOP_MODES:
        raise ValueError(f"stop_mode must be one of {STOP_MODES}, got {stop_mode!r}")
    if divergence_factor is not None and not (divergence_factor > 1):
        raise ValueError(f"divergence_factor must be > 1 or None, got {divergence_factor!r}")
    if extras is not None and not record_states:
        raise ValueError("extras are computed from the recorded states: pass record_states=True")
