"""Static fusion baselines over (B, d) modality features: concat, sum, weighted sum.

The late-fusion baseline (average of unimodal heads) lives in the model, since it fuses logits.
"""

from __future__ import annotations

import torch
from torch import nn


class ConcatFusion(nn.Module):
    def __init__(self, num_modalities: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(num_modalities * dim, dim), nn.ReLU())

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.proj(torch.cat(features, dim=1))


class SumFusion(nn.Module):
    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(features).sum(dim=0)


class WeightedSumFusion(nn.Module):
    """Σ w_i x_i + c with learned scalars (w_i = 1, c = 0 at the start), the paper's baseline row."""

    def __init__(self, num_modalities: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.ones(num_modalities))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return torch.einsum("nbd,n->bd", torch.stack(features), self.weights) + self.bias
