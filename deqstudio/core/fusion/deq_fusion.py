"""DEQ fusion: find the fused equilibrium of the block, and differentiate through it."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import torch
from torch import nn

from ..implicit import attach_implicit_backward, phantom_gradient
from ..kinds import BACKWARD_MODES
from ..jacobian import jacobian_regulariser
from ..solvers import PerSampleMap, SolverSettings, SolverTrace, solve
from ..solvers.registry import PLAIN_ITERATION
from .deq_block import DEQFusionBlock


# The unrolled modes iterate a fixed number of times: no residual but an exact zero meets this.
_SMALLEST_TOL = 1e-300


@dataclass(frozen=True)
class BackwardSettings:
    """How training differentiates through the fixed point: the implicit adjoint solve (its own step
    limit and tolerance, with the forward solver) or the phantom gradient (damped steps from z*)."""

    mode: str = "implicit"
    max_iter: int = 50
    tol: float = 1e-6
    phantom_steps: int = 1
    phantom_tau: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in BACKWARD_MODES:
            raise ValueError(f"unknown backward mode {self.mode!r}; choose one of {', '.join(BACKWARD_MODES)}")


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

    The trace's step k is the iterate ``z_k`` (see ``SolverTrace``). The DEQ mode returns the solve's
    best iterate ``z*`` (when training, ``f(z*)`` with the implicit or phantom gradient attached).
    ``"no-deq"`` and ``"unrolled"`` output ``f^K(0)`` (K = 1 or ``unrolled_steps``); their trace
    records the iterates ``z_0 … z_K`` (K + 1 evaluations, so the residual of the output ``z_K`` is
    measured too), and the output is the last recorded state.
    """

    def __init__(
        self,
        names: tuple[str, ...],
        dim: int,
        *,
        ablation: str = "full",
        settings: SolverSettings | None = None,
        backward: BackwardSettings | None = None,
        unrolled_steps: int = 10,
        jac_weight: float = 0.0,
        jac_vectors: int = 1,
        relu_after_norm: bool = False,
    ) -> None:
        super().__init__()
        self.block = DEQFusionBlock(names, dim, ablation, relu_after_norm=relu_after_norm)
        self.settings = settings or SolverSettings()
        self.backward = backward or BackwardSettings()
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

        if mode in ("no-deq", "unrolled"):
            steps = 1 if mode == "no-deq" else self.unrolled_steps
            if wants_grad:
                z = z0
                for _ in range(steps):
                    z = self.block(z, x)
                return FusionResult(self.block.fused(z), z, x, None, jac_loss)
            z, trace = self._unrolled(f, z0, steps, s, record_states, extras, x)
            return FusionResult(self.block.fused(z), z, x, trace, jac_loss)

        z_star, trace = self._solve(f, z0, s, record_states, extras, x)
        if not wants_grad:
            return FusionResult(self.block.fused(z_star), z_star, x, trace, jac_loss)

        b = self.backward
        if b.mode == "phantom":
            z = phantom_gradient(lambda z: self.block(z, x), z_star, steps=b.phantom_steps, tau=b.phantom_tau)
            if self.jac_weight > 0:
                jac_loss = self._jacobian_loss(z_star, x)
            return FusionResult(self.block.fused(z), z, x, trace, jac_loss)

        z_leaf = z_star.detach().requires_grad_()
        new_z = self.block(z_leaf, x)
        if self.jac_weight > 0:
            jac_loss = jacobian_regulariser(new_z, z_leaf, vectors=self.jac_vectors)
        new_z = attach_implicit_backward(
            new_z, z_leaf, solver=s.solver, max_iter=b.max_iter, tol=b.tol, **s.option_dict
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
            **s.option_dict,
        )

    def _unrolled(self, f, z0, steps: int, s: SolverSettings, record_states, extras, x):
        """``f^steps(z0)`` as plain iteration, with the trace of the iterates ``z_0 … z_steps``.

        The tolerance is as small as a positive float gets, so the iteration stops early only on an
        exact fixed point (whose further iterates are itself) or a non-finite norm; a row stopped by
        the latter gets its true ``f^steps(z0)``, computed again, instead of its last finite iterate.
        """
        bound = self._bind_extras(extras, x) if extras is not None else None
        z, trace = solve(
            f, z0, solver=PLAIN_ITERATION, max_iter=steps + 1, tol=_SMALLEST_TOL, stop_mode=s.stop_mode,
            record_states=record_states or bound is not None, extras=bound, return_final=True,
            divergence_factor=None,
        )
        short = torch.from_numpy((trace.nstep < steps + 1) & ~trace.converged).to(z.device)
        if bool(short.any()):
            with torch.no_grad():
                direct = z0
                for _ in range(steps):
                    direct = self.block(direct, x)
            z = torch.where(short[:, None], direct, z)
        return z, trace

    @staticmethod
    def _bind_extras(extras, x: torch.Tensor):
        def per_step(states: torch.Tensor) -> dict[str, torch.Tensor]:
            steps = states.shape[0] // x.shape[0]
            return extras(states, x.repeat_interleave(steps, dim=0))

        return per_step
