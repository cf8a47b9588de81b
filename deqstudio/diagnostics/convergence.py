"""Convergence statistics over a split, and the solver race on the same inputs."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.corruptions import Corruption
from ..core.solvers import SolverSettings, solve
from ..core.solvers.registry import PLAIN_ITERATION, SOLVER_NAMES
from ..errors import Cancelled
from .evaluation import CancelFn, Evaluator, ProgressFn
from .results import write_csv, write_hdf5

SOLVERS = SOLVER_NAMES
DEFAULT_UNROLLED_STEPS = 10
TABLE_STEPS = (1, 10, 20, 40, 100)
HORIZON_TOL = 1e-30  # below any reachable residual: every step of the horizon runs


def held_curve(rel: np.ndarray, nstep: np.ndarray, horizon: int) -> np.ndarray:
    """(N, horizon) residuals, each sample's last finite value held after it stopped (or broke down)."""
    rel = np.asarray(rel, dtype=np.float64)
    out = np.full((rel.shape[0], horizon), np.nan)
    k = min(horizon, rel.shape[1])
    out[:, :k] = rel[:, :k]
    steps = np.minimum(np.asarray(nstep).astype(int), horizon)
    out[np.arange(horizon)[None, :] >= steps[:, None]] = np.nan
    out[~np.isfinite(out)] = np.nan  # an overflowed step is a gap, filled with the last finite value
    for j in range(1, horizon):  # forward fill
        gap = np.isnan(out[:, j])
        out[gap, j] = out[gap, j - 1]
    return out


@dataclass
class ConvergenceStats:
    """Per solver (S): steps to converge and final residual per sample (S, N) at the model's tolerance,
    and the mean relative residual of the whole state and of z_fuse at each step of a fixed horizon (S, K)."""

    model: str
    split: str
    solvers: np.ndarray  # (S,) str
    tol: float
    max_iter: int
    sample_ids: np.ndarray
    steps: np.ndarray
    final_rel: np.ndarray
    converged: np.ndarray
    wall_s: np.ndarray  # (S,) whole split at the model's tolerance
    mean_rel_per_step: np.ndarray  # (S, K)
    mean_fused_rel_per_step: np.ndarray  # (S, K)
    complete: bool = True

    def fused_at(self, steps=TABLE_STEPS) -> np.ndarray:
        """(S, len(steps)): the paper's Table 9 view, mean z_fuse relative residual at those steps (1-based)."""
        k = self.mean_fused_rel_per_step.shape[1]
        return np.stack([[row[s - 1] if 1 <= s <= k else np.nan for s in steps] for row in self.mean_fused_rel_per_step])

    def to_csv(self, path: str | os.PathLike) -> Path:
        rows = []
        for s, name in enumerate(self.solvers):
            for k in range(self.mean_rel_per_step.shape[1]):
                rows.append([name, k + 1, self.mean_rel_per_step[s, k], self.mean_fused_rel_per_step[s, k]])
        return write_csv(path, ("solver", "step", "mean_rel_residual", "mean_fused_rel_residual"), rows)

    def to_hdf5(self, path: str | os.PathLike) -> Path:
        arrays = {k: getattr(self, k) for k in ("solvers", "sample_ids", "steps", "final_rel", "converged", "wall_s",
                                                  "mean_rel_per_step", "mean_fused_rel_per_step")}
        attrs = {"model": self.model, "split": self.split, "tol": self.tol, "max_iter": self.max_iter,
                 "complete": self.complete}
        return write_hdf5(path, "convergence", arrays, attrs)


def _settings(solver: str, max_iter: int, tol: float) -> SolverSettings:
    return SolverSettings(solver=solver, max_iter=max_iter, tol=tol, stop_mode="rel")


