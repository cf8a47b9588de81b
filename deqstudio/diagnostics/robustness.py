"""Robustness curves and noise calibration from one sweep over modalities, kinds and severities."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.corruptions import CORRUPTIONS, kinds_for
from ..core.corruptions import Corruption
from ..errors import Cancelled
from .equilibrium import EQUILIBRIUM_STATISTICS, cell_statistics, sweep_cell
from .evaluation import BatchOutcome, CancelFn, Evaluator, ProgressFn
from .stats import spearman
from .results import write_csv, write_hdf5
from .sweep_chunks import (DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE, EQUILIBRIUM_SAMPLES, SweepSpec, chunk_count,
                           evaluate_chunk, merge_chunks)
from .sweep_table import RobustnessSweep

__all__ = ["LEVELS", "RobustnessSweep", "TippingPoints", "per_cell_sweep", "robustness_sweep", "sweep_plan",
           "sweep_spec", "tipping_points"]

LEVELS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)


def sweep_plan(evaluator: Evaluator, modalities=None, kinds=None) -> list[tuple[str, str]]:
    """(modality, kind) pairs: every named modality with each named kind that applies to it.

    kinds ``None`` means gaussian noise; ``("all",)`` every kind the modality admits.
    """
    specs = {m.name: m for m in evaluator.modalities}
    names = list(modalities) if modalities else list(specs)
    for n in names:
        if n not in specs:
            raise ValueError(f"unknown modality {n!r}; the model has {', '.join(specs)}")
    if kinds and tuple(kinds) != ("all",):
        for k in kinds:
            if k not in CORRUPTIONS:
                raise ValueError(f"unknown corruption kind {k!r}; expected one of {', '.join(CORRUPTIONS)} or 'all'")
    plan = []
    for n in names:
        allowed = kinds_for(specs[n].kind)
        wanted = allowed if kinds and tuple(kinds) == ("all",) else (kinds or ("gaussian",))
        for k in wanted:
            if k in allowed:
                plan.append((n, k))
            elif len(wanted) == 1 and len(names) == 1:
                raise ValueError(f"corruption {k!r} does not apply to the {specs[n].kind} modality {n!r}")
    if not plan:
        raise ValueError("nothing to sweep: no named corruption kind applies to the named modalities")
    return plan


def robustness_sweep(
    evaluator: Evaluator,
    *,
    modalities=None,
    kinds=None,
    levels=LEVELS,
    split: str = "test",
    seed: int = 0,
    settings=None,
    baseline: Evaluator | None = None,
    model_name: str = "",
    baseline_name: str = "",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    equilibrium: bool = True,
    streaming: bool = True,
    chunk_size: int | None = None,
    batch_size: int | None = None,
    equilibrium_samples: int = EQUILIBRIUM_SAMPLES,
    store=None,
) -> RobustnessSweep:
    """Accuracy, steps, σ̂ and PE against severity for every (modality, kind) of the plan over a split.

    Streaming (the default): chunk by chunk of ``chunk_size`` samples (``sweep_chunks``; default three batches),
    each chunk read once and evaluated at every cell in batches of ``batch_size`` (default the evaluator's). ``equilibrium``: also ρ(J) and the linear response
    per cell (models with a solver), on the split's first ``equilibrium_samples`` samples. ``store``: a
    ``SweepStore`` that already holds finished chunks (they are not evaluated again) and receives each new one.
    ``progress`` gets the fraction done; ``cancel`` stops before the next cell, keeping the cells every chunk
    finished. ``streaming=False``: the per-cell reference (``per_cell_sweep``, equilibrium on every sample).
    """
    if not streaming:
        return per_cell_sweep(evaluator, modalities=modalities, kinds=kinds, levels=levels, split=split, seed=seed,
                              settings=settings, baseline=baseline, model_name=model_name,
                              baseline_name=baseline_name, progress=progress, cancel=cancel, equilibrium=equilibrium)
    import time

    t0 = time.perf_counter()
    spec, ids, total, chunks = chunk_plan(evaluator, store, modalities=modalities, kinds=kinds, levels=levels,
                                          split=split, seed=seed, settings=settings, equilibrium=equilibrium,
                                          chunk_size=chunk_size, batch_size=batch_size,
                                          equilibrium_samples=equilibrium_samples)
    cells = len(spec.cells) * len(spec.levels)
    done = [len(chunks) * cells]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0] / (total * cells))

    if progress is not None and chunks:
        progress(done[0] / (total * cells))
    if len(chunks) > total:
        raise ValueError(f"the progress file holds {len(chunks)} chunks; this sweep has {total}")
    resumed, evaluated = len(chunks), 0
    for index in range(len(chunks), total):
        if cancel is not None and cancel():
            break
        result = evaluate_chunk(evaluator, spec, index, baseline=baseline, cancel=cancel, on_cell=tick)
        chunks.append(result)
        if not result["done"].all():
            break
        evaluated += len(result["sample_ids"])
        if store is not None:
            store.append(result)
    seconds = time.perf_counter() - t0
    swept = merge_chunks(chunks, spec, ids, evaluator.dataset.labels[ids],
                         multilabel=evaluator.adapter.task == "multilabel", model_name=model_name,
                         baseline_name=baseline_name, seconds=seconds)
    # this run's own pace: the samples of the chunks it finished (not those a resumed file held) over its time
    swept.extra.update(resumed_chunks=resumed, chunks=total, evaluated_samples=evaluated,
                       samples_per_second=evaluated / seconds if seconds > 0 else float("nan"))
    return swept


def chunk_plan(evaluator: Evaluator, store=None, **spec_args):
    """``(spec, ids, total, chunks)``: the sweep's ``sweep_spec``, the split's sample ids, its number of chunks and
    the chunks a progress ``store`` already holds (ValueError when it holds more than the sweep has)."""
    spec = sweep_spec(evaluator, **spec_args)
    ids = np.asarray(evaluator.dataset.split(spec.split), dtype=np.int64)
    total = chunk_count(len(ids), spec.chunk_size)
    chunks: list[dict] = list(store.finished()) if store is not None else []
    if len(chunks) > total:
        raise ValueError(f"the progress file holds {len(chunks)} chunks; this sweep has {total}")
    return spec, ids, total, chunks


def sweep_spec(evaluator: Evaluator, *, modalities=None, kinds=None, levels=LEVELS, split: str = "test", seed: int = 0,
               settings=None, equilibrium: bool = True, chunk_size: int | None = None, batch_size: int | None = None,
               equilibrium_samples: int = EQUILIBRIUM_SAMPLES) -> SweepSpec:
    """The ``SweepSpec`` of a sweep's arguments (the plan checked against the model: ValueError naming a problem).

    ``batch_size`` None: the evaluator's; ``chunk_size`` None: three batches."""
    plan = sweep_plan(evaluator, modalities, kinds)
    batch_size = int(batch_size or evaluator.batch_size)
    chunk_size = int(chunk_size or DEFAULT_CHUNK_SIZE // DEFAULT_BATCH_SIZE * batch_size)
    return SweepSpec(cells=tuple(plan), levels=tuple(float(v) for v in np.asarray(levels, dtype=np.float64)),
                     split=split, seed=int(seed), settings=None if settings is None else settings.to_dict(),
                     equilibrium=bool(equilibrium), equilibrium_samples=int(equilibrium_samples),
                     chunk_size=int(chunk_size), batch_size=int(batch_size))


def per_cell_sweep(
    evaluator: Evaluator,
    *,
    modalities=None,
    kinds=None,
    levels=LEVELS,
    split: str = "test",
    seed: int = 0,
    settings=None,
    baseline: Evaluator | None = None,
    model_name: str = "",
    baseline_name: str = "",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    equilibrium: bool = True,
) -> RobustnessSweep:
    """The sweep cell by cell, each cell one evaluation of the whole split, ρ(J) and the linear response on
    every sample: the reference the streaming sweep is checked and benchmarked against (``streaming=False``)."""
    import time

    t0 = time.perf_counter()
    plan = sweep_plan(evaluator, modalities, kinds)
    levels = np.asarray(levels, dtype=np.float64)
    ids = evaluator.dataset.split(split)
    names = list(evaluator.names)
    shape = (len(plan), len(levels))
    acc, steps, conv, noise, pe, base, macro = (np.full(shape, np.nan) for _ in range(7))
    multilabel = evaluator.adapter.task == "multilabel"
    per_sample_shape = (len(ids), len(evaluator.adapter.class_names)) if multilabel else (len(ids),)
    predictions = np.full((*shape, *per_sample_shape), -1, dtype=np.int64)  # -1: not evaluated (cancelled)
    per_sample_noise = [[] for _ in plan]
    per_sample_pe = [[] for _ in plan]
    per_sample_level = [[] for _ in plan]
    clean: dict[str, BatchOutcome] = {}
    stats = {k: np.full(shape, np.nan) for k in EQUILIBRIUM_STATISTICS}
    clean_cell: dict = {}
    equilibrium = equilibrium and evaluator.adapter.capabilities.solver
    total, done, complete = len(plan) * len(levels), 0, True

    def outcome(ev: Evaluator, key: str, corruptions) -> BatchOutcome:
        if not corruptions:
            if key not in clean:
                clean[key] = ev.run(ids, None, settings, cancel)
            return clean[key]
        return ev.run(ids, corruptions, settings, cancel)

    try:
        for c, (m, k) in enumerate(plan):
            mi = names.index(m)
            for j, level in enumerate(levels):
                if cancel is not None and cancel():  # also before a cell the clean cache would fill
                    raise Cancelled()
                corr = {m: Corruption(k, float(level), seed)} if level > 0 else None
                r = outcome(evaluator, "model", corr)
                scores = r.metrics()
                acc[c, j] = scores[r.metric_name]
                if multilabel:
                    macro[c, j] = scores["macro_f1"]
                if r.steps.any():  # a solver takes at least one step: none at all means the model has no solver,
                    steps[c, j], conv[c, j] = r.steps.mean(), r.converged.mean()  # and both stay NaN (n/a)
                predictions[c, j] = r.predictions
                if r.sigma_hat is not None:
                    noise[c, j], pe[c, j] = r.sigma_hat[:, mi].mean(), r.pe[:, mi].mean()
                    per_sample_noise[c].append(r.sigma_hat[:, mi])
                    per_sample_pe[c].append(r.pe[:, mi])
                    per_sample_level[c].append(np.full(len(ids), level))
                if equilibrium:  # per cell, on its own: a statistic of this cell's samples only
                    if corr is None and clean_cell:
                        cell = clean_cell
                    else:
                        cell = sweep_cell(evaluator, ids, corr, r, outcome(evaluator, "model", None), settings)
                        clean_cell.update(cell if corr is None else {})
                    for name, value in cell_statistics(cell).items():
                        stats[name][c, j] = value
                if baseline is not None:
                    base[c, j] = outcome(baseline, "baseline", corr).metric
                done += 1
                if progress is not None:
                    progress(done / total)
    except Cancelled:
        complete = False

    def rho(values, c):
        if not values[c]:
            return np.nan
        return spearman(np.concatenate(per_sample_level[c]), np.concatenate(values[c]))

    return RobustnessSweep(
        model=model_name, split=split, levels=levels, modality=np.array([m for m, _ in plan]),
        kind=np.array([k for _, k in plan]), accuracy=acc, mean_steps=steps, converged_fraction=conv,
        noise_estimate=noise, pe_estimate=pe,
        noise_spearman=np.array([rho(per_sample_noise, c) for c in range(len(plan))]),
        pe_spearman=np.array([rho(per_sample_pe, c) for c in range(len(plan))]),
        samples=len(ids), complete=complete, baseline=baseline_name,
        baseline_accuracy=base if baseline is not None else None, seconds=time.perf_counter() - t0,
        extra={"sample_ids": ids, "labels": evaluator.dataset.labels[ids].astype(np.int64), "predictions": predictions},
        metric="micro_f1" if multilabel else "accuracy", macro_f1=macro if multilabel else None,
        equilibrium=stats if equilibrium else {},
    )


@dataclass
class TippingPoints:
    """Per sample, the smallest severity that flips the prediction or breaks convergence (NaN: none)."""

    modality: str
    kind: str
    levels: np.ndarray
    sample_ids: np.ndarray
    flip: np.ndarray
    diverge: np.ndarray
    clean_prediction: np.ndarray
    labels: np.ndarray
    complete: bool = True  # False: cancelled; NaN then also means "not reached", not only "never flips"

    def to_csv(self, path) -> Path:
        def shown(v):  # a class index, or a label set (multilabel) as its indices joined by ';'
            v = np.asarray(v)
            return ";".join(str(int(i)) for i in np.flatnonzero(v > 0)) if v.ndim else v

        rows = [[i, shown(lab), shown(p), f, d] for i, lab, p, f, d in zip(
            self.sample_ids, self.labels, self.clean_prediction, self.flip, self.diverge)]
        return write_csv(path, ("sample", "label", "clean_prediction", "flip_severity", "diverge_severity"), rows)

    def to_hdf5(self, path) -> Path:
        arrays = {k: getattr(self, k) for k in ("levels", "sample_ids", "flip", "diverge", "clean_prediction", "labels")}
        return write_hdf5(path, "tipping_points", arrays, {"modality": self.modality, "kind": self.kind,
                                                           "complete": self.complete})


def tipping_points(
    evaluator: Evaluator, ids, modality: str, kind: str = "gaussian", levels=None, seed: int = 0, settings=None,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> TippingPoints:
    """Scan severities upward; a sample's tipping point is the first level where it flips (or stops converging)."""
    sweep_plan(evaluator, [modality], [kind])
    levels = np.asarray(levels if levels is not None else np.arange(0.25, 5.001, 0.25), dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    flip, diverge = np.full(len(ids), np.nan), np.full(len(ids), np.nan)
    try:
        clean = evaluator.run(ids, None, settings, cancel)
    except Cancelled:  # nothing reached yet: an empty, incomplete result (-1: clean prediction not known)
        labels = evaluator.dataset.labels[ids].astype(np.int64)
        return TippingPoints(modality, kind, levels, ids, flip, diverge, np.full(labels.shape, -1, np.int64), labels,
                             False)
    complete = True
    for j, level in enumerate(levels):
        try:
            r = evaluator.run(ids, {modality: Corruption(kind, float(level), seed)}, settings, cancel)
        except Cancelled:
            complete = False
            break
        changed = r.predictions != clean.predictions
        flip[np.isnan(flip) & (changed.any(axis=1) if changed.ndim > 1 else changed)] = level
        diverge[np.isnan(diverge) & ~r.converged & clean.converged] = level
        if progress is not None:
            progress((j + 1) / len(levels))
    return TippingPoints(modality, kind, levels, ids, flip, diverge, clean.predictions, clean.labels, complete)
