"""Training a fusion model on in-memory tensors: AdamW, early stopping, DEQ and UDML losses."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from . import udml
from .model import WEIGHTING_DEPENDENCY, WEIGHTING_UNCERTAINTY, WEIGHTING_UNIFORM, FusionModel

Tensors = Sequence[torch.Tensor]

# How a deq-udml model weights its modalities in training (and keeps at inference): "udml" — 1/α, then
# 1/(s·α), by the progressive schedule (DESIGN.md §3.3); "fixed" — w ≡ 1 for every modality in every epoch
# (the ablation that keeps UDML's noise injection and losses but not its weighting).
UDML_WEIGHTINGS = ("udml", "fixed")


@dataclass
class TrainOptions:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 10
    seed: int = 0
    device: str = "cpu"
    kl_weight: float = udml.KL_WEIGHT
    noise_loss_weight: float = udml.NOISE_LOSS_WEIGHT
    aux_weight: float = udml.AUX_LOSS_WEIGHT
    # Noise augmentation for a fusion other than deq-udml: UDML's noise injection (same epochs, same
    # per-sample and per-modality levels, same noise) without anything else of UDML; the saved epoch is
    # picked from the same epochs as deq-udml's (its last phase), so the model leaves trained with noise.
    noise_augment: bool = False
    udml_weights: str = "udml"  # deq-udml only: one of UDML_WEIGHTINGS

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.udml_weights not in UDML_WEIGHTINGS:
            raise ValueError(f"unknown UDML weighting {self.udml_weights!r}; choose one of {', '.join(UDML_WEIGHTINGS)}")
        for name in ("kl_weight", "noise_loss_weight", "aux_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    def check_model(self, config) -> None:
        """Refuse options that do not apply to the model (ValueError, one line)."""
        if self.noise_augment and config.is_udml:
            raise ValueError("noise augmentation is for fusions other than deq-udml, which injects noise by its own schedule")
        if self.udml_weights != "udml" and not config.is_udml:
            raise ValueError(f"UDML weighting {self.udml_weights!r} applies to deq-udml only, not {config.fusion}")
        if config.is_udml:
            udml.check_epochs(self.epochs)
        elif self.noise_augment:
            udml.check_epochs(self.epochs, what="noise augmentation")


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    train_accuracy: float
    val_accuracy: float
    phase: str  # the epoch's phase in the UDML schedule (deq-udml and noise-augmented runs), else "clean"
    seconds: float
    noise: bool = False  # whether noise was injected into training batches in this epoch


@dataclass
class TrainResult:
    best_epoch: int
    best_val_accuracy: float
    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0


def feature_stats(inputs: Tensors) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-feature mean and std of each modality (the training split's)."""
    return [x.mean(dim=0) for x in inputs], [x.std(dim=0) for x in inputs]


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def predict(model: FusionModel, inputs: Tensors, batch_size: int = 256) -> torch.Tensor:
    """Logits for a whole split, in eval mode, batched, through the one evaluation path (``core.evaluate``)."""
    from .evaluate import evaluate
    from .native import NativeAdapter

    run = evaluate(NativeAdapter(model), inputs, batch_size=batch_size)
    return torch.from_numpy(run.logits)


def accuracy(model: FusionModel, inputs: Tensors, labels: torch.Tensor) -> float:
    if labels.numel() == 0:
        return float("nan")
    return float((predict(model, inputs).argmax(dim=1) == labels.cpu()).float().mean())


@torch.no_grad()
def logit_magnitude(model: FusionModel, inputs: Tensors, batch_size: int = 256) -> torch.Tensor:
    """The dependency α (M,) by its one definition, ``udml.DEPENDENCY_DEFINITIONS["logit_magnitude"]``.

    For each modality m, the single-modality pass (every other modality's features zeroed), in eval
    mode, with the deq-udml residual weighting switched off (the features as encoded); α_m is the sum
    over classes of the mean |logit| over ``inputs``. Training sets its weights from this and stores it.
    """
    model.eval()
    n_mod = len(model.modality_names)
    n = inputs[0].shape[0]
    magnitude = torch.zeros(n_mod, dtype=torch.float64)
    for idx in _batches(n, batch_size, None):
        batch = [x[idx] for x in inputs]
        for m in range(n_mod):
            alone = model(batch, zero=[j for j in range(n_mod) if j != m], weighted=False).logits
            magnitude[m] += float(alone.abs().sum(dtype=torch.float64))
    return (magnitude / max(n, 1)).float()


@torch.no_grad()
def dependency_scores(model: FusionModel, inputs: Tensors, labels: torch.Tensor, batch_size: int = 256) -> dict:
    """α per modality over a whole split, by both definitions (``udml.DEPENDENCY_DEFINITIONS``), in eval mode."""
    names = model.modality_names
    magnitude = logit_magnitude(model, inputs, batch_size)
    model.eval()
    n_mod = len(names)
    n = labels.shape[0]
    loss_full = 0.0
    loss_drop = torch.zeros(n_mod, dtype=torch.float64)
    for idx in _batches(n, batch_size, None):
        batch = [x[idx] for x in inputs]
        y = labels[idx]
        loss_full += float(F.cross_entropy(model(batch).logits, y, reduction="sum"))
        for m in range(n_mod):
            dropped = model(batch, zero=[m]).logits
            loss_drop[m] += float(F.cross_entropy(dropped, y, reduction="sum"))
    increase = ((loss_drop - loss_full) / max(n, 1)).clamp_min(1e-6)
    return {
        "logit_magnitude": {name: float(v) for name, v in zip(names, magnitude)},
        "loss_increase": {name: float(v) for name, v in zip(names, increase)},
        "definitions": dict(udml.DEPENDENCY_DEFINITIONS),
    }


