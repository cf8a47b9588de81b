"""Train a model on a dataset file and save it as a checkpoint with its metrics and provenance."""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch

from ..core import device as core_device
from ..core import udml
from ..core.config import DEQ_FUSIONS, FUSIONS, ModalitySpec, ModelConfig
from ..core.model import FusionModel
from ..core.training import UDML_WEIGHTINGS, EpochRecord, TrainOptions, dependency_scores, fit
from ..errors import DatasetError
from ..io.checkpoint import save_checkpoint
from ..io.dataset import Dataset


@dataclass
class TrainRequest:
    modalities: tuple[str, ...] | None = None  # None: every modality of the dataset
    fusion: str = "deq-udml"
    epochs: int = 40
    seed: int = 0
    hidden: int = 64
    device: str = "auto"
    ablation: str = "full"
    jac_weight: float = 1.0
    batch_size: int = 64
    lr: float = 1e-3
    patience: int = 15
    threads: int | None = None  # torch's intra-op threads for the run; None: the current count
    # the ablations that separate UDML's effects (TrainOptions): UDML's noise injection for another fusion;
    # deq-udml with w ≡ 1 ("fixed"); deq-udml without the noise-level loss
    noise_augment: bool = False
    udml_weights: str = "udml"
    noise_loss: bool = True
    config_overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.threads is not None and (
                isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}; choose one of {', '.join(FUSIONS)}")
        if self.udml_weights not in UDML_WEIGHTINGS:
            raise ValueError(f"unknown UDML weighting {self.udml_weights!r}; choose one of {', '.join(UDML_WEIGHTINGS)}")
        if self.noise_augment and self.fusion == "deq-udml":
            raise ValueError("--noise-augment is for fusions other than deq-udml, which injects noise by its own schedule")
        if self.fusion != "deq-udml" and self.udml_weights != "udml":
            raise ValueError(f"--udml-weights {self.udml_weights} applies to deq-udml only, not {self.fusion}")
        if self.fusion != "deq-udml" and not self.noise_loss:
            raise ValueError(f"--no-noise-loss applies to deq-udml only, not {self.fusion}: only it predicts noise")
        if self.noise_augment:
            udml.check_epochs(self.epochs, what="--noise-augment")

    def options(self, device: str) -> TrainOptions:
        """The training options of this request on ``device``."""
        extra = {} if self.noise_loss else {"noise_loss_weight": 0.0}
        return TrainOptions(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                            seed=self.seed, device=device, noise_augment=self.noise_augment,
                            udml_weights=self.udml_weights, **extra)


def resolve_device(device: str) -> str:
    """Where training runs: ``auto`` is CUDA when present; CUDA asked for and absent is an error."""
    return core_device.resolve_device(device, strict=True).device


def check_trainable(ds: Dataset) -> None:
    """Refuse what DEQ Studio does not train: multilabel datasets."""
    if ds.task == "multilabel":
        raise DatasetError(f"dataset {ds.name!r} is multilabel; DEQ Studio trains multiclass models only (a "
                           "multilabel model trained elsewhere opens through `deqstudio import deqfusion`)")


def build_config(ds: Dataset, req: TrainRequest) -> ModelConfig:
    check_trainable(ds)
    names = tuple(req.modalities) if req.modalities else ds.modality_names
    missing = [n for n in names if n not in ds.modalities]
    if missing:
        raise DatasetError(f"dataset {ds.name!r} has no modality {missing[0]!r}; it has {', '.join(ds.modality_names)}")
    if req.fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {req.fusion!r}; choose one of {', '.join(FUSIONS)}")
    specs = tuple(
        ModalitySpec(n, ds.modalities[n].dim, ds.modalities[n].kind, ds.modalities[n].image_shape) for n in names
    )
    return ModelConfig(
        modalities=specs, num_classes=ds.num_classes, fusion=req.fusion, hidden=req.hidden, ablation=req.ablation,
        jac_weight=req.jac_weight if req.fusion in DEQ_FUSIONS else 0.0, class_names=ds.class_names,
        **req.config_overrides,
    )


