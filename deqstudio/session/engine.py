"""The compute side of the studio: solve one sample clean and corrupted, or tabulate a split.

Runs on the runner's worker thread. Everything it returns is numpy or plain Python, so the GUI never
touches torch. torch is imported when an engine is built, not when this module is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..core.corruptions import CORRUPTIONS, corrupt, kinds_for

DEFAULT_SOLVER_OPTIONS = {"anderson": ("m", "lam"), "fixed_point": ("tau",), "broyden": ("m",)}


@dataclass(frozen=True)
class SolverChoice:
    solver: str = "anderson"
    max_iter: int = 50
    tol: float = 1e-4
    stop_mode: str = "rel"
    m: int = 6
    lam: float = 1e-4
    tau: float = 1.0
    device: str = "cpu"

    def options(self) -> dict:
        if self.solver == "anderson":
            return {"m": self.m, "lam": self.lam}
        if self.solver == "fixed_point":
            return {"tau": self.tau}
        return {}

    def to_dict(self) -> dict:
        return {"solver": self.solver, "max_iter": self.max_iter, "tol": self.tol, "stop_mode": self.stop_mode,
                "options": self.options(), "device": self.device}


@dataclass(frozen=True)
class CorruptionChoice:
    kind: str = "gaussian"
    severity: float = 0.0
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.severity > 0


@dataclass(frozen=True)
class SolveRequest:
    """An immutable snapshot of what to solve, built on the UI thread."""

    generation: int
    sample: int
    corruptions: tuple[tuple[str, CorruptionChoice], ...]
    solver: SolverChoice

    def corruption_specs(self) -> list[str]:
        return [f"{m}={c.kind}:{c.severity:g}" + (f"@{c.seed}" if c.seed else "") for m, c in self.corruptions if c.active]


@dataclass
class RunView:
    """One solve of one sample, as arrays over solver steps (K = steps recorded)."""

    rel: np.ndarray  # (K,)
    abs: np.ndarray  # (K,)
    block_rel: np.ndarray  # (K, blocks)
    probabilities: np.ndarray  # (K, C); for non-DEQ models K = 1
    gates: np.ndarray  # (K, M) mean gate value per modality
    gate_share: np.ndarray  # (K, M)
    nstep: int
    converged: bool
    reason: str
    best_step: int
    prediction: int
    final_probabilities: np.ndarray  # (C,)
    z_star: np.ndarray  # (D,) joint state, empty for non-DEQ
    block_slices: list[tuple[int, int]]
    sigma_hat: np.ndarray | None  # (M,)
    weights: np.ndarray | None  # (M,)
    pe: np.ndarray | None  # (M,)
    energy: np.ndarray | None  # (M,)
    wall_ms: float

    @property
    def final_rel(self) -> float:
        return float(self.rel[self.best_step]) if len(self.rel) else float("nan")


@dataclass
class SolveResult:
    request: SolveRequest
    label: int
    clean: RunView
    corrupted: RunView
    shift: np.ndarray  # (blocks,) ‖z*_corrupted − z*_clean‖ per block
    images: dict[str, tuple[np.ndarray, np.ndarray]]  # modality → (before, after) (H, W)
    severities: dict[str, float]
    device: str
    seconds: float
    notice: str = ""
    fusion: str = ""
    modality_names: tuple[str, ...] = ()
    block_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    dependency: dict = field(default_factory=dict)
    corruption_labels: dict = field(default_factory=dict)


@dataclass
class BrowseTable:
    indices: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    correct: np.ndarray
    steps: np.ndarray
    final_rel: np.ndarray
    converged: np.ndarray


@dataclass
class ModelInfo:
    """What the GUI needs to know about the loaded model, without torch."""

    fusion: str
    modality_names: tuple[str, ...]
    modality_kinds: tuple[str, ...]
    image_shapes: tuple
    class_names: tuple[str, ...]
    block_names: tuple[str, ...]
    is_deq: bool
    is_udml: bool
    dependency: dict[str, float] = field(default_factory=dict)
    dependency_loss: dict[str, float] = field(default_factory=dict)


class MismatchError(ValueError):
    """The dataset does not carry the modalities (or sizes) the checkpoint needs."""


def check_compatible(config, dataset) -> None:
    problems = []
    for spec in config.modalities:
        if spec.name not in dataset.modalities:
            problems.append(f"modality {spec.name!r} is missing (the dataset has {', '.join(dataset.modality_names)})")
        elif dataset.modalities[spec.name].dim != spec.input_dim:
            problems.append(f"modality {spec.name!r} has {dataset.modalities[spec.name].dim} features, "
                            f"the model expects {spec.input_dim}")
    if not problems and dataset.num_classes != config.num_classes:
        problems.append(f"the dataset has {dataset.num_classes} classes, the model {config.num_classes}")
    if problems:
        raise MismatchError(f"dataset {dataset.name!r} does not fit this checkpoint: " + "; ".join(problems))


class Engine:
    """A loaded checkpoint and dataset, ready to solve samples. Not thread-safe: one worker uses it."""

    def __init__(self, checkpoint, dataset, device: str = "cpu") -> None:
        import torch

        check_compatible(checkpoint.config, dataset)
        self._torch = torch
        self._batch_threads = torch.get_num_threads()
        self.checkpoint = checkpoint
        self.dataset = dataset
        self.model = checkpoint.model.eval()
        self.config = checkpoint.config
        self.device = "cpu"
        self.notice = ""
        self._clean_cache: dict = {}
        self._feature_std = [s.detach().cpu().numpy() for s in self.model.normalisation()[1]]
        train = dataset.split("train")
        self._pool_ids = train
        self._pool = {n: dataset.modalities[n].data[train] for n in self.config.modality_names}
        self._dependency = dict((checkpoint.dependency or {}).get("logit_magnitude", {}))
        self.set_device(device)

    def info(self) -> ModelInfo:
        c = self.config
        dep = self.checkpoint.dependency or {}
        block_names = c.modality_names + ("fused",) if c.is_deq else ()
        return ModelInfo(
            fusion=c.fusion, modality_names=c.modality_names, modality_kinds=tuple(m.kind for m in c.modalities),
            image_shapes=tuple(m.image_shape for m in c.modalities), class_names=self.dataset.class_names,
            block_names=block_names, is_deq=c.is_deq, is_udml=c.is_udml,
            dependency=dict(dep.get("logit_magnitude", {})), dependency_loss=dict(dep.get("loss_increase", {})),
        )

    def set_device(self, device: str) -> str:
        """Move the model; CUDA that is absent or fails falls back to CPU with a notice."""
        torch = self._torch
        self.notice = ""
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                self.notice = "CUDA is not available; running on the CPU"
                device = "cpu"
        try:
            self.model.to(device)
            self.device = device
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            self.model.to("cpu")
            self.device = "cpu"
            self.notice = f"could not use {device} ({str(exc).splitlines()[0][:80]}); running on the CPU"
        self._clean_cache.clear()
        return self.device

    # -- inputs -----------------------------------------------------------------------------------
    def raw_inputs(self, sample: int) -> list[np.ndarray]:
        if not 0 <= sample < len(self.dataset):
            raise IndexError(f"sample {sample} is outside 0..{len(self.dataset) - 1}")
        return [self.dataset.modalities[n].data[sample : sample + 1] for n in self.config.modality_names]

    def corrupted_inputs(self, sample: int, corruptions: dict) -> list[np.ndarray]:
        out = []
        for i, (spec, x) in enumerate(zip(self.config.modalities, self.raw_inputs(sample))):
            choice = corruptions.get(spec.name)
            if choice is None or not choice.active:
                out.append(x)
                continue
            if choice.kind not in kinds_for(spec.kind):
                raise ValueError(f"corruption {choice.kind!r} does not apply to the {spec.kind} modality {spec.name!r}")
            out.append(corrupt(
                x, spec.kind, choice.kind, choice.severity, choice.seed, modality=spec.name,
                feature_std=self._feature_std[i], image_shape=spec.image_shape, sample_ids=[sample],
                pool=self._pool[spec.name], pool_ids=self._pool_ids,
            ))
        return out

    # -- solving ----------------------------------------------------------------------------------
    def _settings(self, choice: SolverChoice):
        from ..core.fusion.deq_fusion import SolverSettings

        return SolverSettings(solver=choice.solver, max_iter=int(choice.max_iter), tol=float(choice.tol),
                              stop_mode=choice.stop_mode, options=choice.options())

    def _run(self, inputs: list[np.ndarray], choice: SolverChoice) -> RunView:
        torch = self._torch
        from ..core import udml

        t0 = time.perf_counter()
        tensors = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device) for x in inputs]
        with torch.no_grad():
            out = self.model(tensors, settings=self._settings(choice) if self.config.is_deq else None, playback=True)
            final = torch.softmax(out.logits, dim=1)[0].cpu().numpy()
            pe = energy = None
            if out.logvar is not None:
                pe = np.array([float(udml.pe_score(lv)[0]) for lv in out.logvar])
            if out.unimodal_logits is not None:
                energy = np.array([float(udml.energy_score(lg)[0]) for lg in out.unimodal_logits])
        wall_ms = (time.perf_counter() - t0) * 1e3
        m = len(self.config.modalities)
        sigma_hat = out.sigma_hat[0].cpu().numpy() if out.sigma_hat is not None else None
        weights = out.weights[0].cpu().numpy() if out.weights is not None else None
        t = out.trace
        if t is None:
            return RunView(
                rel=np.zeros(0), abs=np.zeros(0), block_rel=np.zeros((0, 0)), probabilities=final[None],
                gates=np.zeros((0, m)), gate_share=np.zeros((0, m)), nstep=0, converged=True, reason="no solver",
                best_step=0, prediction=int(final.argmax()), final_probabilities=final, z_star=np.zeros(0),
                block_slices=[], sigma_hat=sigma_hat, weights=weights, pe=pe, energy=energy, wall_ms=wall_ms,
            )
        k = int(t.nstep[0])
        sizes = self.model.fusion.layout.sizes
        edges = np.cumsum((0, *sizes))
        return RunView(
            rel=np.asarray(t.rel[0, :k], dtype=np.float64), abs=np.asarray(t.abs[0, :k], dtype=np.float64),
            block_rel=np.asarray(t.block_rel[0, :k], dtype=np.float64) if t.block_rel is not None else np.zeros((k, 0)),
            probabilities=np.asarray(t.extras["probabilities"][0, :k]), gates=np.asarray(t.extras["gates"][0, :k]),
            gate_share=np.asarray(t.extras["gate_share"][0, :k]), nstep=k, converged=bool(t.converged[0]),
            reason=str(t.reason[0]), best_step=int(t.best_step[0]), prediction=int(final.argmax()),
            final_probabilities=final, z_star=out.z_star[0].cpu().numpy().astype(np.float64),
            block_slices=[(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])], sigma_hat=sigma_hat,
            weights=weights, pe=pe, energy=energy, wall_ms=wall_ms,
        )

    def _run_with_fallback(self, inputs, choice: SolverChoice) -> RunView:
        torch = self._torch
        try:
            return self._run(inputs, choice)
        except torch.cuda.OutOfMemoryError:
            self.set_device("cpu")
            self.notice = "the GPU ran out of memory; running on the CPU"
            return self._run(inputs, choice)

    def solve(self, request: SolveRequest) -> SolveResult:
        # One sample's small ops: a second intra-op thread only adds hand-off jitter (p95 73 ms vs 14 ms).
        # The setting is process-wide, so it is restored for sweeps, analyses and whatever runs next.
        threads = self._torch.get_num_threads()
        self._torch.set_num_threads(1)
        try:
            return self._solve(request)
        finally:
            self._torch.set_num_threads(threads)

    def _solve(self, request: SolveRequest) -> SolveResult:
        t0 = time.perf_counter()
        wanted = request.solver.device
        if wanted != self.device and not (wanted.startswith("cuda") and self.notice):
            self.set_device(wanted)
        elif wanted == self.device == "cpu":
            self.notice = ""  # the CPU is what was asked for: a notice about the GPU no longer applies
        corruptions = dict(request.corruptions)
        key = (request.sample, request.solver, self.device)
        clean = self._clean_cache.get(key)
        if clean is None:
            clean = self._run_with_fallback(self.raw_inputs(request.sample), request.solver)
            if len(self._clean_cache) > 256:
                self._clean_cache.clear()
            self._clean_cache[key] = clean
        if any(c.active for c in corruptions.values()):
            corrupted_inputs = self.corrupted_inputs(request.sample, corruptions)
            corrupted = self._run_with_fallback(corrupted_inputs, request.solver)
        else:
            corrupted_inputs = self.raw_inputs(request.sample)
            corrupted = clean
        shift = np.array([
            np.linalg.norm(corrupted.z_star[a:b] - clean.z_star[a:b]) if len(clean.z_star) else np.nan
            for a, b in clean.block_slices
        ])
        images = {}
        for spec, before, after in zip(self.config.modalities, self.raw_inputs(request.sample), corrupted_inputs):
            if spec.kind == "image":
                images[spec.name] = (before.reshape(spec.image_shape), np.asarray(after).reshape(spec.image_shape))
        return SolveResult(
            request=request, label=int(self.dataset.labels[request.sample]), clean=clean, corrupted=corrupted,
            shift=shift, images=images,
            severities={n: (corruptions[n].severity if n in corruptions else 0.0) for n in self.config.modality_names},
            device=self.device, seconds=time.perf_counter() - t0, notice=self.notice, fusion=self.config.fusion,
            modality_names=self.config.modality_names,
            block_names=self.config.modality_names + ("fused",) if self.config.is_deq else (),
            class_names=self.dataset.class_names, dependency=self._dependency,
            corruption_labels={n: f"{c.kind} {c.severity:g} ({corruption_parameter_label(c.kind, c.severity)})"
                               for n, c in corruptions.items() if c.active},
        )

    def browse(self, split: str = "test", choice: SolverChoice | None = None, batch: int = 200) -> BrowseTable:
        """Label, prediction, steps and final residual for every sample of a split (clean)."""
        torch = self._torch
        torch.set_num_threads(self._batch_threads)
        choice = choice or SolverChoice(device=self.device)
        idx = self.dataset.split(split)
        preds, steps, rels, conv = [], [], [], []
        for start in range(0, len(idx), batch):
            rows = idx[start : start + batch]
            x = [torch.from_numpy(self.dataset.modalities[n].data[rows]).to(self.device) for n in self.config.modality_names]
            with torch.no_grad():
                out = self.model(x, settings=self._settings(choice) if self.config.is_deq else None)
            preds.append(out.logits.argmax(1).cpu().numpy())
            if out.trace is not None:
                steps.append(out.trace.nstep)
                rels.append(out.trace.final_rel)
                conv.append(out.trace.converged)
            else:
                steps.append(np.zeros(len(rows), int))
                rels.append(np.full(len(rows), np.nan))
                conv.append(np.ones(len(rows), bool))
        labels = self.dataset.labels[idx]
        predictions = np.concatenate(preds)
        return BrowseTable(indices=idx, labels=labels, predictions=predictions, correct=predictions == labels,
                           steps=np.concatenate(steps), final_rel=np.concatenate(rels), converged=np.concatenate(conv))


def corruption_parameter_label(kind: str, severity: float) -> str:
    from ..core.corruptions import parameter_for

    spec = CORRUPTIONS[kind]
    return f"{spec.parameter} {parameter_for(kind, severity):.3g}"
