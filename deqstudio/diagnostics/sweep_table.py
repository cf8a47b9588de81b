"""The robustness sweep's table: one curve per (modality, kind), its files (CSV, HDF5) and JSON."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .equilibrium import EQUILIBRIUM_STATISTICS, nonlinear_severity
from .results import write_csv, write_hdf5
from .stats import area_under_curve


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
        if self.equilibrium and "equilibrium_samples" in self.extra:  # the statistics' subsample: the first N
            attrs["equilibrium_samples"] = int(self.extra["equilibrium_samples"])
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
