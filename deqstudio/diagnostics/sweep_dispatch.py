"""A robustness sweep whose chunks run elsewhere (worker processes, a cluster), merged here in chunk order.

The engine is given as ``run_chunks(tasks)``: it takes the ``ChunkTask``s still to do and yields
``(position, result)`` pairs as they finish, in any order (``diagnostics.dask_cluster`` makes one on Dask;
anything with the same shape, a process pool, works). Workers rebuild the model and dataset from the paths in the
tasks (``sweep_chunks.run_chunk_task``), so every chunk is evaluated exactly as in the single-process streaming
sweep (``robustness_sweep``), with the same ``SweepSpec``: same chunks, same batches, same table.

Finished chunks go to a ``SweepStore`` (when given) in chunk order, as soon as every earlier chunk has finished,
so a killed cluster sweep resumes like a single-process one (the two share the progress format).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence


from .evaluation import Evaluator
from .robustness import LEVELS, chunk_plan
from .sweep_chunks import EQUILIBRIUM_SAMPLES, ChunkTask, merge_chunks
from .sweep_table import RobustnessSweep

RunChunks = Callable[[Sequence[ChunkTask]], Iterable[tuple[int, dict]]]


def chunk_tasks(spec, total: int, first: int, checkpoint: str, dataset: str, device: str = "cpu",
                allowed_plugins=()) -> list[ChunkTask]:
    """The tasks of chunks ``first .. total - 1``."""
    return [ChunkTask(checkpoint=str(checkpoint), dataset=str(dataset), spec=spec, index=i, device=device,
                      allowed_plugins=tuple(allowed_plugins)) for i in range(first, total)]


def dispatched_sweep(
    evaluator: Evaluator,
    run_chunks: RunChunks,
    *,
    checkpoint: str,
    dataset: str,
    device: str = "cpu",
    allowed_plugins=(),
    modalities=None,
    kinds=None,
    levels=LEVELS,
    split: str = "test",
    seed: int = 0,
    settings=None,
    equilibrium: bool = True,
    equilibrium_samples: int = EQUILIBRIUM_SAMPLES,
    chunk_size: int | None = None,
    batch_size: int | None = None,
    model_name: str = "",
    progress: Callable[[float], None] | None = None,
    store=None,
) -> RobustnessSweep:
    """``robustness_sweep``'s table with the chunks run by ``run_chunks``.

    ``evaluator`` is this process's view of the model and dataset: it checks the plan and gives the split's ids
    and labels; it evaluates nothing. ``checkpoint`` / ``dataset``: the files the workers open (a shared path).
    ``device``: where the workers run the model (``auto`` is decided on each worker)."""
    t0 = time.perf_counter()
    spec, ids, total, chunks = chunk_plan(evaluator, store, modalities=modalities, kinds=kinds, levels=levels,
                                          split=split, seed=seed, settings=settings, equilibrium=equilibrium,
                                          chunk_size=chunk_size, batch_size=batch_size,
                                          equilibrium_samples=equilibrium_samples)
    resumed = len(chunks)
    tasks = chunk_tasks(spec, total, resumed, checkpoint, dataset, device, allowed_plugins)
    if progress is not None and total:
        progress(resumed / total)
    waiting: dict[int, dict] = {}
    finished = resumed
    for position, result in run_chunks(tasks):
        index = tasks[position].index
        if int(result["index"]) != index:
            raise ValueError(f"a worker returned chunk {int(result['index'])} for chunk {index}")
        waiting[index] = result
        while len(chunks) in waiting:  # the finished prefix grows: merge order and the progress file stay in order
            chunk = waiting.pop(len(chunks))
            chunks.append(chunk)
            if store is not None:
                store.append(chunk)
        finished += 1
        if progress is not None:
            progress(finished / total)
    if len(chunks) != total:
        raise ValueError(f"the cluster returned {len(chunks)} of {total} chunks in order")
    seconds = time.perf_counter() - t0
    swept = merge_chunks(chunks, spec, ids, evaluator.dataset.labels[ids],
                         multilabel=evaluator.adapter.task == "multilabel", model_name=model_name, seconds=seconds)
    evaluated = sum(len(ch["sample_ids"]) for ch in chunks[resumed:])
    swept.extra.update(resumed_chunks=resumed, chunks=total, evaluated_samples=evaluated,
                       samples_per_second=evaluated / seconds if seconds > 0 else float("nan"))
    return swept
