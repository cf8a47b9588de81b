"""A robustness sweep cut into chunks of samples: evaluate one chunk over the whole plan, merge chunks into the table.

The chunk API (the single-process streaming sweep and ``sweep --cluster`` both run on it):

``SweepSpec``
    what is swept: the (modality, kind) cells, the severity levels, the split, the corruption seed, the solver
    settings (a ``SolverSettings.to_dict()``, or None for the model's own), whether the equilibrium statistics are
    computed and on how many samples, the chunk size and the model's batch size. Plain values only: picklable,
    and ``to_dict()`` is what a results file records as the sweep's arguments. The chunk size is a multiple of
    the batch size, so the model sees the very batches a whole-split ``Evaluator.run`` with that batch size
    makes: per-sample results are bit-identical to it (a batch's composition changes the last bits of a solve,
    which can move a borderline sample's step count or prediction).
``chunk_count(n, chunk_size)``, ``chunk_range(index, n, chunk_size)``
    chunk ``index`` is the split's positions ``[index·chunk_size, (index+1)·chunk_size)``, in the split's order.
    Chunks are fixed by the chunk size alone, never by how many workers run them, so a result does not depend
    on who ran a chunk.
``evaluate_chunk(evaluator, spec, index, baseline=None, cancel=None, on_cell=None) -> dict``
    the model on one chunk at every cell × level, as a dict of plain numpy arrays (``CHUNK_KEYS``):
    ``index``, ``start``, ``stop`` (0-d int64), ``sample_ids`` (n,), ``done`` (C, L) bool (False: a cancel
    stopped the chunk before that cell), ``predictions`` (C, L, n) int64, or (C, L, n, K) label sets for a
    multilabel model (-1: not evaluated), ``steps`` (C, L, n) int64, ``converged`` (C, L, n) bool,
    ``sigma_hat`` and ``pe`` (C, L, n) float64 of the corrupted modality (NaN without UDML),
    ``spectral_radius`` and ``shift_ratio`` (C, L, n) float64 (NaN outside the equilibrium subsample, see
    below), ``baseline_predictions`` (C, L, n[, K]) (only with a baseline), and the flags ``noise``
    (the model gives σ̂) and ``solver`` (it has a fixed point) as 0-d bools.
    The chunk's rows are read once (sorted ids: sequential reads), the clean run made once and shared by
    every severity-0 cell; each corrupted cell changes one modality.
``merge_chunks(chunks, spec, split_ids, labels, ...) -> RobustnessSweep``
    the table from chunk results given in chunk order (a prefix of the chunks, the last possibly partial, for
    a cancelled sweep): a cell is filled when every chunk of the split finished it. Identical to one
    evaluation of the whole split per cell for accuracy, steps, convergence, σ̂, PE and their rank correlations.
``ChunkTask`` / ``run_chunk_task(task)``
    for a worker process: the model and dataset given by path, the evaluator rebuilt there (and kept for the
    worker's next task), then ``evaluate_chunk``. Input and output are plain values.

Equilibrium statistics (ρ(J) and the linear response, costly per sample) are computed on a fixed subsample of
every cell: the first ``equilibrium_samples`` samples of the split (64 by default) in the split's order.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..core.corruptions import Corruption
from ..errors import Cancelled
from .equilibrium import EQUILIBRIUM_STATISTICS, cell_statistics
from .evaluation import BatchOutcome, Evaluator
from .stats import f1_scores, spearman
from .sweep_cells import CellRunner, EquilibriumCells
from .sweep_table import RobustnessSweep

DEFAULT_BATCH_SIZE = 400  # samples per model call: the Evaluator's batch
DEFAULT_CHUNK_SIZE = 3 * DEFAULT_BATCH_SIZE  # samples per chunk: what a rerun after a kill may have to redo
EQUILIBRIUM_SAMPLES = 64  # the equilibrium statistics' subsample: the split's first samples (costly per sample)

CHUNK_KEYS = ("index", "start", "stop", "sample_ids", "done", "predictions", "steps", "converged", "sigma_hat", "pe",
              "spectral_radius", "shift_ratio", "noise", "solver")  # and "baseline_predictions" with a baseline


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep evaluates; plain values (picklable). ``cells``: (modality, kind) pairs in table order."""

    cells: tuple[tuple[str, str], ...]
    levels: tuple[float, ...]
    split: str = "test"
    seed: int = 0
    settings: Mapping | None = None  # SolverSettings.to_dict(); None: the model's own
    equilibrium: bool = True
    equilibrium_samples: int = EQUILIBRIUM_SAMPLES
    chunk_size: int = DEFAULT_CHUNK_SIZE
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        object.__setattr__(self, "cells", tuple((str(m), str(k)) for m, k in self.cells))
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        for name in ("chunk_size", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if int(self.chunk_size) % int(self.batch_size):
            raise ValueError(f"chunk_size ({self.chunk_size}) must be a multiple of batch_size ({self.batch_size})")
        if int(self.equilibrium_samples) < 0:
            raise ValueError(f"equilibrium_samples must be 0 or more, got {self.equilibrium_samples}")

    def solver_settings(self):
        from ..core.solvers.settings import SolverSettings

        return None if self.settings is None else SolverSettings.from_dict(self.settings)

    def to_dict(self) -> dict:
        """JSON-ready: the sweep's arguments as a results file records them."""
        d = asdict(self)
        d["cells"] = [list(c) for c in self.cells]
        d["levels"] = list(self.levels)
        d["settings"] = None if self.settings is None else dict(self.settings)
        return d

    @classmethod
    def from_dict(cls, data: Mapping) -> "SweepSpec":
        data = dict(data)
        data["cells"] = tuple(tuple(c) for c in data["cells"])
        data["levels"] = tuple(data["levels"])
        return cls(**data)


def chunk_count(n: int, chunk_size: int) -> int:
    """How many chunks ``n`` samples make (the last one may be shorter)."""
    return -(-int(n) // int(chunk_size))


def chunk_range(index: int, n: int, chunk_size: int) -> tuple[int, int]:
    """The split positions ``[start, stop)`` of chunk ``index``."""
    if not 0 <= index < max(chunk_count(n, chunk_size), 1):
        raise ValueError(f"chunk {index} out of range: {n} samples make {chunk_count(n, chunk_size)} chunks")
    start = index * chunk_size
    return start, min(start + chunk_size, n)


def _read_sorted(evaluator: Evaluator, ids: np.ndarray) -> list[np.ndarray]:
    """The rows of ``ids`` (in that order) read once, through sorted unique ids (sequential reads)."""
    unique, inverse = np.unique(ids, return_inverse=True)
    rows = evaluator.read(unique)
    return [np.asarray(x)[inverse] for x in rows]


def evaluate_chunk(
    evaluator: Evaluator,
    spec: SweepSpec,
    index: int,
    *,
    baseline: Evaluator | None = None,
    cancel: Callable[[], bool] | None = None,
    on_cell: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Chunk ``index`` of ``spec.split`` at every cell and level (see the module docstring for the result).

    ``cancel`` is asked before each cell and each model batch; a cancel returns what was finished (``done``).
    ``on_cell`` is called after each finished cell (progress)."""
    split_ids = np.asarray(evaluator.dataset.split(spec.split), dtype=np.int64)
    start, stop = chunk_range(index, len(split_ids), spec.chunk_size)
    ids = split_ids[start:stop]
    n, C, L = len(ids), len(spec.cells), len(spec.levels)
    names = list(evaluator.names)
    settings = spec.solver_settings()
    multilabel = evaluator.adapter.task == "multilabel"
    per_sample = (n, len(evaluator.adapter.class_names)) if multilabel else (n,)
    solver = bool(evaluator.adapter.capabilities.solver)
    equilibrium = spec.equilibrium and solver
    sub = np.flatnonzero(np.arange(start, stop) < spec.equilibrium_samples) if equilibrium else np.zeros(0, int)

    out: dict[str, np.ndarray] = {
        "index": np.int64(index), "start": np.int64(start), "stop": np.int64(stop), "sample_ids": ids,
        "done": np.zeros((C, L), dtype=bool),
        "predictions": np.full((C, L, *per_sample), -1, dtype=np.int64),
        "steps": np.zeros((C, L, n), dtype=np.int64), "converged": np.zeros((C, L, n), dtype=bool),
        "sigma_hat": np.full((C, L, n), np.nan), "pe": np.full((C, L, n), np.nan),
        "spectral_radius": np.full((C, L, n), np.nan), "shift_ratio": np.full((C, L, n), np.nan),
        "noise": np.bool_(False), "solver": np.bool_(solver),
    }
    if baseline is not None:
        out["baseline_predictions"] = np.full((C, L, *per_sample), -1, dtype=np.int64)
    if n == 0:
        return out
    try:
        raw = _read_sorted(evaluator, ids)
        clean_inputs = evaluator.corrupted(raw, ids, None)
        model = CellRunner(evaluator, ids, clean_inputs, settings, spec.batch_size, cancel)
        base = None if baseline is None else CellRunner(baseline, ids, baseline.corrupted(raw, ids, None), settings,
                                                         spec.batch_size, cancel)
        equilibria = EquilibriumCells(evaluator, sub, clean_inputs, settings, spec.batch_size) if len(sub) else None
        clean: BatchOutcome | None = None
        base_clean: BatchOutcome | None = None
        for c, (m, k) in enumerate(spec.cells):
            mi = names.index(m)
            for j, level in enumerate(spec.levels):
                if cancel is not None and cancel():  # also before a cell that would reuse the clean run
                    raise Cancelled()
                corr = {m: Corruption(k, float(level), spec.seed)} if level > 0 else None
                if clean is None and (corr is None or len(sub)):  # the linear response starts from the clean z*
                    clean = model.run(clean_inputs)
                if corr is None:
                    r, inputs = clean, clean_inputs
                else:
                    inputs = evaluator.corrupted(raw, ids, corr)
                    r = model.run(inputs, mi)
                cell = equilibria.cell(corr, mi, r, clean, inputs) if equilibria is not None else None
                if base is not None:
                    if corr is None:
                        if base_clean is None:
                            base_clean = base.run(base.clean_inputs)
                        b = base_clean
                    else:
                        b = base.run(baseline.corrupted(raw, ids, corr),
                                     baseline.names.index(m) if m in baseline.names else None)
                    out["baseline_predictions"][c, j] = b.predictions
                out["predictions"][c, j] = r.predictions
                out["steps"][c, j] = r.steps
                out["converged"][c, j] = r.converged
                if r.sigma_hat is not None:
                    out["noise"] = np.bool_(True)
                    out["sigma_hat"][c, j], out["pe"][c, j] = r.sigma_hat[:, mi], r.pe[:, mi]
                if cell is not None:
                    out["spectral_radius"][c, j, sub] = cell["spectral_radius"]
                    out["shift_ratio"][c, j, sub] = cell["shift_ratio"]
                out["done"][c, j] = True
                if on_cell is not None:
                    on_cell()
    except Cancelled:
        pass
    return out


def merge_chunks(
    chunks: Sequence[Mapping[str, np.ndarray]],
    spec: SweepSpec,
    split_ids: np.ndarray,
    labels: np.ndarray,
    *,
    multilabel: bool = False,
    model_name: str = "",
    baseline_name: str = "",
    seconds: float = 0.0,
) -> RobustnessSweep:
    """The table from chunk results in chunk order (a prefix of the split's chunks for a cancelled sweep).

    ``split_ids`` and ``labels``: the whole split's sample ids and labels (``dataset.labels[split_ids]``).
    A cell is filled when every chunk of the split finished it; otherwise it is NaN and ``complete`` False."""
    split_ids = np.asarray(split_ids, dtype=np.int64)
    labels = np.asarray(labels).astype(np.int64)
    n, C, L = len(split_ids), len(spec.cells), len(spec.levels)
    levels = np.asarray(spec.levels, dtype=np.float64)
    total = chunk_count(n, spec.chunk_size)
    for i, ch in enumerate(chunks):
        if int(ch["index"]) != i:
            raise ValueError(f"chunk results out of order: position {i} holds chunk {int(ch['index'])}")
    covered = sum(len(ch["sample_ids"]) for ch in chunks)
    filled = np.ones((C, L), dtype=bool) if covered == n and len(chunks) == total else np.zeros((C, L), dtype=bool)
    for ch in chunks:
        filled &= np.asarray(ch["done"], dtype=bool)
    has_baseline = bool(chunks) and "baseline_predictions" in chunks[0]
    solver = bool(chunks) and bool(chunks[0]["solver"])
    noise = any(bool(ch["noise"]) for ch in chunks)

    per_sample = labels.shape[1:]
    predictions = np.full((C, L, n, *per_sample), -1, dtype=np.int64)
    base_predictions = np.full_like(predictions, -1) if has_baseline else None

    def cat(key: str) -> np.ndarray:
        if not chunks:
            return np.zeros((C, L, 0))
        return np.concatenate([np.asarray(ch[key]) for ch in chunks], axis=2)

    for ch in chunks:
        rows = slice(int(ch["start"]), int(ch["stop"]))
        predictions[:, :, rows] = ch["predictions"]
        if has_baseline:
            base_predictions[:, :, rows] = ch["baseline_predictions"]
    steps, converged, sigma, pe = cat("steps"), cat("converged"), cat("sigma_hat"), cat("pe")
    rho_j, ratio = cat("spectral_radius"), cat("shift_ratio")

    shape = (C, L)
    acc, macro, mean_steps, conv, noise_est, pe_est, base = (np.full(shape, np.nan) for _ in range(7))
    stats = {k: np.full(shape, np.nan) for k in EQUILIBRIUM_STATISTICS}

    def scores(preds: np.ndarray) -> dict[str, float]:
        if multilabel:
            return f1_scores(labels, preds)
        return {"accuracy": float((preds == labels).mean()) if n else float("nan")}

    metric = "micro_f1" if multilabel else "accuracy"
    for c in range(C):
        for j in range(L):
            if not filled[c, j]:
                continue
            s = scores(predictions[c, j])
            acc[c, j] = s[metric]
            if multilabel:
                macro[c, j] = s["macro_f1"]
            if steps[c, j].any():  # no step at all: the model has no solver, and both stay NaN (n/a)
                mean_steps[c, j], conv[c, j] = steps[c, j].mean(), converged[c, j].mean()
            if noise:
                noise_est[c, j], pe_est[c, j] = sigma[c, j].mean(), pe[c, j].mean()
            if spec.equilibrium and solver:
                for name, value in cell_statistics({"spectral_radius": rho_j[c, j],
                                                    "shift_ratio": ratio[c, j]}).items():
                    stats[name][c, j] = value
            if has_baseline:
                base[c, j] = scores(base_predictions[c, j])[metric]

    def rank(values: np.ndarray, c: int) -> float:
        reached = np.flatnonzero(filled[c])
        if not noise or len(reached) == 0:
            return np.nan
        lv = np.repeat(levels[reached], n)
        return spearman(lv, values[c, reached].reshape(-1))

    complete = bool(filled.all())
    return RobustnessSweep(
        model=model_name, split=spec.split, levels=levels, modality=np.array([m for m, _ in spec.cells]),
        kind=np.array([k for _, k in spec.cells]), accuracy=acc, mean_steps=mean_steps, converged_fraction=conv,
        noise_estimate=noise_est, pe_estimate=pe_est,
        noise_spearman=np.array([rank(sigma, c) for c in range(C)]),
        pe_spearman=np.array([rank(pe, c) for c in range(C)]),
        samples=n, complete=complete, baseline=baseline_name, baseline_accuracy=base if has_baseline else None,
        seconds=seconds,
        extra={"sample_ids": split_ids, "labels": labels, "predictions": predictions,
               "equilibrium_samples": min(int(spec.equilibrium_samples), n) if spec.equilibrium and solver else 0},
        metric=metric, macro_f1=macro if multilabel else None,
        equilibrium=stats if spec.equilibrium and solver else {},
    )


@dataclass(frozen=True)
class ChunkTask:
    """One chunk for a worker process: the model and dataset by path (read there), the spec and the chunk index.

    ``checkpoint``: a checkpoint, a DEQ package or ``plugin:NAME[:PATH]`` (then ``allowed_plugins`` must name
    the plugin); ``baseline``: an optional second checkpoint evaluated on the same inputs."""

    checkpoint: str
    dataset: str
    spec: SweepSpec
    index: int
    device: str = "cpu"
    baseline: str | None = None
    allowed_plugins: tuple[str, ...] = ()


@functools.lru_cache(maxsize=4)
def _worker_evaluator(checkpoint: str, dataset: str, device: str, allowed_plugins: tuple[str, ...],
                      batch_size: int) -> Evaluator:
    """The evaluator a worker process builds once per (model, dataset, device) and keeps for its next tasks."""
    from ..io.dataset import read_dataset
    from ..io.models import open_model

    model = open_model(checkpoint, allowed_plugins=frozenset(allowed_plugins))
    return Evaluator(model.adapter, read_dataset(dataset), device=device, batch_size=batch_size)


def run_chunk_task(task: ChunkTask) -> dict[str, np.ndarray]:
    """``evaluate_chunk`` in a worker: the evaluator rebuilt from the task's paths (cached per process)."""
    plugins, batch = tuple(task.allowed_plugins), task.spec.batch_size
    evaluator = _worker_evaluator(task.checkpoint, task.dataset, task.device, plugins, batch)
    baseline = None
    if task.baseline is not None:
        baseline = _worker_evaluator(task.baseline, task.dataset, task.device, plugins, batch)
    return evaluate_chunk(evaluator, task.spec, task.index, baseline=baseline)
