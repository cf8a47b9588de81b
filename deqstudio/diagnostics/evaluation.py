"""Batched evaluation of a checkpoint on a dataset split, with per-modality corruptions.

The one place that turns (model, dataset, corruption settings) into predictions, solver statistics
and UDML scores for many samples at once; the analyses, the headless commands and the studio's
engine all go through it, so a number shown in the window and one in a sweep agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch

from ..core import udml
from ..core.corruptions import corrupt, kinds_for
from ..core.fusion.deq_fusion import SolverSettings

ProgressFn = Callable[[float], None]
CancelFn = Callable[[], bool]


class Cancelled(Exception):
    """Raised inside an analysis when its ``cancel`` callback asked it to stop."""


@dataclass(frozen=True)
class Corruption:
    kind: str
    severity: float
    seed: int = 0


@dataclass
class BatchOutcome:
    """Per-sample results of one evaluation, (N,) or (N, M) numpy arrays."""

    sample_ids: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray  # (N, C)
    steps: np.ndarray  # solver evaluations; 0 for fusions without a solver
    converged: np.ndarray
    final_rel: np.ndarray  # NaN for fusions without a solver
    sigma_hat: np.ndarray | None  # (N, M), deq-udml only
    pe: np.ndarray | None  # (N, M) mean predicted variance, deq-udml only

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.labels

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.labels) else float("nan")


class Evaluator:
    """A model and a dataset, evaluated in batches under corruptions."""

    def __init__(self, model, dataset, device: str = "cpu", batch_size: int = 400) -> None:
        self.model = model.eval().to(device)
        self.dataset = dataset
        self.device = device
        self.batch_size = batch_size
        self.config = model.config
        self.names = self.config.modality_names
        self.feature_std = [s.detach().cpu().numpy() for s in model.normalisation()[1]]
        train = dataset.split("train")
        self.pool_ids = train
        self.pool = {n: dataset.modalities[n].data[train] for n in self.names}

    def inputs(self, ids: np.ndarray, corruptions: Mapping[str, Corruption] | None = None) -> list[np.ndarray]:
        """Raw (corrupted) float32 inputs of the samples ``ids`` in model order."""
        out = []
        for i, spec in enumerate(self.config.modalities):
            x = self.dataset.modalities[spec.name].data[ids]
            c = (corruptions or {}).get(spec.name)
            if c is not None and c.severity > 0:
                if c.kind not in kinds_for(spec.kind):
                    raise ValueError(f"corruption {c.kind!r} does not apply to the {spec.kind} modality {spec.name!r}")
                x = corrupt(x, spec.kind, c.kind, c.severity, c.seed, modality=spec.name,
                            feature_std=self.feature_std[i], image_shape=spec.image_shape, sample_ids=ids,
                            pool=self.pool[spec.name], pool_ids=self.pool_ids)
            out.append(np.ascontiguousarray(x, dtype=np.float32))
        return out

    @torch.no_grad()
    def run(
        self,
        ids: np.ndarray,
        corruptions: Mapping[str, Corruption] | None = None,
        settings: SolverSettings | None = None,
        cancel: CancelFn | None = None,
    ) -> BatchOutcome:
        ids = np.asarray(ids, dtype=np.int64)
        parts = []
        for start in range(0, len(ids), self.batch_size):
            if cancel is not None and cancel():
                raise Cancelled()
            parts.append(self._run_batch(ids[start : start + self.batch_size], corruptions, settings))
        return _concat(ids, self.dataset.labels[ids].astype(np.int64), parts, len(self.names))

    def _run_batch(self, ids, corruptions, settings) -> dict:
        x = [torch.from_numpy(a).to(self.device) for a in self.inputs(ids, corruptions)]
        out = self.model(x, settings=settings if self.config.is_deq else None)
        probs = torch.softmax(out.logits, dim=1).cpu().numpy()
        n = len(ids)
        part = {"probabilities": probs}
        if out.trace is not None:
            part["steps"] = np.asarray(out.trace.nstep)
            part["converged"] = np.asarray(out.trace.converged, dtype=bool)
            part["final_rel"] = np.asarray(out.trace.final_rel, dtype=np.float64)
        else:
            part["steps"], part["converged"], part["final_rel"] = np.zeros(n, int), np.ones(n, bool), np.full(n, np.nan)
        if out.sigma_hat is not None:
            part["sigma_hat"] = out.sigma_hat.cpu().numpy().astype(np.float64)
            part["pe"] = torch.stack([udml.pe_score(lv) for lv in out.logvar], dim=1).cpu().numpy().astype(np.float64)
        return part


def _concat(ids, labels, parts, m) -> BatchOutcome:
    def cat(key):
        if not parts or key not in parts[0]:
            return None
        return np.concatenate([p[key] for p in parts])

    probs = cat("probabilities") if parts else np.zeros((0, 0))
    return BatchOutcome(
        sample_ids=ids, labels=labels, predictions=probs.argmax(axis=1) if len(probs) else np.zeros(0, int),
        probabilities=probs, steps=cat("steps") if parts else np.zeros(0, int),
        converged=cat("converged") if parts else np.zeros(0, bool),
        final_rel=cat("final_rel") if parts else np.zeros(0), sigma_hat=cat("sigma_hat"), pe=cat("pe"),
    )


def spearman(a, b) -> float:
    """Spearman's rank correlation with average ranks for ties; NaN when either side is constant."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths, got {len(a)} and {len(b)}")
    keep = np.isfinite(a) & np.isfinite(b)
    ra, rb = _ranks(a[keep]), _ranks(b[keep])
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    values, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]


def fixed_point_problem(evaluator: Evaluator, ids: np.ndarray, corruptions: Mapping[str, Corruption] | None = None):
    """(f, z0) of a DEQ model's fusion for these samples: the map the solvers race on."""
    model = evaluator.model
    if not model.config.is_deq:
        raise ValueError(f"a {model.config.fusion} model has no fixed point to solve")
    with torch.no_grad():
        x = [torch.from_numpy(a).to(evaluator.device) for a in evaluator.inputs(np.asarray(ids), corruptions)]
        features, _, logvars = model.encode(x)
        if model.config.is_udml:
            _, weights = model.udml_weights(logvars)
            features = udml.apply_residual_weights(features, weights)
        injection = model.fusion.block.inject(features)
    return model.fusion.fixed_point_map(injection), torch.zeros_like(injection)
