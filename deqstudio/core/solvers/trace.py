"""What a solve leaves behind: residuals per step, per sample and per block."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from collections.abc import Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

REASONS = ("converged", "max_iter", "diverged", "non-finite")


@dataclass
class SolverTrace:
    """The record of one batched fixed-point solve.

    Arrays are per sample (first axis B) and per evaluation of ``f`` (second axis K, the number of
    evaluations of the slowest sample). Steps a sample did not take, because it converged or stopped
    earlier, are NaN.

    Step k is one state, the iterate ``z_k`` the solver evaluated (``z_0`` is the start): every
    per-step quantity (its residuals, its recorded state, its extras) describes ``z_k``, and the
    solve returned ``z_k`` at ``best_step``, so ``final_rel`` is the residual of the returned state
    and ``extras[...][b, best_step[b]]`` are the returned state's values.

    Attributes:
        abs: ``‖f(z_k) − z_k‖₂`` per sample and step, (B, K).
        rel: ``abs / (‖f(z_k)‖₂ + 1e-9)``, (B, K); +inf at a step where a norm behind it (of the
            residual, of ``f(z_k)``, of a block) is not finite, which never counts as converged.
        block_rel: the relative residual of each block of ``z_k``, (B, K, nblocks), or None when the
            state has no block layout; +inf where that block's norms are not finite.
        nstep: evaluations of ``f`` each sample took, (B,).
        converged: whether the stop criterion reached ``tol`` with every norm finite, (B,).
        best_step: 0-based step whose iterate ``z_k`` was returned (lowest residual, or the last
            step with ``return_final``), (B,).
        reason: why each sample stopped: one of ``REASONS``.
        block_names: names of the blocks, matching the last axis of ``block_rel``.
        states: the iterate ``z_k`` at each step, (B, K, D) tensor, when recorded; NaN after a
            sample stopped.
        extras: per-step quantities computed from the recorded iterates (gates, class
            probabilities, ...), each (B, K, ...).
    """

    solver: str
    stop_mode: str
    tol: float
    abs: np.ndarray
    rel: np.ndarray
    nstep: np.ndarray
    converged: np.ndarray
    best_step: np.ndarray
    reason: list[str]
    wall_time_s: float
    evaluations: int
    block_rel: np.ndarray | None = None
    block_names: tuple[str, ...] = ()
    states: "torch.Tensor | None" = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.abs.shape[0])

    @property
    def residual(self) -> np.ndarray:
        """The residual the stop criterion used, (B, K)."""
        return self.rel if self.stop_mode == "rel" else self.abs

    def at_best(self, values: np.ndarray) -> np.ndarray:
        """``values[b, best_step[b]]`` for a (B, K, ...) array."""
        return values[np.arange(self.batch_size), self.best_step]

    @property
    def final_rel(self) -> np.ndarray:
        """Relative residual ``‖f(z*) − z*‖ / (‖f(z*)‖ + 1e-9)`` of the returned state z*, (B,)."""
        return self.at_best(self.rel)

    @property
    def final_abs(self) -> np.ndarray:
        """Absolute residual ``‖f(z*) − z*‖`` of the returned state z*, (B,)."""
        return self.at_best(self.abs)

    def sample(self, b: int) -> "SolverTrace":
        """The trace of one sample, cut to the steps it took."""
        k = int(self.nstep[b])
        return SolverTrace(
            solver=self.solver,
            stop_mode=self.stop_mode,
            tol=self.tol,
            abs=self.abs[b : b + 1, :k],
            rel=self.rel[b : b + 1, :k],
            nstep=self.nstep[b : b + 1],
            converged=self.converged[b : b + 1],
            best_step=self.best_step[b : b + 1],
            reason=[self.reason[b]],
            wall_time_s=self.wall_time_s,
            evaluations=k,
            block_rel=None if self.block_rel is None else self.block_rel[b : b + 1, :k],
            block_names=self.block_names,
            states=None if self.states is None else self.states[b : b + 1, :k],
            extras={name: v[b : b + 1, :k] for name, v in self.extras.items()},
        )

    def rows(self, index: np.ndarray) -> "SolverTrace":
        """The trace of some samples (an index array), every step kept."""
        index = np.asarray(index, dtype=np.int64)
        def pick(a):
            return None if a is None else a[index]

        return replace(
            self, abs=self.abs[index], rel=self.rel[index], nstep=self.nstep[index],
            converged=self.converged[index], best_step=self.best_step[index],
            reason=[self.reason[i] for i in index], block_rel=pick(self.block_rel), states=pick(self.states),
            extras={name: v[index] for name, v in self.extras.items()},
        )


def _pad_steps(values: np.ndarray, steps: int) -> np.ndarray:
    """(B, K, ...) padded with NaN to (B, steps, ...)."""
    if values.shape[1] == steps:
        return values
    pad = np.full((values.shape[0], steps - values.shape[1], *values.shape[2:]), np.nan)
    return np.concatenate([values.astype(np.float64, copy=False), pad], axis=1)


def concat_traces(traces: Sequence[SolverTrace]) -> SolverTrace:
    """One trace from the traces of consecutive batches, as if they had been solved together: steps a
    sample did not take are NaN, ``evaluations`` is the slowest sample's, wall times add up. Recorded
    states are not kept."""
    if not traces:
        raise ValueError("concat_traces needs at least one trace")
    first = traces[0]
    steps = max(t.abs.shape[1] for t in traces)

    def cat(name):
        values = [getattr(t, name) for t in traces]
        return None if any(v is None for v in values) else np.concatenate([_pad_steps(v, steps) for v in values])

    extras = {name: np.concatenate([_pad_steps(t.extras[name], steps) for t in traces])
              for name in first.extras if all(name in t.extras for t in traces)}
    return SolverTrace(
        solver=first.solver, stop_mode=first.stop_mode, tol=first.tol, abs=cat("abs"), rel=cat("rel"),
        nstep=np.concatenate([t.nstep for t in traces]), converged=np.concatenate([t.converged for t in traces]),
        best_step=np.concatenate([t.best_step for t in traces]), reason=[r for t in traces for r in t.reason],
        wall_time_s=float(sum(t.wall_time_s for t in traces)), evaluations=max(t.evaluations for t in traces),
        block_rel=cat("block_rel"), block_names=first.block_names, extras=extras,
    )
