"""Per-modality encoders: an MLP for vector features, a small CNN for image modalities."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModalitySpec


class MLPTrunk(nn.Module):
    """Linear → ReLU → Dropout → Linear → ReLU."""

    def __init__(self, input_dim: int, width: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, width), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNNTrunk(nn.Module):
    """Two 3×3 conv layers with pooling on a one-channel image, then a linear layer."""

    def __init__(self, image_shape: tuple[int, int], width: int, dropout: float) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((3, 3)),
        )
        self.out = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(32 * 9, width), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.image_shape
        return self.out(self.conv(x.reshape(x.shape[0], 1, h, w)))


def build_trunk(spec: ModalitySpec, width: int, dropout: float) -> nn.Module:
    if spec.kind == "image":
        return CNNTrunk(spec.image_shape, width, dropout)
    return MLPTrunk(spec.input_dim, width, dropout)


def build_encoder(spec: ModalitySpec, config) -> nn.Module:
    """The encoder of an imported model (``config.encoder`` other than "native"): its output is the fusion's input."""
    from .official_encoders import MaxOutEncoder, MMDynamicEncoder

    if config.encoder == "identity":
        return nn.Identity()
    if config.encoder == "mmdynamic":
        return MMDynamicEncoder(spec.input_dim, config.hidden, config.num_classes)
    if config.encoder == "maxout":
        return MaxOutEncoder(spec.input_dim, spec.encoder_hidden, config.hidden)
    raise ValueError(f"unknown encoder {config.encoder!r}")
