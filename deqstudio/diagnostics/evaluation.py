"""A model evaluated on samples of a dataset, with per-modality corruptions: ``Evaluator``.

It reads the samples' raw features, corrupts them as asked, and runs the model through the one evaluation
path (``deqstudio.core.evaluate``). The studio's engine, its samples table, the analyses and the headless
commands all go through it, so a number shown in the window and one in a sweep agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Mapping

import numpy as np

from ..core.adapter import FixedPointProblem, ModelAdapter, ModelRun
from ..core.corruptions import Corruption, corrupt, kinds_for
from ..core.evaluate import concat_runs, evaluate
from ..errors import Cancelled
from .split_rows import SplitRows
from .stats import f1_scores, label_sets, sample_f1

ProgressFn = Callable[[float], None]
CancelFn = Callable[[], bool]

__all__ = ["BatchOutcome", "CancelFn", "Cancelled", "Corruption", "Evaluator", "ProgressFn", "SplitRows", "as_adapter"]


def as_adapter(model) -> ModelAdapter:
    """An adapter for ``model``: itself when it already is one, a ``NativeAdapter`` for a ``FusionModel``."""
    if isinstance(model, ModelAdapter):
        return model
    from ..core.native import NativeAdapter

    return NativeAdapter(model)


@dataclass
class BatchOutcome:
    """Per-sample results of one evaluation: (N,) or (N, M) arrays, and the model's run behind them.

    For a multilabel model ``labels`` and ``predictions`` are (N, C) label sets of 0/1 (a label is predicted
    when its probability exceeds 0.5), ``correct`` is an exact match of the set, and the headline ``metric``
    is the micro F1 instead of the accuracy.
    """

    sample_ids: np.ndarray
    labels: np.ndarray
    run: ModelRun
    has_solver: bool
    task: str = "multiclass"

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    @property
    def probabilities(self) -> np.ndarray:
        return self.run.probabilities

    @property
    def predictions(self) -> np.ndarray:
        p = self.run.probabilities
        if self.multilabel:
            return label_sets(p)
        return p.argmax(axis=1) if len(p) else np.zeros(0, dtype=np.int64)

    @property
    def steps(self) -> np.ndarray:
        """Solver evaluations per sample; 0 for a model without a solver."""
        t = self.run.trace
        return np.zeros(len(self.sample_ids), dtype=np.int64) if t is None else np.asarray(t.nstep)

    @property
    def converged(self) -> np.ndarray:
        """Whether each sample's solve met the tolerance; True for a model without a solver (nothing to meet)."""
        t = self.run.trace
        return np.ones(len(self.sample_ids), dtype=bool) if t is None else np.asarray(t.converged, dtype=bool)

    @property
    def final_rel(self) -> np.ndarray:
        """The relative residual of the returned state; NaN for a model without a solver."""
        t = self.run.trace
        return np.full(len(self.sample_ids), np.nan) if t is None else np.asarray(t.final_rel, dtype=np.float64)

    @property
    def sigma_hat(self) -> np.ndarray | None:
        return None if self.run.sigma_hat is None else self.run.sigma_hat.astype(np.float64)

    @property
    def pe(self) -> np.ndarray | None:
        return None if self.run.pe is None else self.run.pe.astype(np.float64)

    @property
    def correct(self) -> np.ndarray:
        """Per sample: the prediction is the label (multilabel: the predicted set is the true set)."""
        if self.multilabel:
            return (self.predictions == self.labels).all(axis=1)
        return self.predictions == self.labels

    @property
    def accuracy(self) -> float:
        """The fraction of samples predicted right (multilabel: exact-match ratio)."""
        return float(self.correct.mean()) if len(self.labels) else float("nan")

    @property
    def sample_f1(self) -> np.ndarray | None:
        """Per sample, the F1 of the predicted label set (multilabel only; None otherwise)."""
        return sample_f1(self.labels, self.predictions) if self.multilabel else None

    @property
    def metric_name(self) -> str:
        """The headline score of the task: "accuracy", or "micro_f1" for multilabel models."""
        return "micro_f1" if self.multilabel else "accuracy"

    @property
    def metric(self) -> float:
        return self.metrics()[self.metric_name]

    def metrics(self) -> dict[str, float]:
        """accuracy (multiclass), or micro_f1, macro_f1 and exact_match (multilabel)."""
        if not self.multilabel:
            return {"accuracy": self.accuracy}
        return {**f1_scores(self.labels, self.predictions), "exact_match": self.accuracy}


