"""Maps that know their batch: what lets a solver drop converged samples from the active batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from collections.abc import Callable, Sequence

import torch


@dataclass(frozen=True)
class BlockLayout:
    """Names and sizes of the blocks a flat (B, D) state is made of, in order."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.sizes) or not self.names:
            raise ValueError("BlockLayout needs one size per block name and at least one block")
        if any(int(s) <= 0 for s in self.sizes):
            raise ValueError(f"BlockLayout sizes must be positive, got {self.sizes}")

    @classmethod
    def uniform(cls, names: Sequence[str], size: int) -> "BlockLayout":
        return cls(tuple(names), tuple(int(size) for _ in names))

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    @property
    def is_uniform(self) -> bool:
        return len(set(self.sizes)) == 1

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The blocks of a (B, D) state, as views."""
        return list(torch.split(z, list(self.sizes), dim=1))

    def block_norms(self, z: torch.Tensor) -> torch.Tensor:
        """Euclidean norm of each block, (B, nblocks)."""
        if self.is_uniform:
            return z.view(z.shape[0], len(self.sizes), self.sizes[0]).norm(dim=2)
        return torch.stack([b.norm(dim=1) for b in self.split(z)], dim=1)


@runtime_checkable
class BatchMap(Protocol):
    """A fixed-point map over a batch whose rows can be restricted to a subset of samples."""

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...

    def select(self, index: torch.Tensor) -> "BatchMap": ...


class PerSampleMap:
    """``f(z) = fn(z, *per_sample)`` where each tensor of ``per_sample`` has one row per sample.

    Restricting it to a subset of samples index-selects those rows, so a solver can drop converged
    samples and keep calling ``f`` on the rest.

    >>> import torch
    >>> b = torch.ones(3, 2)
    >>> f = PerSampleMap(lambda z, b: 0.5 * z + b, b)
    >>> f.select(torch.tensor([0, 2]))(torch.zeros(2, 2)).shape
    torch.Size([2, 2])
    """

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        *per_sample: torch.Tensor,
        layout: BlockLayout | None = None,
    ) -> None:
        self.fn = fn
        self.per_sample = per_sample
        self.layout = layout

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z, *self.per_sample)

    def select(self, index: torch.Tensor) -> "PerSampleMap":
        rows = tuple(t.index_select(0, index.to(t.device)) for t in self.per_sample)
        return PerSampleMap(self.fn, *rows, layout=self.layout)