def _udml_losses(model: FusionModel, out, y: torch.Tensor, tau: torch.Tensor, opts: TrainOptions) -> torch.Tensor:
    loss = y.new_zeros((), dtype=torch.float32)
    for m, (mu, logvar) in enumerate(zip(out.mu, out.logvar)):
        loss = loss + opts.kl_weight * udml.kl_to_noise_prior(mu, logvar, tau[:, m].float()).mean()
        if opts.noise_loss_weight > 0:  # at 0 the noise predictor gets no training signal at all
            loss = loss + opts.noise_loss_weight * udml.noise_loss(out.sigma_hat[:, m], tau[:, m].float())
    return loss + udml.auxiliary_unimodal_loss(out.unimodal_logits, y, gamma=opts.aux_weight)


def fit(
    model: FusionModel,
    train_inputs: Tensors,
    train_labels: torch.Tensor,
    val_inputs: Tensors,
    val_labels: torch.Tensor,
    options: TrainOptions | None = None,
    progress: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train in place and leave the model at its best validation epoch (eval mode)."""
    opts = options or TrainOptions()
    opts.check_model(model.config)
    torch.manual_seed(opts.seed)
    generator = torch.Generator().manual_seed(opts.seed)
    device = torch.device(opts.device)
    model.to(device)
    train_inputs = [x.to(device) for x in train_inputs]
    val_inputs = [x.to(device) for x in val_inputs]
    train_labels, val_labels = train_labels.to(device), val_labels.to(device)
    means, stds = feature_stats(train_inputs)
    model.set_normalisation(means, stds)
    optimiser = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    cfg = model.config
    n = train_labels.shape[0]
    n_mod = len(cfg.modalities)
    scheduled = cfg.is_udml or opts.noise_augment  # epochs follow the UDML schedule's phases

    if cfg.is_udml:
        _set_dependency(model, train_inputs)  # α of the initial weights, for the first epoch's 1/α weighting

    best_state, best_acc, best_epoch, since_best = None, -1.0, -1, 0
    result = TrainResult(best_epoch=-1, best_val_accuracy=float("nan"))
    t_start = time.perf_counter()
    for epoch in range(opts.epochs):
        t0 = time.perf_counter()
        phase = udml.udml_phase(epoch, opts.epochs) if scheduled else "clean"
        noisy = scheduled and phase != "clean"
        if cfg.is_udml and opts.udml_weights == "fixed":
            model.weighting.fill_(WEIGHTING_UNIFORM)
        elif cfg.is_udml:
            model.weighting.fill_(WEIGHTING_UNCERTAINTY if phase == "uncertainty" else WEIGHTING_DEPENDENCY)
        model.train()
        total, correct, count = 0.0, 0, 0
        for idx in _batches(n, opts.batch_size, generator):
            batch = [x[idx] for x in train_inputs]
            y = train_labels[idx]
            tau = torch.ones(len(idx), n_mod, dtype=torch.long, device=device)
            if noisy:
                tau = udml.sample_noise_levels(len(idx), n_mod, generator).to(device)
                batch = [udml.inject_noise(batch[m], tau[:, m], stds[m], generator=generator) for m in range(n_mod)]
            out = model(batch)
            loss = F.cross_entropy(out.logits, y)
            if out.jac_loss is not None and cfg.jac_weight > 0:
                loss = loss + cfg.jac_weight * out.jac_loss
            if cfg.is_udml:
                loss = loss + _udml_losses(model, out, y, tau, opts)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            total += float(loss.detach()) * len(idx)
            correct += int((out.logits.argmax(1) == y).sum())
            count += len(idx)
        if cfg.is_udml:
            # α of the weights as they now are: the next epoch weights by it, and a snapshot taken below
            # holds the α of its own weights, so validation and the saved model use the same one
            _set_dependency(model, train_inputs)
        val_acc = accuracy(model, val_inputs, val_labels)
        record = EpochRecord(epoch, total / max(count, 1), correct / max(count, 1), val_acc, phase,
                             time.perf_counter() - t0, noisy)
        result.history.append(record)
        if progress:
            progress(record)
        # Early stopping only compares epochs of the final phase for deq-udml, whose weighting changes;
        # the first comparable epoch is always kept, so a model always leaves in its final weighting.
        # A noise-augmented run compares the same epochs: it leaves trained with noise, like deq-udml
        comparable = not scheduled or phase == "uncertainty"
        if comparable and (best_state is None or val_acc > best_acc):
            best_acc, best_epoch, since_best = val_acc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        elif comparable:
            since_best += 1
            if since_best >= opts.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.best_epoch, result.best_val_accuracy = best_epoch, best_acc
    result.seconds = time.perf_counter() - t_start
    return result


def _set_dependency(model: FusionModel, inputs: Tensors) -> None:
    """Store α (``logit_magnitude``, weighting off) over the training split in the model's buffer."""
    model.dependency.copy_(logit_magnitude(model, inputs).to(model.dependency.device))
