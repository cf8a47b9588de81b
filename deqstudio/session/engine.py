"""The compute side of the studio: solve one sample clean and corrupted, or tabulate a split.

Runs on the runner's worker thread (the headless commands call it directly). It reaches the model only
through its ``ModelAdapter`` and the ``Evaluator``; everything it returns is numpy or plain Python
(``session.values``), so the GUI never touches torch.
"""

from __future__ import annotations

import time
from itertools import pairwise

import numpy as np

from ..core.adapter import ModelAdapter, ModelRun
from ..core.device import is_out_of_memory, out_of_memory_notice, resolve_device
from ..core.evaluate import evaluate
from ..core.solvers.settings import SolverSettings
from ..diagnostics.evaluation import Evaluator
from ..diagnostics.stats import label_sets
from ..errors import MismatchError
from .threads import threads_for_batches
from .values import BrowseTable, EquilibriumResult, ModelInfo, RunView, SolveRequest, SolveResult

CLEAN_CACHE_SIZE = 256
# The samples table's batches hold at most this many bytes of input rows: a model's activations grow with its
# inputs (the scale dataset's 64×64 image through a CNN takes ~1 MB per sample), and the window's memory must stay
# bounded whatever the dataset. 640 KiB: the bundled UCI views keep batches of 400, 4,446-feature samples get 36
# (measured: the window's peak while its table fills fell from ~560 to ~500 MiB, and the table fills as fast: a
# batched solve costs its iterations more than its rows).
STUDIO_BATCH_BYTES = 640 * 1024
STUDIO_BATCH_MAX = 400
# A shuffle keeps the training rows it read only for a modality whose training split fits in this (``SplitRows``):
# the scale file's text and meta views, not its 255 MB of images (read row by row through the dataset's cache).
STUDIO_POOL_BYTES = 64 * 1024**2


