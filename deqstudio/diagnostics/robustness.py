"""Robustness curves and noise calibration from one sweep over modalities, kinds and severities."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.corruptions import CORRUPTIONS, kinds_for
from ..core.corruptions import Corruption
from ..errors import Cancelled
from .equilibrium import EQUILIBRIUM_STATISTICS, cell_statistics, nonlinear_severity, sweep_cell
from .evaluation import BatchOutcome, CancelFn, Evaluator, ProgressFn
from .stats import area_under_curve, spearman
from .results import write_csv, write_hdf5

LEVELS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)


@dataclass
class RobustnessSweep:
    """One curve per (modality, kind): accuracy, steps and predicted noise against severity.

    ``accuracy`` holds the task's headline score, named by ``metric``: the accuracy, or for a multilabel
    model the micro F1 (its macro F1 in ``macro_f1``); files and JSON name it by ``metric``.

    ``mean_steps`` and ``converged_fraction`` are NaN (not applicable) for models without a solver.
    ``noise_estimate`` is the mean UDML σ̂ of the corrupted modality, ``pe_estimate`` the mean
    predicted variance (the PE baseline); both NaN for models without UDML. ``*_spearman`` rank-
    correlate the per-sample estimate with the injected severity. Cells a cancelled sweep did not
    reach are NaN and ``complete`` is False.

    Equilibrium statistics per cell (NaN without a solver): ``spectral_radius_mean`` and ``_p95`` of ρ(J) at
    each sample's z*, ``unstable_fraction`` (ρ ≥ 1), ``shift_ratio`` (median ‖z* − z*_clean‖ over the linear
    response's prediction); ``nonlinear_severity`` per curve is the first severity whose ratio is beyond 2×.
    """

    model: str
    split: str
    levels: np.ndarray  # (L,)
    modality: np.ndarray  # (C,) str
    kind: np.ndarray  # (C,) str
    accuracy: np.ndarray  # (C, L)
    mean_steps: np.ndarray
    converged_fraction: np.ndarray
    noise_estimate: np.ndarray
    pe_estimate: np.ndarray
    noise_spearman: np.ndarray  # (C,)
    pe_spearman: np.ndarray
    samples: int
    complete: bool = True
    baseline: str = ""
    baseline_accuracy: np.ndarray | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    metric: str = "accuracy"
    macro_f1: np.ndarray | None = None  # (C, L), multilabel models only
    equilibrium: dict = field(default_factory=dict)  # name in EQUILIBRIUM_STATISTICS → (C, L)

    def _stat(self, name: str) -> np.ndarray:
        return self.equilibrium.get(name, np.full(self.accuracy.shape, np.nan))

    spectral_radius_mean = property(lambda self: self._stat("spectral_radius_mean"))
    spectral_radius_p95 = property(lambda self: self._stat("spectral_radius_p95"))
    unstable_fraction = property(lambda self: self._stat("unstable_fraction"))
    shift_ratio = property(lambda self: self._stat("shift_ratio"))

    @property
    def nonlinear_severity(self) -> np.ndarray:
        """(C,) per curve: the first severity where the actual shift departs from the linear one by > 2×."""
        return np.array([nonlinear_severity(self.levels, r) for r in self.shift_ratio])

    @property
    def auc(self) -> np.ndarray:
        return np.array([area_under_curve(self.levels, a) for a in self.accuracy])

    @property
    def baseline_auc(self) -> np.ndarray:
        if self.baseline_accuracy is None:
            return np.full(len(self.modality), np.nan)
        return np.array([area_under_curve(self.levels, a) for a in self.baseline_accuracy])

    @property
    def relative_robustness(self) -> np.ndarray:
        """AUC over the baseline's AUC: above 1, more robust than the baseline."""
        return self.auc / self.baseline_auc

    def curve(self, modality: str, kind: str = "gaussian") -> int:
        for i, (m, k) in enumerate(zip(self.modality, self.kind)):
            if m == modality and k == kind:
                return i
        raise KeyError(f"no curve for {modality}={kind}")

    COLUMNS = ("modality", "kind", "severity", "accuracy", "mean_steps", "converged_fraction", "noise_estimate",
               "pe_estimate", "baseline_accuracy", "auc", "relative_robustness", "noise_spearman", "pe_spearman",
               *EQUILIBRIUM_STATISTICS, "nonlinear_severity")

    def misclassified(self, curve: int, level_index: int) -> np.ndarray:
        """Sample ids wrong at that point of a curve, those right when clean first (needs per-sample data).

        Multilabel: wrong means the predicted label set is not the true one."""
        if "predictions" not in self.extra:
            return np.zeros(0, dtype=np.int64)
        ids, labels, preds = self.extra["sample_ids"], self.extra["labels"], self.extra["predictions"]

        def per_sample(mask):
            return mask.any(axis=-1) if mask.ndim > 1 else mask

        reached = ~per_sample(preds[curve, level_index] < 0)
        wrong = reached & per_sample(preds[curve, level_index] != labels)
        clean_right = ~per_sample(preds[curve, 0] != labels) if self.levels[0] == 0 else np.ones(len(ids), bool)
        order = np.argsort(~clean_right[wrong], kind="stable")
        return ids[wrong][order]

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's columns: ``COLUMNS`` with the accuracy named by ``metric`` (and a macro F1 column)."""
        names = tuple(c.replace("accuracy", self.metric) for c in self.COLUMNS)
        return names + (("macro_f1",) if self.macro_f1 is not None else ())

    def rows(self) -> list[list]:
        auc, rel, onset = self.auc, self.relative_robustness, self.nonlinear_severity
        base = self.baseline_accuracy if self.baseline_accuracy is not None else np.full_like(self.accuracy, np.nan)
        out = []
        for c in range(len(self.modality)):
            for j, level in enumerate(self.levels):
                out.append([self.modality[c], self.kind[c], level, self.accuracy[c, j], self.mean_steps[c, j],
                            self.converged_fraction[c, j], self.noise_estimate[c, j], self.pe_estimate[c, j],
                            base[c, j], auc[c], rel[c], self.noise_spearman[c], self.pe_spearman[c],
                            *(self._stat(k)[c, j] for k in EQUILIBRIUM_STATISTICS), onset[c]]
                           + ([self.macro_f1[c, j]] if self.macro_f1 is not None else []))
        return out

    def to_csv(self, path: str | os.PathLike, sidecar: dict | None = None) -> Path:
        """The table; with ``sidecar``, its provenance record beside it, written as one unit."""
        return write_csv(path, self.columns, self.rows(), sidecar=sidecar)

    def to_hdf5(self, path: str | os.PathLike, sidecar: dict | None = None) -> Path:
        arrays = {k: getattr(self, k) for k in ("levels", "modality", "kind", "mean_steps",
                                                  "converged_fraction", "noise_estimate", "pe_estimate",
                                                  "noise_spearman", "pe_spearman")}
        arrays[self.metric] = self.accuracy
        arrays["auc"] = self.auc
        if self.macro_f1 is not None:
            arrays["macro_f1"] = self.macro_f1
        if self.equilibrium:  # computed (a model with a solver): one (C, L) array each, and the (C,) onsets
            arrays.update({k: self._stat(k) for k in EQUILIBRIUM_STATISTICS}, nonlinear_severity=self.nonlinear_severity)
        if self.baseline_accuracy is not None:
            arrays[f"baseline_{self.metric}"] = self.baseline_accuracy
        attrs = {"model": self.model, "split": self.split, "samples": self.samples, "complete": self.complete,
                 "baseline": self.baseline, "seconds": self.seconds, "metric": self.metric}
        return write_hdf5(path, "robustness", arrays, attrs, sidecar=sidecar)

    def to_json(self) -> dict:
        """Keyed by modality (``MOD=KIND`` when several kinds were swept): the curve's lists and scores."""
        out = {}
        for c, (m, k) in enumerate(zip(self.modality, self.kind)):
            entry = {
                "kind": str(k), "levels": [float(v) for v in self.levels],
                self.metric: _floats(self.accuracy[c]), "mean_steps": _floats(self.mean_steps[c]),
                "converged_fraction": _floats(self.converged_fraction[c]),
                "noise_estimate": _floats(self.noise_estimate[c]), "pe_estimate": _floats(self.pe_estimate[c]),
                "auc": _float(self.auc[c]), "noise_spearman": _float(self.noise_spearman[c]),
                "pe_spearman": _float(self.pe_spearman[c]),
                **{k: _floats(self._stat(k)[c]) for k in EQUILIBRIUM_STATISTICS},
                "nonlinear_severity": _float(self.nonlinear_severity[c]),
            }
            if self.macro_f1 is not None:
                entry["macro_f1"] = _floats(self.macro_f1[c])
            if self.baseline_accuracy is not None:
                entry[f"baseline_{self.metric}"] = _floats(self.baseline_accuracy[c])
                entry["relative_robustness"] = _float(self.relative_robustness[c])
            out[str(m) if len(set(self.kind)) == 1 else f"{m}={k}"] = entry
        return out


def _float(v) -> float | None:
    return float(v) if np.isfinite(v) else None


def _floats(values) -> list:
    return [_float(v) for v in values]


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
) -> RobustnessSweep:
    """``equilibrium``: also ρ(J) and the linear response per cell (models with a solver; see RobustnessSweep)."""
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
