"""What a solve leaves behind: residuals per step, per sample and per block."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
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
    states: torch.Tensor | None = None
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
