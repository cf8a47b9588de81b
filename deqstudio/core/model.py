"""The model wrapper: normalisation → per-modality encoders → fusion → linear head."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import udml
from .config import ModelConfig
from .encoders import build_encoder, build_trunk
from .fusion.baselines import ConcatFusion, SumFusion, WeightedSumFusion
from .fusion.deq_fusion import DEQFusion
from .solvers import SolverSettings, SolverTrace

# How deq-udml weights its modalities: 1/α (clean and dependency phases) or 1/(s·α) (uncertainty phase).
# WEIGHTING_UNIFORM (w = 1 for every modality): a model trained with fixed weights (the `--udml-weights
# fixed` ablation) holds it in every phase and keeps it at inference; checkpoints from before the clean
# phase weighted by 1/α hold it too, and run as saved.
WEIGHTING_UNIFORM, WEIGHTING_DEPENDENCY, WEIGHTING_UNCERTAINTY = 0, 1, 2


@dataclass
class FusionOutput:
    """What one forward pass produced; tensors are (B, ...) unless noted."""

    logits: torch.Tensor
    features: list[torch.Tensor]
    unimodal_logits: list[torch.Tensor] | None = None
    mu: list[torch.Tensor] | None = None
    logvar: list[torch.Tensor] | None = None
    sigma_hat: torch.Tensor | None = None  # (B, M)
    weights: torch.Tensor | None = None  # (B, M)
    trace: SolverTrace | None = None
    z_star: torch.Tensor | None = None
    injection: torch.Tensor | None = None
    jac_loss: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)


class FusionModel(nn.Module):
    """A multimodal classifier described fully by its ``ModelConfig``.

    Inputs are raw features, one (B, input_dim) tensor per modality in config order (images
    flattened row-major); the model standardises them with its stored normalisation statistics (unless
    ``config.normalise_inputs`` is False, as for imported models). An imported model's encoders
    (``config.encoder``) feed the fusion directly; the BRCA experiment's also give unimodal logits.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        n = len(c.modalities)
        for i, spec in enumerate(c.modalities):
            self.register_buffer(f"input_mean_{i}", torch.zeros(spec.input_dim))
            self.register_buffer(f"input_std_{i}", torch.ones(spec.input_dim))
        imported = c.encoder != "native"
        if imported:
            self.trunks = nn.ModuleList(build_encoder(spec, c) for spec in c.modalities)
        else:
            self.trunks = nn.ModuleList(build_trunk(spec, c.encoder_hidden, c.dropout) for spec in c.modalities)
        if imported:
            self.projections = nn.ModuleList(nn.Identity() for _ in range(n))
        elif c.is_udml:
            self.projections = nn.ModuleList(udml.ProbabilisticHead(c.encoder_hidden, c.hidden) for _ in range(n))
            self.noise_predictors = nn.ModuleList(udml.NoisePredictor(c.hidden) for _ in range(n))
            self.register_buffer("dependency", torch.ones(n))
            self.register_buffer("weighting", torch.tensor(WEIGHTING_UNCERTAINTY))
        else:
            self.projections = nn.ModuleList(nn.Linear(c.encoder_hidden, c.hidden) for _ in range(n))
        if c.is_deq:
            self.fusion = DEQFusion(
                c.modality_names, c.hidden, ablation=c.ablation, settings=c.solver_settings,
                backward=c.backward_settings, unrolled_steps=c.unrolled_steps, jac_weight=c.jac_weight, jac_vectors=c.jac_vectors,
                relu_after_norm=c.relu_after_norm,
            )
        elif c.fusion == "concat":
            self.fusion = ConcatFusion(n, c.hidden)
        elif c.fusion == "sum":
            self.fusion = SumFusion()
        elif c.fusion == "weighted-sum":
            self.fusion = WeightedSumFusion(n)
        else:
            self.fusion = None
        self.head = nn.Linear(c.hidden, c.num_classes)
        if c.fusion in ("late", "deq-udml"):
            self.unimodal_heads = nn.ModuleList(nn.Linear(c.hidden, c.num_classes) for _ in range(n))
        else:
            self.unimodal_heads = None

    @property
    def modality_names(self) -> tuple[str, ...]:
        return self.config.modality_names

    @property
    def has_unimodal(self) -> bool:
        """Whether the model gives per-modality logits (unimodal heads, or an imported encoder's classifier)."""
        return self.unimodal_heads is not None or self.config.encoder == "mmdynamic"

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over classes, or a sigmoid per label for a multilabel model."""
        return torch.sigmoid(logits) if self.config.task == "multilabel" else F.softmax(logits, dim=1)

    def set_normalisation(self, means: Sequence[torch.Tensor], stds: Sequence[torch.Tensor]) -> None:
        """Store per-feature standardisation statistics (stds below 1e-6 count as 1)."""
        for i, (mean, std) in enumerate(zip(means, stds)):
            std = torch.as_tensor(std, dtype=torch.float32)
            getattr(self, f"input_mean_{i}").copy_(torch.as_tensor(mean, dtype=torch.float32))
            getattr(self, f"input_std_{i}").copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def normalisation(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = len(self.config.modalities)
        return [getattr(self, f"input_mean_{i}") for i in range(n)], [getattr(self, f"input_std_{i}") for i in range(n)]

    def encode(self, inputs: Sequence[torch.Tensor], zero: Sequence[int] = ()):
        """Features (B, hidden) per modality, with (μ, log σ²) for deq-udml; ``zero`` zeroes features."""
        features, mus, logvars, _ = self.encode_with_unimodal(inputs, zero)
        return features, mus, logvars

    def encode_with_unimodal(self, inputs: Sequence[torch.Tensor], zero: Sequence[int] = (), given: Sequence | None = None):
        """``encode``'s values and the encoders' own unimodal logits (a list, or None when they give none).

        ``given``: per modality an ``encode_modality`` result to use as it is (None: encode that input), so a
        caller that changes one modality's input re-encodes that modality only."""
        if len(inputs) != len(self.config.modalities):
            raise ValueError(f"expected {len(self.config.modalities)} modality inputs, got {len(inputs)}")
        features, mus, logvars, own_logits = [], [], [], []
        for i, x in enumerate(inputs):
            known = given[i] if given is not None else None
            feat, mu, logvar, logits = known if known is not None else self.encode_modality(i, x)
            if logits is not None:
                own_logits.append(logits)
            if mu is not None:
                mus.append(mu)
                logvars.append(logvar)
            features.append(torch.zeros_like(feat) if i in zero else feat)
        return features, (mus or None), (logvars or None), (own_logits or None)

    def encode_modality(self, i: int, x: torch.Tensor):
        """Modality ``i``'s raw input (B, size) encoded: (features, μ, log σ², own logits); μ and log σ² are None
        without UDML, the logits None unless the encoder gives its own."""
        spec = self.config.modalities[i]
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != spec.input_dim:
            raise ValueError(f"modality {spec.name!r}: expected {spec.input_dim} features, got {x.shape[1]}")
        if self.config.normalise_inputs:
            x = (x - getattr(self, f"input_mean_{i}")) / getattr(self, f"input_std_{i}")
        logits = None
        if self.config.encoder == "mmdynamic":
            h, logits = self.trunks[i].with_logits(x)
        else:
            h = self.trunks[i](x)
        if self.config.is_udml:
            mu, logvar = self.projections[i](h)
            return udml.reparameterize(mu, logvar, self.training), mu, logvar, logits
        return self.projections[i](h), None, None, logits

    def predict_noise(self, logvars: list[torch.Tensor], detach: bool = True) -> torch.Tensor:
        """σ̂ (B, M): each modality's noise predictor on its representation's log σ²."""
        return torch.stack([p(lv, detach) for p, lv in zip(self.noise_predictors, logvars)], dim=1)

    def udml_weights(self, logvars: list[torch.Tensor], detach: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(σ̂ (B, M), w (B, M)) under the current weighting phase.

        Training stops gradients from w into σ̂ (``detach``); the equilibrium analyses differentiate the whole
        prediction with respect to the input, through w too (``detach=False``: the same values)."""
        sigma_hat = self.predict_noise(logvars, detach)
        batch, n = sigma_hat.shape
        mode = int(self.weighting)
        if mode == WEIGHTING_UNIFORM:
            weights = sigma_hat.new_ones(batch, n)
        elif mode == WEIGHTING_DEPENDENCY:
            weights = udml.udml_weights(self.dependency, None).expand(batch, n)
        else:
            score = udml.uncertainty_score(sigma_hat.detach() if detach else sigma_hat)
            weights = udml.udml_weights(self.dependency.expand(batch, n), score)
        return sigma_hat, weights

    def forward(
        self,
        inputs: Sequence[torch.Tensor],
        *,
        settings: SolverSettings | None = None,
        record_states: bool = False,
        playback: bool = False,
        zero: Sequence[int] = (),
        weighted: bool = True,
        given: Sequence | None = None,
    ) -> FusionOutput:
        """Classify a batch. ``playback`` records per-step probabilities and gates in the trace.

        ``weighted=False`` switches the deq-udml residual weighting off: the features enter the fusion
        as encoded (σ̂ is still predicted; ``weights`` is None). The dependency α is computed this way.
        ``given``: modalities already encoded (see ``encode_with_unimodal``).
        """
        features, mus, logvars, own_logits = self.encode_with_unimodal(inputs, zero, given)
        sigma_hat = weights = None
        if self.config.is_udml:
            if weighted:
                sigma_hat, weights = self.udml_weights(logvars)
                features = udml.apply_residual_weights(features, weights)
            else:
                sigma_hat = self.predict_noise(logvars)
        unimodal = [h(f) for h, f in zip(self.unimodal_heads, features)] if self.unimodal_heads is not None else own_logits
        out = FusionOutput(
            logits=None, features=features, unimodal_logits=unimodal, mu=mus, logvar=logvars,
            sigma_hat=sigma_hat, weights=weights,
        )
        if self.config.is_deq:
            result = self.fusion(
                features, settings=settings, record_states=record_states,
                extras=self.playback_extras if playback else None,
            )
            out.logits = self.head(result.z_fuse)
            out.trace, out.z_star, out.injection, out.jac_loss = result.trace, result.z_star, result.injection, result.jac_loss
        elif self.config.fusion == "late":
            out.logits = torch.stack(unimodal).mean(dim=0)
        else:
            out.logits = self.head(self.fusion(features))
        return out

    def playback_extras(self, states: torch.Tensor, injection: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-step values shown in playback, from (n, D) states and their injections.

        Each state is a step's iterate z_k (the trace's meaning of a step), so step k's values
        describe the same state as its residual, and the best step's values those of the returned
        state (the model's output). ``probabilities``: the head applied to z_k's fused block.
        ``gates``: the mean of each modality's gate vector a_i at z_k. ``gate_share``:
        ‖a_i ⊙ z_fuse‖ normalised over modalities, the share of the fused update each modality's
        gate admits (NaN where z_fuse = 0, as at the zero start: nothing is admitted to share).
        Non-finite states give NaN.
        """
        block = self.fusion.block
        finite = torch.isfinite(states).all(dim=1)
        safe = torch.where(finite[:, None], states, torch.zeros_like(states))
        z_fuse = block.fused(safe)
        gates = block.gates(safe, injection)
        contribution = (gates * z_fuse.unsqueeze(1)).norm(dim=2)
        total = contribution.sum(dim=1, keepdim=True)
        nan = torch.tensor(float("nan"), dtype=states.dtype, device=states.device)
        # with z_fuse = 0 (the zero start) no gate admits anything: the share is undefined, not 0
        share = torch.where(total > 0, contribution / total.clamp_min(torch.finfo(states.dtype).tiny), nan)
        probabilities = self.probabilities(self.head(z_fuse))
        return {
            "probabilities": torch.where(finite[:, None], probabilities, nan),
            "gates": torch.where(finite[:, None], gates.mean(dim=2), nan),
            "gate_share": torch.where(finite[:, None], share, nan),
        }
