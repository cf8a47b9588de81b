"""UDML components (DESIGN.md §3.3): probabilistic heads, noise-level predictor, dependency, weights.

Written from the method's description and the released code's intent, without its known faults:
noise is drawn from a caller's generator (no fixed seed), applied in float (no uint8 wrap-around),
and the dependency α is computed over a whole split by the caller and stored, not taken from the
last training batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

KL_WEIGHT = 1e-5
NOISE_LOSS_WEIGHT = 0.1
AUX_LOSS_WEIGHT = 4.0

NOISE_LEVELS = tuple(range(1, 12))  # τ = 1 is clean
NOISE_STD_PER_LEVEL = 0.2  # Gaussian std, in units of the feature's training std, per level above 1

DEPENDENCY_DEFINITIONS = {
    "logit_magnitude": "alpha_m = sum over classes of the mean |logit| of the single-modality pass "
    "(every other modality's features zeroed), in eval mode, with the UDML residual weighting switched off "
    "(the features as encoded, not (1 + w)x), over the training split (the released code's definition); "
    "the same computation sets the weights during training and is stored after it",
    "loss_increase": "alpha_m = mean cross-entropy with modality m's features zeroed minus the mean "
    "cross-entropy with all modalities, over the training split, with the model's own weighting active "
    "(the model as it is used) (the paper summary's ablation form)",
}

PHASES = ("clean", "dependency", "uncertainty")
MIN_EPOCHS = 3  # one epoch for each phase of the progressive schedule


class ProbabilisticHead(nn.Module):
    """Maps a trunk's features to (μ, log σ²) of the modality's representation."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.mu = nn.Linear(in_features, out_features)
        self.logvar = nn.Linear(in_features, out_features)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu(h), self.logvar(h).clamp(-12.0, 12.0)


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, training: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z = μ + ε·σ while training; μ at inference."""
    if not training:
        return mu
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)


class NoisePredictor(nn.Module):
    """Predicts a modality's noise level from its representation's σ (input detached).

    ``Linear(d, d/2) → Dropout(0.1) → Linear(d/2, 1)`` gives r; the prediction is σ̂ = exp(r/2).
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        half = max(hidden // 2, 1)
        self.net = nn.Sequential(nn.Linear(hidden, half), nn.Dropout(0.1), nn.Linear(half, 1))

    def forward(self, logvar: torch.Tensor, detach: bool = True) -> torch.Tensor:
        """σ̂; ``detach=False`` lets gradients reach the representation (the analyses' input derivatives)."""
        sigma = torch.exp(0.5 * (logvar.detach() if detach else logvar))
        r = self.net(sigma).squeeze(-1)
        return torch.exp(0.5 * r.clamp(-20.0, 20.0))


def noise_loss(sigma_hat: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """MSE between predicted σ̂ and the injected level τ (the weight is applied by the caller)."""
    return F.mse_loss(sigma_hat, tau.to(sigma_hat.dtype))


def uncertainty_score(sigma_hat: torch.Tensor) -> torch.Tensor:
    """s_m = σ̂_m²."""
    return sigma_hat * sigma_hat


def udml_weights(alpha: torch.Tensor, score: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    """w_m = M·u_m / Σ_k u_k with u_m = 1/(s_m·α_m), or u_m = 1/α_m when no score is given.

    ``alpha`` and ``score`` broadcast over a leading batch dimension; the last dimension is the
    modality axis, over which the weights sum to M.
    """
    alpha = torch.as_tensor(alpha, dtype=torch.float32) if not torch.is_tensor(alpha) else alpha
    denom = alpha.clamp_min(eps)
    if score is not None:
        denom = denom * score.clamp_min(eps)
    u = 1.0 / denom
    m = u.shape[-1]
    return m * u / u.sum(dim=-1, keepdim=True)


def apply_residual_weights(features: Sequence[torch.Tensor], weights: torch.Tensor) -> list[torch.Tensor]:
    """x_m ← (1 + w_m)·x_m; ``weights`` is (B, M) or (M,)."""
    if weights.dim() == 1:
        weights = weights.unsqueeze(0)
    return [x * (1.0 + weights[:, m : m + 1]) for m, x in enumerate(features)]


def kl_to_noise_prior(mu: torch.Tensor, logvar: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, τ)) per sample, summed over features; ``tau`` is (B,)."""
    prior = tau.to(mu.dtype).clamp_min(1e-6).unsqueeze(-1)
    var = torch.exp(logvar)
    return 0.5 * (var / prior + mu * mu / prior - 1.0 - logvar + torch.log(prior)).sum(dim=-1)


def noise_std_for_level(tau: torch.Tensor | int) -> torch.Tensor:
    """Gaussian noise std (in feature-std units) for level τ: 0 at τ = 1, growing linearly."""
    return (torch.as_tensor(tau, dtype=torch.float32) - 1.0) * NOISE_STD_PER_LEVEL


def sample_noise_levels(
    batch: int, modalities: int, generator: torch.Generator | None = None, clean_fraction: float = 0.5
) -> torch.Tensor:
    """Levels τ (batch, modalities), per sample and per modality.

    A ``clean_fraction`` of the samples is kept clean in every modality (τ = 1 throughout): exactly
    ⌊f·B⌋ of them, plus one more with probability f·B − ⌊f·B⌋, so the expected clean count is f·B for
    any batch size. Every other sample draws each modality's level independently and uniformly on
    1..11, as the released code does (so one modality of a noisy sample may still be clean).
    """
    if not 0.0 <= clean_fraction <= 1.0:
        raise ValueError(f"clean_fraction must be from 0 to 1, got {clean_fraction!r}")
    levels = torch.randint(NOISE_LEVELS[0], NOISE_LEVELS[-1] + 1, (batch, modalities), generator=generator)
    expected = clean_fraction * batch
    n_clean = int(math.floor(expected))
    if n_clean < batch and float(torch.rand((), generator=generator)) < expected - n_clean:
        n_clean += 1
    clean = torch.randperm(batch, generator=generator)[:n_clean]
    levels[clean] = NOISE_LEVELS[0]
    return levels


def inject_noise(
    x: torch.Tensor, tau: torch.Tensor, feature_std: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Raw input plus Gaussian noise of std noise_std_for_level(τ)·feature_std, per sample."""
    flat = x.reshape(x.shape[0], -1)
    eps = torch.randn(flat.shape, generator=generator, dtype=flat.dtype).to(flat.device)
    scale = noise_std_for_level(tau).to(flat.device, flat.dtype).unsqueeze(-1)
    return (flat + eps * scale * feature_std.reshape(1, -1)).reshape(x.shape)


def auxiliary_unimodal_loss(unimodal_logits: Sequence[torch.Tensor], target: torch.Tensor, gamma: float = AUX_LOSS_WEIGHT) -> torch.Tensor:
    """γ · Σ_m CE(ℓ_m, y)."""
    return gamma * sum(F.cross_entropy(logits, target) for logits in unimodal_logits)


def check_epochs(total_epochs: int, what: str = "deq-udml") -> None:
    """Refuse a schedule too short to hold all three phases (ValueError naming ``what`` and the minimum)."""
    if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < MIN_EPOCHS:
        whose = "its" if what == "deq-udml" else "the UDML schedule's"
        raise ValueError(
            f"{what} needs at least {MIN_EPOCHS} epochs (one each for {whose} clean, dependency and uncertainty "
            f"phases), got {total_epochs!r}")


def phase_lengths(total_epochs: int) -> tuple[int, int, int]:
    """Epochs in the (clean, dependency, uncertainty) phases: ⌊N/2⌋, max(⌊N/10⌋, 1), the rest.

    Every length from ``MIN_EPOCHS`` on gives each phase at least one epoch; shorter ones are refused.
    """
    check_epochs(total_epochs)
    clean = total_epochs // 2
    dependency = max(total_epochs // 10, 1)
    return clean, dependency, total_epochs - clean - dependency


def udml_phase(epoch: int, total_epochs: int) -> str:
    """Progressive schedule: first half clean, next tenth dependency-only, the rest uncertainty × dependency.

    The clean phase injects no noise; both it and the dependency phase weight by u = 1/α, the uncertainty
    phase by u = 1/(s·α).
    """
    clean, dependency, _ = phase_lengths(total_epochs)
    if not 0 <= epoch < total_epochs:
        raise ValueError(f"epoch {epoch} is outside 0..{total_epochs - 1}")
    if epoch < clean:
        return "clean"
    if epoch < clean + dependency:
        return "dependency"
    return "uncertainty"


def pe_score(logvar: torch.Tensor) -> torch.Tensor:
    """Probabilistic-embedding baseline: the mean σ² of the representation, per sample."""
    return torch.exp(logvar).mean(dim=-1)


def energy_score(logits: torch.Tensor) -> torch.Tensor:
    """Energy baseline: E = −logsumexp(ℓ) of a single-modality pass, per sample (higher = less sure)."""
    return -torch.logsumexp(logits, dim=-1)
