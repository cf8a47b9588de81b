"""DEQ fusion: find the fused equilibrium of the block, and differentiate through it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import nn

from ..implicit import BACKWARD_MODES, attach_implicit_backward, phantom_gradient
from ..jacobian import jacobian_regulariser
from ..solvers import PerSampleMap, SolverTrace, available_solvers, solve
from .deq_block import DEQFusionBlock


@dataclass(frozen=True)
class SolverSettings:
    """How the forward fixed point is found (and the backward one, with ``backward_*``)."""

    solver: str = "anderson"
    max_iter: int = 50
    tol: float = 1e-4
    stop_mode: str = "rel"
    options: dict = field(default_factory=dict)
    backward: str = "implicit"
    backward_max_iter: int = 50
    backward_tol: float = 1e-6
    phantom_steps: int = 1
    phantom_tau: float = 1.0

    def __post_init__(self) -> None:
        if self.solver not in available_solvers():
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {', '.join(available_solvers())}")
        if self.backward not in BACKWARD_MODES:
            raise ValueError(f"unknown backward mode {self.backward!r}; choose one of {', '.join(BACKWARD_MODES)}")

    def with_(self, **changes) -> "SolverSettings":
        return replace(self, **changes)


@dataclass
class FusionResult:
    z_fuse: torch.Tensor
    z_star: torch.Tensor
    injection: torch.Tensor
    trace: SolverTrace | None
    jac_loss: torch.Tensor


class DEQFusion(nn.Module):
    """The fusion block solved to its equilibrium.

    Modes, by the block's ablation: the default DEQ (solve, then implicit or phantom gradient),
    ``"no-deq"`` (one application from zero) and ``"unrolled"`` (``unrolled_steps`` weight-tied
    iterations from zero, backprop through all of them).
    """

    def __init__(
        self,
        names: tuple[str, ...],
        dim: int,
        *,
        ablation: str = "full",
        settings: SolverSettings | None = None,
        unrolled_steps: int = 10,
        jac_weight: float = 0.0,
        jac_vectors: int = 1,
    ) -> None:
        super().__init__()
        self.block = DEQFusionBlock(names, dim, ablation)
        self.settings = settings or SolverSettings()
        self.unrolled_steps = unrolled_steps
        self.jac_weight = jac_weight
        self.jac_vectors = jac_vectors

    @property
    def layout(self):
        return self.block.layout

    def fixed_point_map(self, injection: torch.Tensor) -> PerSampleMap:
        """``z ↦ f(z; x)`` for these injections, restrictable to a subset of samples."""
        return PerSampleMap(self.block, injection, layout=self.block.layout)

    def forward(
        self,
        features: list[torch.Tensor],
        *,
        settings: SolverSettings | None = None,
        record_states: bool = False,
        extras: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]] | None = None,
    ) -> FusionResult:
        """Fuse (B, d) features; ``extras(states, injections)`` computes per-step playback values."""
        s = settings or self.settings
        x = self.block.inject(features)
        z0 = torch.zeros_like(x)
        jac_loss = x.new_zeros(())
        f = self.fixed_point_map(x)
        mode = self.block.ablation
        wants_grad = torch.is_grad_enabled() and self.training

        if mode == "no-deq":
            z = self.block(z0, x)
            trace = self._trace_of(f, z0, max_iter=1, record_states=record_states, extras=extras, x=x)
            return FusionResult(self.block.fused(z), z, x, trace, jac_loss)
        if mode == "unrolled":
            if wants_grad:
                z = z0
                for _ in range(self.unrolled_steps):
                    z = self.block(z, x)
                return FusionResult(self.block.fused(z), z, x, None, jac_loss)
            z, trace = self._solve(
                f, z0, s.with_(solver="fixed_point", options={}, max_iter=self.unrolled_steps, tol=1e-12),
                record_states, extras, x, return_final=True, divergence_factor=None,
            )
            return FusionResult(self.block.fused(z), z, x, trace, jac_loss)

        z_star, trace = self._solve(f, z0, s, record_states, extras, x)
        if not wants_grad:
            return FusionResult(self.block.fused(z_star), z_star, x, trace, jac_loss)

        if s.backward == "phantom":
            z = phantom_gradient(lambda z: self.block(z, x), z_star, steps=s.phantom_steps, tau=s.phantom_tau)
            if self.jac_weight > 0:
                jac_loss = self._jacobian_loss(z_star, x)
            return FusionResult(self.block.fused(z), z, x, trace, jac_loss)

        z_leaf = z_star.detach().requires_grad_()
        new_z = self.block(z_leaf, x)
        if self.jac_weight > 0:
            jac_loss = jacobian_regulariser(new_z, z_leaf, vectors=self.jac_vectors)
        new_z = attach_implicit_backward(
            new_z, z_leaf, solver=s.solver, max_iter=s.backward_max_iter, tol=s.backward_tol, **s.options
        )
        return FusionResult(self.block.fused(new_z), new_z, x, trace, jac_loss)

    def _jacobian_loss(self, z_star: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z_leaf = z_star.detach().requires_grad_()
        return jacobian_regulariser(self.block(z_leaf, x), z_leaf, vectors=self.jac_vectors)

    def _solve(self, f, z0, s: SolverSettings, record_states, extras, x, **kw):
        bound = self._bind_extras(extras, x) if extras is not None else None
        return solve(
            f,
            z0,
            solver=s.solver,
            max_iter=s.max_iter,
            tol=s.tol,
            stop_mode=s.stop_mode,
            record_states=record_states or bound is not None,
            extras=bound,
            **kw,
            **s.options,
        )

    def _trace_of(self, f, z0, *, max_iter, record_states, extras, x) -> SolverTrace:
        _, trace = solve(
            f, z0, solver="fixed_point", max_iter=max_iter, tol=1e-12,
            record_states=record_states or extras is not None,
            extras=self._bind_extras(extras, x) if extras is not None else None,
            divergence_factor=None,
        )
        return trace

    @staticmethod
    def _bind_extras(extras, x: torch.Tensor):
        def per_step(states: torch.Tensor) -> dict[str, torch.Tensor]:
            steps = states.shape[0] // x.shape[0]
            return extras(states, x.repeat_interleave(steps, dim=0))

        return per_step
