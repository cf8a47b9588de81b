"""Equilibrium analyses over a model adapter and a dataset: one sample's report, a sweep cell's statistics, and the
time the analysis takes against one solve (``deqstudio bench``'s ``equilibrium_over_solve``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..core.adapter import ModelAdapter
from ..core.corruptions import Corruption
from ..core.equilibrium.report import EquilibriumReport
from ..core.solvers.settings import SolverSettings
from .evaluation import BatchOutcome, Evaluator

SWEEP_ARNOLDI_STEPS = 20  # Krylov steps per sample in a sweep: ρ to a few digits, at a fraction of a solve
SWEEP_LINEAR_TOL = 1e-4  # the linear response's relative tolerance in a sweep: its ratio needs a few digits
NONLINEAR_FACTOR = 2.0  # the actual shift departs from the linear prediction: more than 2× or less than ½
# per sweep cell (modality, kind, severity): what ``cell_statistics`` returns, in the sweep's files in this order
EQUILIBRIUM_STATISTICS = ("spectral_radius_mean", "spectral_radius_p95", "unstable_fraction", "shift_ratio")


def _settings(adapter: ModelAdapter, settings: SolverSettings | None) -> SolverSettings:
    return settings if settings is not None else (adapter.solver_defaults or SolverSettings())


def equilibrium_report(adapter: ModelAdapter, inputs: Sequence[np.ndarray], z_star: np.ndarray,
                       settings: SolverSettings | None = None, *, residuals: np.ndarray | None = None,
                       best_step: int | None = None, clean: tuple[Sequence[np.ndarray], np.ndarray] | None = None,
                       options=None, cancel: Callable[[], bool] | None = None) -> EquilibriumReport | None:
    """The equilibrium report of one sample (inputs: one (1, size) array per modality; z_star (D,)).

    ``clean`` = (clean inputs, clean z*) adds the linear response to the corruption and starts from the clean
    z*. ``residuals`` and ``best_step`` (the solve's absolute residual per step) give the observed contraction.
    None for a model without a fixed point.
    """
    import torch

    from ..core.equilibrium.analysis import EquilibriumOptions, Reference, analyse_equilibrium

    if not adapter.capabilities.solver:
        return None
    problem = adapter.fixed_point_problem(inputs)
    reference = None
    if clean is not None:
        reference = Reference(adapter.fixed_point_problem(clean[0]), torch.as_tensor(np.asarray(clean[1]))[None])
    return analyse_equilibrium(
        problem, torch.as_tensor(np.asarray(z_star))[None], _settings(adapter, settings), residuals=residuals,
        best_step=best_step, reference=reference, options=options or EquilibriumOptions(),
        input_scales=adapter.feature_scales, block_names=adapter.block_names,
        modality_names=adapter.modality_names, cancel=cancel)


def sweep_cell(evaluator: Evaluator, ids: np.ndarray, corruptions: Mapping[str, Corruption] | None,
               outcome: BatchOutcome, clean: BatchOutcome, settings: SolverSettings | None = None,
               steps: int = SWEEP_ARNOLDI_STEPS, *, inputs=None, clean_inputs=None) -> dict[str, np.ndarray]:
    """Per sample of one sweep cell: ``spectral_radius`` ρ(J) at its equilibrium, and with corruptions
    ``shift_ratio`` = ‖z* − z*_clean‖ / ‖(I − J)⁻¹ ∂f/∂x Δx‖ (linearised at the clean z*; NaN where either
    solve failed or the prediction is zero). Evaluated in the evaluator's batches.

    ``inputs`` and ``clean_inputs``: the samples' (corrupted) and clean model inputs when already at hand
    (the same values ``evaluator.inputs`` would read and corrupt)."""
    from ..core.equilibrium.analysis import linear_shift, spectral_radii

    adapter = evaluator.adapter
    settings = _settings(adapter, settings)
    n = len(ids)
    rho, ratio = np.full(n, np.nan), np.full(n, np.nan)
    z, z0 = outcome.run.z_star, clean.run.z_star
    if z is None:
        return {"spectral_radius": rho, "shift_ratio": ratio}
    for start in range(0, n, evaluator.batch_size):
        rows = slice(start, min(start + evaluator.batch_size, n))
        chunk = np.asarray(ids[rows])
        x = evaluator.inputs(chunk, corruptions) if inputs is None else [a[rows] for a in inputs]
        rho[rows] = spectral_radii(adapter.fixed_point_problem(x), z[rows], steps=steps)
        if corruptions and z0 is not None:
            x0 = evaluator.inputs(chunk) if clean_inputs is None else [a[rows] for a in clean_inputs]
            predicted = linear_shift(adapter.fixed_point_problem(x0), z0[rows], x, settings,
                                     input_scales=adapter.feature_scales, tol=SWEEP_LINEAR_TOL)
            actual = np.linalg.norm(z[rows] - z0[rows], axis=1)
            ok = outcome.converged[rows] & clean.converged[rows] & (predicted > 0) & np.isfinite(predicted)
            ratio[rows] = np.where(ok, actual / np.where(ok, predicted, 1.0), np.nan)
    return {"spectral_radius": rho, "shift_ratio": ratio}


def cell_statistics(cell: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean and 95th percentile of ρ, the fraction with ρ ≥ 1, and the median shift ratio of one cell."""
    rho = np.asarray(cell["spectral_radius"], dtype=np.float64)
    rho = rho[np.isfinite(rho)]
    ratio = np.asarray(cell["shift_ratio"], dtype=np.float64)
    ratio = ratio[np.isfinite(ratio)]
    return {
        "spectral_radius_mean": float(rho.mean()) if len(rho) else float("nan"),
        "spectral_radius_p95": float(np.percentile(rho, 95)) if len(rho) else float("nan"),
        "unstable_fraction": float((rho >= 1.0).mean()) if len(rho) else float("nan"),
        "shift_ratio": float(np.median(ratio)) if len(ratio) else float("nan"),
    }


def nonlinear_severity(levels: np.ndarray, shift_ratio: np.ndarray, factor: float = NONLINEAR_FACTOR) -> float:
    """The smallest severity above 0 whose median shift ratio is above ``factor`` or below 1/``factor``: where
    the actual shift departs from the linear prediction by more than that factor. NaN if it never does."""
    for level, r in zip(levels, shift_ratio):
        if level > 0 and np.isfinite(r) and (r > factor or r < 1.0 / factor):
            return float(level)
    return float("nan")


def bench_equilibrium(adapter: ModelAdapter, dataset, *, sample: int | None = None,
                      corruptions: Mapping[str, Corruption] | None = None, repeats: int = 7,
                      settings: SolverSettings | None = None) -> dict:
    """The equilibrium report's time over one solve's, medians over ``repeats`` interleaved in one process.

    The solve is the studio's (one sample, with per-step playback); the report the corrupted run's whole
    ``equilibrium`` object (ρ, coupling, sensitivity, multiple starts, linear response). The first of each is
    a warm-up and not counted.
    """
    from ..core.evaluate import evaluate

    evaluator = Evaluator(adapter, dataset)
    if sample is None:
        sample = int(dataset.split("test")[0])
    if corruptions is None:
        first = adapter.modalities[0].name
        corruptions = {first: Corruption("gaussian", 2.0, 0)}
    settings = _settings(adapter, settings)
    ids = np.array([sample])
    clean_inputs, inputs = evaluator.inputs(ids), evaluator.inputs(ids, corruptions)
    clean = evaluate(adapter, clean_inputs, settings=settings, playback=True, batch_size=1)
    solves, reports = [], []
    report = None
    for k in range(repeats + 1):
        t0 = time.perf_counter()
        run = evaluate(adapter, inputs, settings=settings, playback=True, batch_size=1)
        t1 = time.perf_counter()
        report = equilibrium_report(adapter, inputs, run.z_star[0], settings, residuals=run.trace.abs[0],
                                    best_step=int(run.trace.best_step[0]), clean=(clean_inputs, clean.z_star[0]))
        t2 = time.perf_counter()
        if k:
            solves.append(t1 - t0)
            reports.append(t2 - t1)
    solve_ms, report_ms = statistics.median(solves) * 1e3, statistics.median(reports) * 1e3
    stages = dict(report.timings) if report is not None else {}
    return {
        "equilibrium_over_solve": round(report_ms / solve_ms, 3),
        "solve_ms_median": round(solve_ms, 3), "equilibrium_ms_median": round(report_ms, 3),
        "equilibrium_stages_ms_last": {k: round(v * 1e3, 2) for k, v in stages.items()},
        "sample": sample, "corruptions": [c.text(m) for m, c in corruptions.items()], "repeats": repeats,
        "starts": report.starts.count if report is not None else None,
        "derivatives": report.derivatives if report is not None else None,
        "spectral_method": report.spectral_method if report is not None else None,
    }
