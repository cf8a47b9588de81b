"""Bookkeeping shared by every solver: residuals, stopping, compaction, the best iterate, the trace.

Step k of a solve is the iterate ``z_k`` the solver evaluated: its residual ``f(z_k) − z_k``, its
recorded state ``z_k`` and the per-step extras computed from ``z_k``; the solve returns the iterate
with the lowest residual, so the residual reported for the returned state is the one measured on it.

Per step it computes the block norms of ``f(z) − z`` and ``f(z)``, moves them to the host (the one
sync of a step), tests the stop criterion there with numpy, and keeps a reference to the iterate
``z`` (no copy). Everything else (relative residuals, best steps, the returned states, the trace
arrays) is assembled once at the end, so that recording the full trace costs little next to one
evaluation of ``f``.

A norm that is not finite (of ``f(z)``, of the residual, of any block) is never convergence: the
relative criterion ``abs / ‖f(z)‖`` is 0 when ``‖f(z)‖`` overflows while the difference is finite,
so such a step is marked non-finite before any criterion is read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.linalg import vector_norm

from .batch_map import BlockLayout
from .trace import REASONS, SolverTrace

_RUNNING, _CONVERGED, _MAX_ITER, _DIVERGED, _NON_FINITE = 0, 1, 2, 3, 4
_EPS = 1e-9
# Divergence is only judged after a few steps: Anderson's first mixes may raise the residual.
_DIVERGENCE_GRACE = 5


def _relative(abs_: np.ndarray, f_norm: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """``abs / (‖f‖ + ε)`` where every norm behind it is finite; +inf where one is not (NaN stays NaN).

    An overflowing ``‖f‖`` would otherwise give 0, a perfect-looking residual for a state that blew up.
    """
    rel = abs_ / (f_norm + _EPS)
    rel[~finite & ~np.isnan(rel)] = np.inf
    return rel


class _Segment:
    """Steps taken with one active set of rows."""

    def __init__(self, active: np.ndarray | None, start: int) -> None:
        self.active = active  # original row of each active row; None: all rows
        self.start = start
        self.norms: list[np.ndarray] = []  # per step (2, b, nblocks): ‖f(z) − z‖ and ‖f(z)‖ per block
        self.iterates: list[torch.Tensor] = []  # per step the iterate z that was evaluated, (b, D)


class Recorder:
    """Evaluates ``f`` for a solver, records what happened, and decides who stops.

    A solver asks ``evaluate(z)`` for ``f(z)`` on the active rows. The returned ``keep`` index, when
    not None, lists the rows (positions in the current active batch) that go on; the solver then
    index-selects its own per-row state with it. Rows leave the batch only when ``f`` supports
    ``select`` (a ``BatchMap``); with a plain callable they stay in the batch, frozen.
    """

    def __init__(
        self,
        f: Callable[[torch.Tensor], torch.Tensor],
        z0: torch.Tensor,
        *,
        solver: str,
        max_iter: int,
        tol: float,
        stop_mode: str,
        layout: BlockLayout | None,
        record_states: bool,
        divergence_factor: float | None,
        callback: Callable[..., None] | None,
        return_final: bool = False,
    ) -> None:
        self.f = f
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.stop_mode = stop_mode
        self.layout = layout
        self.record_states = record_states
        self.divergence_factor = divergence_factor
        self.callback = callback
        self.return_final = return_final
        self.compactable = callable(getattr(f, "select", None))

        batch = z0.shape[0]
        self.batch = batch
        self.z0 = z0
        self.k = 0
        self.done = batch == 0
        self.frozen: np.ndarray | None = None  # rows stopped but still iterated (plain callables)
        self.min_abs = np.full(batch, np.inf)
        self.out_nstep = np.zeros(batch, dtype=np.int64)
        self.out_status = np.zeros(batch, dtype=np.int64)
        self.last_diff: torch.Tensor | None = None
        self._segments = [_Segment(None, 0)]
        self._t0 = time.perf_counter()

    @property
    def active(self) -> np.ndarray | None:
        return self._segments[-1].active

    def _norms(self, diff: torch.Tensor, fz: torch.Tensor) -> np.ndarray:
        """‖f(z) − z‖ and ‖f(z)‖ per block, (2, b, nblocks), on the host."""
        layout = self.layout
        if layout is None:
            pair = (vector_norm(diff, dim=1, keepdim=True), vector_norm(fz, dim=1, keepdim=True))
        elif layout.is_uniform:
            shape = (diff.shape[0], len(layout.sizes), layout.sizes[0])
            pair = (vector_norm(diff.view(shape), dim=2), vector_norm(fz.view(shape), dim=2))
        else:
            pair = (layout.block_norms(diff), layout.block_norms(fz))
        return torch.stack(pair).cpu().numpy().astype(np.float64, copy=False)

    def evaluate(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``f(z)`` on the active rows, recorded; returns ``(f(z), keep)``.

        ``self.last_diff`` holds ``f(z) − z`` afterwards, for solvers that need the residual.
        """
        fz = self.f(z)
        diff = fz - z
        self.last_diff = diff
        norms = self._norms(diff, fz)
        segment = self._segments[-1]
        segment.norms.append(norms)
        segment.iterates.append(z)
        k = self.k
        self.k += 1

        with np.errstate(invalid="ignore", over="ignore"):
            joint = np.sqrt(np.square(norms).sum(axis=2))
            abs_ = joint[0]
            crit = abs_ if self.stop_mode == "abs" else abs_ / (joint[1] + _EPS)
            # A non-finite block norm makes its joint norm non-finite too. A non-finite ‖f(z) − z‖ already
            # makes the criterion non-finite; a non-finite ‖f(z)‖ must as well (rel would read 0).
            image_finite = np.isfinite(joint[1])
            if not image_finite.all():
                crit = np.where(image_finite | np.isnan(crit), crit, np.inf)
            going = np.isfinite(crit) & (crit > self.tol)  # a non-finite residual stops the sample too
            diverged = None
            if self.divergence_factor is not None:
                self.min_abs = np.fmin(self.min_abs, abs_)
                if k >= _DIVERGENCE_GRACE:
                    diverged = abs_ > self.divergence_factor * self.min_abs
                    going &= ~diverged
        if self.callback is not None:
            self.callback(k, z, fz, crit, segment.active)
        if self.k < self.max_iter and self.frozen is None and going.all():
            return fz, None

        status = np.where(crit <= self.tol, _CONVERGED, _RUNNING)
        status[~np.isfinite(crit)] = _NON_FINITE
        if diverged is not None:
            status[diverged & (status == _RUNNING)] = _DIVERGED
        if self.k >= self.max_iter:
            status[status == _RUNNING] = _MAX_ITER
        if self.frozen is not None:
            status[self.frozen] = _RUNNING
        finished = status != _RUNNING
        if not finished.any():
            return fz, None
        return fz, self._stop_rows(finished, status)

    def _stop_rows(self, finished: np.ndarray, status: np.ndarray) -> torch.Tensor | None:
        active = self.active
        original = np.flatnonzero(finished) if active is None else active[finished]
        self.out_nstep[original] = self.k
        self.out_status[original] = status[finished]

        stopped = finished if self.frozen is None else finished | self.frozen
        if stopped.all():
            self.done = True
            return None
        if not self.compactable:
            self.frozen = stopped
            return None
        keep = np.flatnonzero(~stopped)
        keep_t = torch.from_numpy(keep).to(self.z0.device)
        self.f = self.f.select(keep_t)
        self.min_abs = self.min_abs[keep]
        self._segments.append(_Segment(keep if active is None else active[keep], self.k))
        return keep_t

    def finish(
        self, extras: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None
    ) -> tuple[torch.Tensor, SolverTrace]:
        """The returned state for every row and the assembled trace."""
        batch, steps = self.batch, self.k
        nblocks = len(self.layout.sizes) if self.layout is not None else 1
        segments = [s for s in self._segments if s.norms]
        if len(segments) == 1 and segments[0].active is None:
            norms = np.stack(segments[0].norms, axis=2)  # (2, B, K, nblocks)
        else:
            norms = np.full((2, batch, steps, nblocks), np.nan)
            for seg in segments:
                rows = slice(None) if seg.active is None else seg.active
                norms[:, rows, seg.start : seg.start + len(seg.norms)] = np.stack(seg.norms, axis=2)
        ragged = bool((self.out_nstep < steps).any())
        if ragged:
            norms[:, np.arange(steps)[None, :] >= self.out_nstep[:, None]] = np.nan

        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            block_abs, block_f = norms[0], norms[1]
            abs_ = np.sqrt(np.square(block_abs).sum(axis=2))
            f_norm = np.sqrt(np.square(block_f).sum(axis=2))  # non-finite when a block's is, as in evaluate
            rel = _relative(abs_, f_norm, np.isfinite(abs_) & np.isfinite(f_norm))
            block_rel = _relative(block_abs, block_f, np.isfinite(norms).all(axis=0)) if self.layout is not None else None
        crit = rel if self.stop_mode == "rel" else np.where(np.isfinite(rel), abs_, np.inf)
        if self.return_final:
            best_step = np.maximum(self.out_nstep - 1, 0)
        else:
            best_step = np.nan_to_num(crit, nan=np.inf, posinf=np.inf).argmin(axis=1)

        z_star = self._gather(segments, best_step)
        states = self._stack_states(segments, ragged) if self.record_states else None

        extra_arrays: dict[str, np.ndarray] = {}
        if extras is not None and states is not None and steps:
            for name, value in extras(states.reshape(batch * steps, -1)).items():
                extra_arrays[name] = value.reshape(batch, steps, *value.shape[1:]).detach().cpu().numpy()

        trace = SolverTrace(
            solver=self.solver,
            stop_mode=self.stop_mode,
            tol=self.tol,
            abs=abs_,
            rel=rel,
            nstep=self.out_nstep.copy(),
            converged=self.out_status == _CONVERGED,
            best_step=best_step,
            reason=[REASONS[s - 1] for s in self.out_status],
            wall_time_s=time.perf_counter() - self._t0,
            evaluations=steps,
            block_rel=block_rel,
            block_names=() if self.layout is None else self.layout.names,
            states=states,
            extras=extra_arrays,
        )
        return z_star, trace

    def _gather(self, segments: list[_Segment], best_step: np.ndarray) -> torch.Tensor:
        """The iterate of each row at its best step, from the kept references."""
        if len(segments) == 1 and segments[0].active is None and (best_step == best_step[0]).all():
            z = segments[0].iterates[int(best_step[0])]  # the common case: one step is best for all
            return z.clone() if z is self.z0 else z  # never hand back the caller's own z0
        z_star = self.z0.clone()
        device = z_star.device
        for seg in segments:
            rows = np.arange(self.batch) if seg.active is None else seg.active
            local = best_step[rows] - seg.start
            inside = (local >= 0) & (local < len(seg.iterates))
            for step in np.unique(local[inside]):
                positions = np.flatnonzero(inside & (local == step))
                z_star[torch.from_numpy(rows[positions]).to(device)] = seg.iterates[step][
                    torch.from_numpy(positions).to(device)
                ]
        return z_star

    def _stack_states(self, segments: list[_Segment], ragged: bool) -> torch.Tensor:
        z0 = self.z0
        states = torch.full((self.batch, self.k, z0.shape[1]), math.nan, dtype=z0.dtype, device=z0.device)
        for seg in segments:
            rows = slice(None) if seg.active is None else torch.from_numpy(seg.active).to(z0.device)
            states[rows, seg.start : seg.start + len(seg.iterates)] = torch.stack(seg.iterates, dim=1)
        if ragged:
            nstep = torch.from_numpy(self.out_nstep).to(z0.device)
            states[torch.arange(self.k, device=z0.device)[None, :] >= nstep[:, None]] = math.nan
        return states
