"""The DEQ fusion block of Ni et al. (2023), as the official code computes it.

For N modalities with injected features x_i and states z_i, z_fuse (all of width d)::

    f_i(z_i; x_i) = GN3(ReLU(GN2(W2_i·ReLU(GN1(W1_i z_i + b1_i)) + b2_i + x_i) + z_i))
    a_i           = W_a (f_i(z_i; x_i) + z_fuse) + b_a        # one linear gate shared by all i
    z_fuse'       = GN(ReLU(W_f · Σ_i (a_i ⊙ z_fuse) + b_f + x_fuse))
    x_fuse        = Σ_i w_i x_i + c

The paper's Eq. 8 omits the ``+ z_i`` residual; the code has it, and so do we. The MM-IMDB experiment's
code computes the fused branch as ``ReLU(GN(·))`` instead of ``GN(ReLU(·))`` (``relu_after_norm``). The N modality
branches run as one batched matrix product, and their GroupNorms (4 groups each) as one GroupNorm
with 4N groups over the stacked features, which is the same computation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..kinds import ABLATIONS, GROUPS
from ..solvers.batch_map import BlockLayout


class DEQFusionBlock(nn.Module):
    """One application ``f(z; x)`` of the fusion block over the packed state (B, (N+1)·d).

    Args:
        names: modality names, in order; the state's blocks are these and then ``"fused"``.
        dim: the width d of every block (a multiple of 4 for the GroupNorms).
        ablation: ``"full"`` or one of the paper's ablation rows: ``"no-ftheta"`` (z_i* = x_i),
            ``"no-ffuse"`` (z_fuse* = Σ z_i*), ``"no-gate"`` (Σ f_i replaces Σ a_i ⊙ z_fuse). The
            solve-level switches ``"no-deq"`` and ``"unrolled"`` use the full block.
        relu_after_norm: the fused branch's ReLU after its GroupNorm (the MM-IMDB experiment's variant).
    """

    def __init__(self, names: tuple[str, ...] | list[str], dim: int, ablation: str = "full",
                 relu_after_norm: bool = False) -> None:
        super().__init__()
        names = tuple(names)
        if not names:
            raise ValueError("the fusion block needs at least one modality")
        if dim <= 0 or dim % GROUPS:
            raise ValueError(f"hidden size must be a positive multiple of {GROUPS}, got {dim}")
        if ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATIONS)}")
        self.names = names
        self.dim = dim
        self.ablation = ablation
        self.relu_after_norm = bool(relu_after_norm)
        n = len(names)
        self.layout = BlockLayout.uniform(names + ("fused",), dim)

        self.w1 = nn.Parameter(torch.empty(n, dim, dim))
        self.b1 = nn.Parameter(torch.empty(n, dim))
        self.w2 = nn.Parameter(torch.empty(n, dim, dim))
        self.b2 = nn.Parameter(torch.empty(n, dim))
        for w, b in ((self.w1, self.b1), (self.w2, self.b2)):
            for i in range(n):
                nn.init.kaiming_uniform_(w.data[i], a=math.sqrt(5))
                nn.init.uniform_(b.data[i], -1 / math.sqrt(dim), 1 / math.sqrt(dim))
        for k in (1, 2, 3):
            self.register_parameter(f"gn{k}_weight", nn.Parameter(torch.ones(n * dim)))
            self.register_parameter(f"gn{k}_bias", nn.Parameter(torch.zeros(n * dim)))
        self.gate = nn.Linear(dim, dim)
        self.fuse = nn.Linear(dim, dim)
        self.fuse_norm = nn.GroupNorm(GROUPS, dim)
        self.mix_weights = nn.Parameter(torch.ones(n))
        self.mix_bias = nn.Parameter(torch.zeros(1))

    @property
    def num_modalities(self) -> int:
        return len(self.names)

    @property
    def state_dim(self) -> int:
        return (len(self.names) + 1) * self.dim

    def inject(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The packed injection (x_1..x_N, x_fuse) with x_fuse = Σ w_i x_i + c, (B, (N+1)·d)."""
        if len(features) != self.num_modalities:
            raise ValueError(f"expected {self.num_modalities} modality features, got {len(features)}")
        stacked = torch.stack(features, dim=1)
        x_fuse = torch.einsum("bnd,n->bd", stacked, self.mix_weights) + self.mix_bias
        return torch.cat([stacked.flatten(1), x_fuse], dim=1)

    def branches(self, zm: torch.Tensor, xm: torch.Tensor) -> torch.Tensor:
        """f_i(z_i; x_i) for every modality at once; zm and xm are (B, N, d)."""
        if self.ablation == "no-ftheta":
            return xm
        b, n, d = zm.shape
        groups = GROUPS * self.num_modalities  # a Python int: ONNX export needs a constant
        h = torch.einsum("bnd,ned->bne", zm, self.w1) + self.b1
        h = F.relu(F.group_norm(h.reshape(b, n * d), groups, self.gn1_weight, self.gn1_bias))
        h = torch.einsum("bnd,ned->bne", h.view(b, n, d), self.w2) + self.b2 + xm
        h = F.group_norm(h.reshape(b, n * d), groups, self.gn2_weight, self.gn2_bias) + zm.reshape(b, n * d)
        return F.group_norm(F.relu(h), groups, self.gn3_weight, self.gn3_bias).view(b, n, d)

    def gate_sum(self, fm: torch.Tensor, zf: torch.Tensor) -> torch.Tensor:
        """Σ_i a_i, computed as one product since the gate is linear and shared."""
        n = fm.shape[1]
        return F.linear(fm.sum(dim=1) + n * zf, self.gate.weight) + n * self.gate.bias

    def gates(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The gate vectors a_i at state z, (B, N, d)."""
        zm, zf, xm, _ = self._unpack(z, x)
        fm = self.branches(zm, xm)
        return self.gate(fm + zf.unsqueeze(1))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        zm, zf, xm, xf = self._unpack(z, x)
        fm = self.branches(zm, xm)
        if self.ablation == "no-ffuse":
            zf_new = fm.sum(dim=1)
        else:
            mixed = fm.sum(dim=1) if self.ablation == "no-gate" else zf * self.gate_sum(fm, zf)
            pre = self.fuse(mixed) + xf
            zf_new = F.relu(self.fuse_norm(pre)) if self.relu_after_norm else self.fuse_norm(F.relu(pre))
        return torch.cat([fm.flatten(1), zf_new], dim=1)

    def _unpack(self, z: torch.Tensor, x: torch.Tensor):
        b, n, d = z.shape[0], self.num_modalities, self.dim
        split = n * d
        return z[:, :split].view(b, n, d), z[:, split:], x[:, :split].view(b, n, d), x[:, split:]

    def fused(self, z: torch.Tensor) -> torch.Tensor:
        """The z_fuse block of a packed state (or of a stack of states)."""
        return z[..., self.num_modalities * self.dim :]