def split_tensors(ds: Dataset, names, split: str):
    idx = ds.split(split)
    return [torch.from_numpy(a) for a in ds.arrays(names, idx)], torch.from_numpy(ds.labels[idx])


def evaluate(model: FusionModel, ds: Dataset, split: str = "test") -> dict:
    """Accuracy, NLL, and for DEQ fusions the solver's steps and residuals over a split (the one evaluation path)."""
    from ..core.native import NativeAdapter
    from ..diagnostics.evaluation import Evaluator

    out = Evaluator(NativeAdapter(model), ds).run(ds.split(split))
    y = torch.from_numpy(out.labels)
    logits = torch.from_numpy(out.run.logits).double()
    metrics = {
        f"{split}_accuracy": out.accuracy,
        f"{split}_nll": float(torch.nn.functional.cross_entropy(logits, y)),
        f"{split}_samples": len(y),
    }
    if out.run.trace is not None:
        metrics[f"{split}_mean_steps"] = float(out.steps.mean())
        metrics[f"{split}_median_rel_residual"] = float(np.median(out.final_rel))
        metrics[f"{split}_converged_fraction"] = float(out.converged.mean())
    return metrics


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; ``platform.processor()`` or the machine type elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@contextlib.contextmanager
def reproducible(threads: int, device: str):
    """Run with ``threads`` intra-op threads, deterministic algorithms and a forked global RNG; restore all after.

    Yields the settings, as recorded in a checkpoint's ``training`` info. On CPU every op must be
    deterministic (an op without a deterministic implementation raises); on CUDA, where some ops have none,
    they warn instead (``warn_only``).
    """
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    warn_only = device != "cpu"
    devices = [torch.cuda.current_device()] if device == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True, warn_only=warn_only)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            yield {"use_deterministic_algorithms": True, "warn_only": warn_only, "cudnn_deterministic": True,
                   "cudnn_benchmark": False}
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[3], saved[4]


def train_model(ds: Dataset, req: TrainRequest, progress: Callable[[EpochRecord], None] | None = None):
    """Train; returns (model, metrics, dependency, training info).

    The run uses ``req.threads`` threads (default: torch's current count) and deterministic algorithms;
    the global torch state it changes (threads, deterministic settings, RNG) is restored afterwards.
    """
    device = resolve_device(req.device)
    config = build_config(ds, req)
    opts = req.options(device)
    opts.check_model(config)
    threads = req.threads if req.threads is not None else torch.get_num_threads()
    with reproducible(threads, device) as settings:
        torch.manual_seed(req.seed)
        model = FusionModel(config)
        names = config.modality_names
        tx, ty = split_tensors(ds, names, "train")
        vx, vy = split_tensors(ds, names, "val")
        result = fit(model, tx, ty, vx, vy, opts, progress=progress)
        dependency = dependency_scores(model, [t.to(device) for t in tx], ty.to(device))
        if config.is_udml:  # the same α the model was left with by fit (same definition, same weights)
            model.dependency.copy_(torch.tensor([dependency["logit_magnitude"][n] for n in names]))
        metrics = {"best_epoch": result.best_epoch, "val_accuracy": result.best_val_accuracy,
                   "epochs_run": len(result.history), "train_seconds": result.seconds}
        metrics.update(evaluate(model, ds, "test"))
    request = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(req).items()}
    request["threads"] = threads
    info = {
        "request": request,
        "device": device,
        "threads": threads,
        "cpu": cpu_name(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "deterministic": settings,
        "options": {"noise_augment": opts.noise_augment, "udml_weights": opts.udml_weights,
                    "noise_loss_weight": opts.noise_loss_weight, "kl_weight": opts.kl_weight,
                    "aux_weight": opts.aux_weight},
        "history": [asdict(r) for r in result.history],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return model.cpu(), metrics, dependency, info


def train_and_save(ds: Dataset, req: TrainRequest, out: str | Path, progress=None, command: str = "") -> dict:
    model, metrics, dependency, info = train_model(ds, req, progress)
    if command:
        info["command"] = command
    save_checkpoint(out, model, metrics=metrics, dataset=ds.identity(), dependency=dependency, training=info)
    return metrics
