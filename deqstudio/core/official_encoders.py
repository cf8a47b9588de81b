"""The encoders of the DEQ fusion paper's official experiments, written from their published structure.

Imported checkpoints (``deqstudio import deqfusion``) carry these encoders' weights, so a dataset of raw inputs
(omics profiles, image and text features) can be fed and corrupted as in the paper:

- ``MMDynamicEncoder`` (the BRCA experiment, MM-Dynamics code): a per-feature information gate
  ``x ⊙ sigmoid(W_g x + b_g)``, then ``h = ReLU(W_e · + b_e)``; the view's true-class-probability confidence
  ``c = W_c h + b_c`` scales what the fusion receives (``h · c``) and its classifier gives unimodal logits
  ``W_k h + b_k``.
- ``MaxOutEncoder`` (the MM-IMDB experiment, MultiBench code): BatchNorm (eps 1e-4) → maxout (pool 2) →
  BatchNorm → dropout → maxout (pool 2) → BatchNorm → dropout. Maxout unit j is the larger of the linear
  layer's outputs 2j and 2j + 1.

Both run in eval mode in the studio (batch statistics and dropout are training-time only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

POOL = 2  # the maxout pool size of the MM-IMDB encoders
DROPOUT = 0.3


class MMDynamicEncoder(nn.Module):
    """One omics view: information gate, encoder, confidence and unimodal classifier."""

    def __init__(self, input_dim: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.info = nn.Linear(input_dim, input_dim)
        self.encoder = nn.Linear(input_dim, hidden)
        self.confidence = nn.Linear(hidden, 1)
        self.classifier = nn.Linear(hidden, num_classes)

    def with_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the feature the fusion receives, (B, hidden); the view's unimodal logits, (B, C))."""
        h = F.relu(self.encoder(x * torch.sigmoid(self.info(x))))
        return h * self.confidence(h), self.classifier(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.with_logits(x)[0]


def maxout(y: torch.Tensor, units: int, pool: int = POOL) -> torch.Tensor:
    """The largest of each run of ``pool`` consecutive values: (B, units·pool) -> (B, units)."""
    return y.view(y.shape[0], units, pool).max(dim=2).values


class MaxOutEncoder(nn.Module):
    """One MM-IMDB modality: (B, input_dim) -> (B, out)."""

    def __init__(self, input_dim: int, first_hidden: int, out: int) -> None:
        super().__init__()
        self.first_hidden, self.out = first_hidden, out
        self.norm0 = nn.BatchNorm1d(input_dim, eps=1e-4)
        self.lin1 = nn.Linear(input_dim, first_hidden * POOL)
        self.norm1 = nn.BatchNorm1d(first_hidden)
        self.lin2 = nn.Linear(first_hidden, out * POOL)
        self.norm2 = nn.BatchNorm1d(out)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.norm1(maxout(self.lin1(self.norm0(x)), self.first_hidden)))
        return self.dropout(self.norm2(maxout(self.lin2(h), self.out)))