def studio_batch_size(dataset, names) -> int:
    row_bytes = 4 * sum(dataset.modalities[n].dim for n in names)
    return int(min(STUDIO_BATCH_MAX, max(16, STUDIO_BATCH_BYTES // max(row_bytes, 1))))


def check_compatible(adapter: ModelAdapter, dataset) -> None:
    """Raise MismatchError naming every modality the dataset lacks or sizes differently, or a class mismatch."""
    problems = []
    for spec in adapter.modalities:
        if spec.name not in dataset.modalities:
            problems.append(f"modality {spec.name!r} is missing (the dataset has {', '.join(dataset.modality_names)})")
        elif dataset.modalities[spec.name].dim != spec.size:
            problems.append(f"modality {spec.name!r} has {dataset.modalities[spec.name].dim} features, "
                            f"the model expects {spec.size}")
    if not problems and dataset.num_classes != len(adapter.class_names):
        problems.append(f"the dataset has {dataset.num_classes} classes, the model {len(adapter.class_names)}")
    task = getattr(dataset, "task", "multiclass")
    if not problems and task != adapter.task:
        problems.append(f"the dataset's labels are {task} (one {'set of labels' if task == 'multilabel' else 'class'}"
                        f" per sample), the model is {adapter.task}")
    if problems:
        raise MismatchError(f"dataset {dataset.name!r} does not fit this checkpoint: " + "; ".join(problems))


def model_info(adapter: ModelAdapter, dataset=None) -> ModelInfo:
    dependency = getattr(adapter, "dependency_tables", {}) or {}
    return ModelInfo(
        fusion=adapter.name, modality_names=adapter.modality_names,
        modality_kinds=tuple(m.kind for m in adapter.modalities),
        image_shapes=tuple(m.image_shape for m in adapter.modalities),
        class_names=dataset.class_names if dataset is not None else adapter.class_names,
        block_names=adapter.block_names, capabilities=adapter.capabilities, task=adapter.task,
        source=adapter.source.description, dependency=dict(adapter.dependency),
        dependency_loss=dict(dependency.get("loss_increase", {})), solver_defaults=adapter.solver_defaults,
        input_note=getattr(adapter, "input_note", ""),
    )


def worker_thread_setup() -> None:
    """One torch thread for the solve worker: one sample's small ops only pay for a second thread's hand-off
    (p95 73 ms against 14 ms). See ``session.threads``: no other running thread is affected.

    The process's count is read here first, before this thread sets its own: importing torch (seconds) then happens
    on the worker, while the window is already shown, not on the GUI thread before it."""
    from .threads import process_threads, use_threads

    process_threads()
    use_threads(1)


class Engine:
    """A model and a dataset, ready to solve samples. Not thread-safe: one worker uses it."""

    def __init__(self, model: ModelAdapter, dataset, device: str = "cpu") -> None:
        check_compatible(model, dataset)
        self.adapter = model
        self.dataset = dataset
        self.evaluator = Evaluator(model, dataset, batch_size=studio_batch_size(dataset, model.modality_names),
                                   pool_bytes=STUDIO_POOL_BYTES)
        self.device = "cpu"
        self.notice = ""
        self._clean_cache: dict = {}
        self._clean_equilibria: dict = {}
        self.set_device(device)

    def info(self) -> ModelInfo:
        return model_info(self.adapter, self.dataset)

    def set_device(self, device: str) -> str:
        """Move the model; CUDA that is absent or fails falls back to the CPU with a notice."""
        placement = resolve_device(device)
        self.notice = placement.notice
        try:
            self.adapter.to(placement.device)
            self.device = placement.device
        except Exception as exc:  # noqa: BLE001 — whatever a device move raises, the CPU still works
            self.adapter.to("cpu")
            self.device = "cpu"
            self.notice = f"could not use {placement.device} ({str(exc).splitlines()[0][:80]}); running on the CPU"
        self._clean_cache.clear()
        self._clean_equilibria.clear()
        return self.device

    # -- inputs -----------------------------------------------------------------------------------
    def raw_inputs(self, sample: int) -> list[np.ndarray]:
        if not 0 <= sample < len(self.dataset):
            raise IndexError(f"sample {sample} is outside 0..{len(self.dataset) - 1}")
        return self.evaluator.inputs(np.array([sample]))

    def corrupted_inputs(self, sample: int, corruptions: dict) -> list[np.ndarray]:
        return self.evaluator.inputs(np.array([sample]), corruptions)

    # -- solving ----------------------------------------------------------------------------------
    def _settings(self, settings: SolverSettings) -> SolverSettings | None:
        return settings if self.adapter.capabilities.solver else None

    def _run(self, inputs: list[np.ndarray], settings: SolverSettings) -> RunView:
        t0 = time.perf_counter()
        run = evaluate(self.adapter, inputs, settings=self._settings(settings), playback=True, batch_size=1)
        return self._view(run, (time.perf_counter() - t0) * 1e3)

    def _view(self, run: ModelRun, wall_ms: float) -> RunView:
        m = len(self.adapter.modalities)
        final = run.probabilities[0]
        predicted = (tuple(int(i) for i in np.flatnonzero(label_sets(final[None])[0]))
                     if self.adapter.task == "multilabel" else (int(final.argmax()),))
        per_modality = {k: (None if getattr(run, k) is None else np.asarray(getattr(run, k)[0], dtype=np.float64))
                        for k in ("sigma_hat", "weights", "pe", "energy")}
        t = run.trace
        if t is None:
            return RunView(
                rel=np.zeros(0), abs=np.zeros(0), block_rel=np.zeros((0, 0)), probabilities=final[None],
                gates=np.zeros((0, m)), gate_share=np.zeros((0, m)), nstep=0, converged=True, reason="no solver",
                best_step=0, prediction=int(final.argmax()), final_probabilities=final, z_star=np.zeros(0),
                block_slices=[], wall_ms=wall_ms, predicted=predicted, **per_modality,
            )
        k = int(t.nstep[0])
        edges = np.cumsum((0, *(b.size for b in self.adapter.blocks)))

        def per_step(name, width):
            values = t.extras.get(name)
            return np.full((k, width), np.nan) if values is None else np.asarray(values[0, :k])

        return RunView(
            rel=np.asarray(t.rel[0, :k], dtype=np.float64), abs=np.asarray(t.abs[0, :k], dtype=np.float64),
            block_rel=np.asarray(t.block_rel[0, :k], dtype=np.float64) if t.block_rel is not None else np.zeros((k, 0)),
            probabilities=per_step("probabilities", len(final)),
            gates=per_step("gates", m) if self.adapter.capabilities.gates else np.zeros((0, m)),
            gate_share=per_step("gate_share", m) if self.adapter.capabilities.gates else np.zeros((0, m)),
            nstep=k, converged=bool(t.converged[0]), reason=str(t.reason[0]), best_step=int(t.best_step[0]),
            prediction=int(final.argmax()), final_probabilities=final,
            z_star=np.asarray(run.z_star[0], dtype=np.float64) if run.z_star is not None else np.zeros(0),
            block_slices=[(int(a), int(b)) for a, b in pairwise(edges)], wall_ms=wall_ms, predicted=predicted,
            **per_modality,
        )

    def _run_with_fallback(self, inputs, settings: SolverSettings) -> RunView:
        try:
            return self._run(inputs, settings)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            lost = self.device
            self.set_device("cpu")
            self.notice = out_of_memory_notice(lost)
            return self._run(inputs, settings)

    def solve(self, request: SolveRequest) -> SolveResult:
        t0 = time.perf_counter()
        if request.device != self.device and not (request.device.startswith("cuda") and self.notice):
            self.set_device(request.device)
        elif request.device == self.device == "cpu":
            self.notice = ""  # the CPU is what was asked for: a notice about the GPU no longer applies
        corruptions = request.active_corruptions()
        key = (request.sample, request.solver, self.device)
        clean = self._clean_cache.get(key)
        from_cache = clean is not None
        if clean is None:
            clean = self._run_with_fallback(self.raw_inputs(request.sample), request.solver)
            if len(self._clean_cache) > CLEAN_CACHE_SIZE:
                self._clean_cache.clear()
            self._clean_cache[key] = clean
        raw = self.raw_inputs(request.sample)
        if corruptions:
            corrupted_inputs = self.corrupted_inputs(request.sample, corruptions)
            corrupted = self._run_with_fallback(corrupted_inputs, request.solver)
        else:
            corrupted_inputs, corrupted = raw, clean
        shift = np.array([np.linalg.norm(corrupted.z_star[a:b] - clean.z_star[a:b]) if len(clean.z_star) else np.nan
                          for a, b in clean.block_slices])
        images = {spec.name: (before.reshape(spec.image_shape), np.asarray(after).reshape(spec.image_shape))
                  for spec, before, after in zip(self.adapter.modalities, raw, corrupted_inputs) if spec.kind == "image"}
        severities = dict.fromkeys(self.adapter.modality_names, 0.0)
        severities.update({n: c.severity for n, c in request.corruptions if n in severities})
        truth = np.asarray(self.dataset.labels[request.sample])
        multilabel = truth.ndim == 1
        return SolveResult(
            request=request, label=-1 if multilabel else int(truth), clean=clean, corrupted=corrupted,
            shift=shift, images=images, severities=severities, device=self.device,
            seconds=time.perf_counter() - t0, notice=self.notice, fusion=self.adapter.name,
            modality_names=self.adapter.modality_names, block_names=self.adapter.block_names,
            class_names=self.dataset.class_names, dependency=dict(self.adapter.dependency),
            corruption_labels={n: c.label() for n, c in corruptions.items()}, capabilities=self.adapter.capabilities,
            clean_from_cache=from_cache, task=self.adapter.task,
            label_set=tuple(int(i) for i in np.flatnonzero(truth)) if multilabel else (),
            input_note=getattr(self.adapter, "input_note", ""),
        )

    def equilibrium(self, result: SolveResult, cancel=None) -> EquilibriumResult:
        """Stability, coupling, sensitivity, multiple starts and (corrupted) the linear response of a solved
        result's runs (``diagnostics.equilibrium``). The clean report is kept per sample, solver and device.
        ``cancel`` is checked between stages (``Cancelled``)."""
        from ..diagnostics.equilibrium import equilibrium_report

        t0 = time.perf_counter()
        request = result.request
        if not self.adapter.capabilities.solver:
            return EquilibriumResult(request.generation, request.sample, None, None)
        settings = self._settings(request.solver)
        clean_inputs = self.raw_inputs(request.sample)
        key = (request.sample, request.solver, self.device)
        clean = self._clean_equilibria.get(key)
        if clean is None:
            clean = equilibrium_report(self.adapter, clean_inputs, result.clean.z_star, settings,
                                       residuals=result.clean.abs, best_step=result.clean.best_step, cancel=cancel)
            if len(self._clean_equilibria) > CLEAN_CACHE_SIZE:
                self._clean_equilibria.clear()
            self._clean_equilibria[key] = clean
        corrupted = clean
        if result.corrupted is not result.clean:
            run = result.corrupted
            corrupted = equilibrium_report(
                self.adapter, self.corrupted_inputs(request.sample, request.active_corruptions()), run.z_star,
                settings, residuals=run.abs, best_step=run.best_step, clean=(clean_inputs, result.clean.z_star),
                cancel=cancel)
        return EquilibriumResult(request.generation, request.sample, clean, corrupted, time.perf_counter() - t0)

    def browse(self, split: str = "test", settings: SolverSettings | None = None, cancel=None) -> BrowseTable:
        """Label, prediction, steps and final residual for every sample of a split (clean inputs)."""
        idx = self.dataset.split(split)
        settings = self._settings(settings) if settings is not None else None
        with threads_for_batches():
            out = self.evaluator.run(idx, None, settings, cancel)
        return BrowseTable(indices=idx, labels=out.labels, predictions=out.predictions, correct=out.correct,
                           steps=out.steps, final_rel=out.final_rel, converged=out.converged, task=out.task,
                           f1=out.sample_f1, metrics=out.metrics())

    def table_chunk(self, ids: np.ndarray, settings: SolverSettings, corruptions: dict | None,
                    clean: bool = True) -> tuple[dict | None, dict | None]:
        """Prediction, steps, final residual and converged for samples ``ids``: clean (when ``clean``) and under
        ``corruptions`` (when any is active). One chunk of the progressively filled samples table, on the worker's
        own single thread: the table fills in the background and leaves the other core to the window."""
        settings = self._settings(settings) if settings is not None else None
        active = {m: c for m, c in (corruptions or {}).items() if c.active}

        def columns(outcome) -> dict:
            return {"predictions": outcome.predictions, "steps": outcome.steps, "final_rel": outcome.final_rel,
                    "converged": outcome.converged, "f1": outcome.sample_f1}

        plain = columns(self.evaluator.run(ids, None, settings)) if clean else None
        now = columns(self.evaluator.run(ids, active, settings)) if active else None
        return plain, now
