"""The one evaluation path: any ``ModelAdapter`` over many samples, in batches, with or without playback.

The studio's single-sample solves, its samples table, the analyses, training's validation and a
checkpoint's test metrics all come through ``evaluate``, so a number shown in one place is the number
computed in every other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import Cancelled
from .adapter import ModelAdapter, ModelRun
from .solvers.trace import concat_traces

CancelFn = Callable[[], bool]


def evaluate(
    adapter: ModelAdapter,
    inputs: Sequence,
    *,
    settings=None,
    playback: bool = False,
    batch_size: int = 256,
    cancel: CancelFn | None = None,
) -> ModelRun:
    """Run ``adapter`` on every row of ``inputs`` (one (N, D) array or tensor per modality), batch by batch.

    ``settings``: the solver settings (None: the model's own). ``playback``: record per-step class
    probabilities and gates in the trace. ``cancel`` is checked before each batch; it raises ``Cancelled``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = int(inputs[0].shape[0]) if len(inputs) else 0
    parts = []
    for start in range(0, n, batch_size):
        if cancel is not None and cancel():
            raise Cancelled()
        parts.append(adapter([x[start : start + batch_size] for x in inputs], settings, playback))
    if not parts:  # no samples: nothing to run
        c = len(adapter.class_names)
        return ModelRun(np.zeros((0, c)), np.zeros((0, c)))
    return concat_runs(parts)


def concat_runs(parts: Sequence[ModelRun]) -> ModelRun:
    """One run from batch runs, in order (traces padded to the longest, as one solve would be)."""
    if len(parts) == 1:
        return parts[0]

    def cat(name):
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    traces = [p.trace for p in parts]
    return ModelRun(
        probabilities=cat("probabilities"), logits=cat("logits"),
        trace=None if any(t is None for t in traces) else concat_traces(traces),
        z_star=cat("z_star"), sigma_hat=cat("sigma_hat"), weights=cat("weights"), pe=cat("pe"), energy=cat("energy"),
    )