class Evaluator:
    """A model (any ``ModelAdapter``, or a ``FusionModel``) and a dataset, evaluated in batches under corruptions."""

    def __init__(self, model, dataset, device: str | None = None, batch_size: int = 400,
                 pool_bytes: int | None = None) -> None:
        """``pool_bytes``: how much of the training split's rows a shuffle may keep once read (``SplitRows``)."""
        self.adapter = as_adapter(model)
        if device is not None:
            self.adapter.to(device)
        self.dataset = dataset
        self.batch_size = batch_size
        self.modalities = self.adapter.modalities
        self.names = self.adapter.modality_names
        train = dataset.split("train")
        self.pool_ids = train
        self.pool = {n: SplitRows(dataset, n, train, pool_bytes) for n in self.names}  # read when a shuffle draws
        self._feature_std: list[np.ndarray] | None = None

    @property
    def device(self) -> str:
        return self.adapter.device

    @property
    def feature_std(self) -> list[np.ndarray]:
        """Per modality, the scale of its Gaussian corruption: the model's own, else the training split's per-feature
        std (``Dataset.train_std``: cached statistics for a big file), asked for on the first Gaussian corruption."""
        if self._feature_std is None:
            self._feature_std = [s if s is not None else self._train_std(n)
                                 for s, n in zip(self.adapter.feature_scales, self.names)]
        return self._feature_std

    @feature_std.setter
    def feature_std(self, value: list[np.ndarray]) -> None:
        self._feature_std = list(value)

    def _train_std(self, name: str) -> np.ndarray:
        """A modality's per-feature std over the training split (the scale of its Gaussian corruption)."""
        if hasattr(self.dataset, "train_std"):
            return self.dataset.train_std(name)
        std = self.pool[name].rows(np.arange(len(self.pool_ids))).astype(np.float64).std(axis=0)
        return np.where(std > 1e-6, std, 1.0).astype(np.float32)

    def read(self, ids: np.ndarray) -> list[np.ndarray]:
        """The raw rows ``ids`` of every modality the model reads, in model order (one read per modality)."""
        return list(self.dataset.arrays(self.names, np.asarray(ids, dtype=np.int64)))

    def inputs(self, ids: np.ndarray, corruptions: Mapping[str, Corruption] | None = None) -> list[np.ndarray]:
        """Raw (corrupted) float32 inputs of the samples ``ids`` in model order."""
        ids = np.asarray(ids, dtype=np.int64)
        return self.corrupted(self.read(ids), ids, corruptions)

    def corrupted(self, raw, ids: np.ndarray, corruptions: Mapping[str, Corruption] | None = None) -> list[np.ndarray]:
        """Already read rows ``raw`` (model order) of the samples ``ids``, corrupted: float32 model inputs.

        The same values as ``inputs(ids, corruptions)``: corruptions draw from (seed, sample id, modality) only."""
        ids = np.asarray(ids, dtype=np.int64)
        out = []
        for i, (spec, x) in enumerate(zip(self.modalities, raw)):
            c = (corruptions or {}).get(spec.name)
            if c is not None and c.active:
                if c.kind not in kinds_for(spec.kind):
                    raise ValueError(f"corruption {c.kind!r} does not apply to the {spec.kind} modality {spec.name!r}")
                x = corrupt(x, spec.kind, c.kind, c.severity, c.seed, modality=spec.name,
                            feature_std=self.feature_std[i] if c.kind == "gaussian" else None, image_shape=spec.image_shape, sample_ids=ids,
                            pool=self.pool[spec.name], pool_ids=self.pool_ids)
            out.append(np.ascontiguousarray(x, dtype=np.float32))
        return out

    def run(
        self,
        ids: np.ndarray,
        corruptions: Mapping[str, Corruption] | None = None,
        settings=None,
        cancel: CancelFn | None = None,
        playback: bool = False,
    ) -> BatchOutcome:
        """The model on samples ``ids`` (under ``corruptions``, with solver ``settings``; None: the model's own)."""
        ids = np.asarray(ids, dtype=np.int64)
        parts = []
        for start in range(0, len(ids), self.batch_size):  # corrupt batch by batch: bounded memory
            if cancel is not None and cancel():
                raise Cancelled()
            chunk = ids[start : start + self.batch_size]
            parts.append(evaluate(self.adapter, self.inputs(chunk, corruptions), settings=settings,
                                  playback=playback, batch_size=self.batch_size))
        if not parts:
            parts.append(evaluate(self.adapter, [x[:0] for x in self.inputs(ids[:0])]))
        return self.outcome(ids, concat_runs(parts))

    def outcome(self, ids: np.ndarray, run: ModelRun) -> BatchOutcome:
        """The per-sample view of a run of the model on the samples ``ids`` (in that order)."""
        ids = np.asarray(ids, dtype=np.int64)
        return BatchOutcome(ids, self.dataset.labels[ids].astype(np.int64), run, self.adapter.capabilities.solver,
                            self.adapter.task)

    def fixed_point_problem(self, ids, corruptions: Mapping[str, Corruption] | None = None) -> FixedPointProblem:
        """The model's fixed-point map for these samples (for solver races and equilibrium analyses)."""
        if not self.adapter.capabilities.solver:
            raise ValueError(f"a {self.adapter.name} model has no fixed point to solve")
        return self.adapter.fixed_point_problem(self.inputs(np.asarray(ids), corruptions))