def convergence_stats(
    evaluator: Evaluator,
    *,
    solvers=SOLVERS,
    split: str = "test",
    max_iter: int = 100,
    tol: float | None = None,
    corruptions: dict[str, Corruption] | None = None,
    model_name: str = "",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> ConvergenceStats:
    adapter = evaluator.adapter
    if not adapter.capabilities.solver:
        raise ValueError(f"a {adapter.name} model has no solver to study")
    tol = adapter.solver_defaults.tol if tol is None else tol
    ids = evaluator.dataset.split(split)
    n_s = len(solvers)
    steps, final, conv = np.zeros((n_s, len(ids)), int), np.full((n_s, len(ids)), np.nan), np.zeros((n_s, len(ids)), bool)
    wall = np.full(n_s, np.nan)
    per_step, fused_per_step = np.full((n_s, max_iter), np.nan), np.full((n_s, max_iter), np.nan)
    complete = True
    try:
        for s, solver in enumerate(solvers):
            t0 = time.perf_counter()
            r = evaluator.run(ids, corruptions, _settings(solver, max_iter, tol), cancel)
            wall[s] = time.perf_counter() - t0
            steps[s], final[s], conv[s] = r.steps, r.final_rel, r.converged
            whole, fused = _horizon_curves(evaluator, ids, corruptions, solver, max_iter, cancel)
            per_step[s], fused_per_step[s] = whole.mean(axis=0), fused.mean(axis=0)
            if progress is not None:
                progress((s + 1) / n_s)
    except Cancelled:
        complete = False
    return ConvergenceStats(model_name, split, np.array(solvers), tol, max_iter, ids, steps, final, conv, wall,
                            per_step, fused_per_step, complete)


def _horizon_curves(evaluator, ids, corruptions, solver, horizon, cancel, batch=400, max_steps=None):
    whole, fused = [], []
    for start in range(0, len(ids), batch):
        if cancel is not None and cancel():
            raise Cancelled()
        problem = evaluator.fixed_point_problem(ids[start : start + batch], corruptions)
        with torch.no_grad():
            _, trace = solve(problem.f, problem.z0, solver=solver, max_iter=max_steps or horizon, tol=HORIZON_TOL,
                             divergence_factor=None)
        whole.append(held_curve(trace.rel, trace.nstep, horizon))
        fused.append(held_curve(trace.block_rel[:, :, -1], trace.nstep, horizon))
    return np.concatenate(whole), np.concatenate(fused)


@dataclass
class SolverRace:
    """The solvers on the same inputs: mean residual per step, evaluations, wall time, agreement of z*."""

    solvers: np.ndarray  # (S,) str; "unrolled" is K plain iterations from zero (K: the model's unrolled steps)
    sample_ids: np.ndarray
    rel_per_step: np.ndarray  # (S, K) mean over the samples, last value held
    evaluations: np.ndarray  # (S,) mean per sample
    wall_ms: np.ndarray  # (S,)
    converged_fraction: np.ndarray
    z_disagreement: np.ndarray  # (S,) mean ‖z*_s − z*_ref‖ / ‖z*_ref‖, reference: the first solver

    def to_csv(self, path) -> Path:
        rows = [[name, k + 1, self.rel_per_step[s, k]] for s, name in enumerate(self.solvers)
                for k in range(self.rel_per_step.shape[1])]
        return write_csv(path, ("solver", "step", "mean_rel_residual"), rows)

    def to_hdf5(self, path) -> Path:
        arrays = {k: getattr(self, k) for k in ("solvers", "sample_ids", "rel_per_step", "evaluations", "wall_ms",
                                                  "converged_fraction", "z_disagreement")}
        return write_hdf5(path, "solver_race", arrays, {})


def solver_race(
    evaluator: Evaluator, ids, *, corruptions=None, solvers=SOLVERS, include_unrolled: bool = True,
    max_iter: int = 100, tol: float | None = None, unrolled_steps: int | None = None,
) -> SolverRace:
    """The solvers on one batch. The "unrolled" row iterates K times from zero (K: ``unrolled_steps``, by default
    the model's own, else 10) and keeps f^K(0): its trace records the K + 1 iterates z_0 .. z_K."""
    adapter = evaluator.adapter
    ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
    problem = evaluator.fixed_point_problem(ids, corruptions)
    tol = adapter.solver_defaults.tol if tol is None else tol
    f, z0 = problem.f, problem.z0
    runs = [(s, s, max_iter, tol, False) for s in solvers]
    if include_unrolled:
        k = unrolled_steps or getattr(adapter, "unrolled_steps", None) or DEFAULT_UNROLLED_STEPS
        runs.append(("unrolled", PLAIN_ITERATION, int(k) + 1, HORIZON_TOL, True))
    names, curves, evals, wall, conv, zs = [], [], [], [], [], []
    for name, solver, limit, t, last in runs:
        t0 = time.perf_counter()
        with torch.no_grad():
            z, trace = solve(f, z0, solver=solver, max_iter=limit, tol=t, divergence_factor=None, return_final=last)
        wall.append((time.perf_counter() - t0) * 1e3)
        names.append(name)
        curves.append(held_curve(trace.rel, trace.nstep, max_iter).mean(axis=0))
        evals.append(float(np.mean(trace.nstep)))
        conv.append(float(np.mean(trace.converged)) if name != "unrolled" else float(np.mean(trace.final_rel <= tol)))
        zs.append(z.detach().double().cpu())
    ref = zs[0]
    disagreement = [float(((z - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-12)).mean()) for z in zs]
    return SolverRace(np.array(names), ids, np.stack(curves), np.array(evals), np.array(wall), np.array(conv),
                      np.array(disagreement))
