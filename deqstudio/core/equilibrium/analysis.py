"""``analyse_equilibrium``: every equilibrium quantity of one sample, and the batched pieces a sweep needs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import Cancelled
from ..adapter import FixedPointProblem
from ..solvers.settings import SolverSettings
from .linear import adjoint_sensitivity, linear_response
from .operators import Linearisation, linearise
from .report import EquilibriumReport
from .spectral import arnoldi_radius, block_norms, block_norms_power, dense_arnoldi_radius, observed_contraction
from .starts import DEFAULT_RANDOM_STARTS, multiple_starts

DENSE_MAX = 512  # states up to this size get their whole Jacobian (one batched backward pass)


@dataclass(frozen=True)
class EquilibriumOptions:
    """random_starts: random starts besides zeros and the reference; seed: theirs and Arnoldi's start;
    dense_max: the largest state whose Jacobian is formed; arnoldi_steps: the Krylov dimension limit;
    method: ``"autograd"`` or ``"finite-difference"`` (None: what the problem allows)."""

    random_starts: int = DEFAULT_RANDOM_STARTS
    seed: int = 0
    dense_max: int = DENSE_MAX
    arnoldi_steps: int = 60
    method: str | None = None


@dataclass
class Reference:
    """The clean input's problem and equilibrium, (1, D): the linear response's base point and a start."""

    problem: FixedPointProblem
    z_star: torch.Tensor


def predicted_labels(p: torch.Tensor, task: str) -> list[torch.Tensor]:
    """The labels whose probability is differentiated, per row: the argmax (multiclass); for multilabel each
    label with p ≥ 0.5, or the likeliest when none is. Returned as columns: a list of (B,) label tensors."""
    if task != "multilabel":
        return [p.argmax(dim=1)]
    present = p >= 0.5
    present[torch.arange(len(p)), p.argmax(dim=1)] = True  # the likeliest always counts
    width = int(present.sum(dim=1).max())
    order = torch.argsort(p, dim=1, descending=True)[:, :width]
    # rows with fewer labels repeat their likeliest; repeats are dropped by the caller
    counts = present.sum(dim=1)
    cols = [torch.where(counts > k, order[:, k], order[:, 0]) for k in range(width)]
    return cols


def analyse_equilibrium(problem: FixedPointProblem, z_star, settings: SolverSettings, *,
                        residuals: np.ndarray | None = None, best_step: int | None = None,
                        reference: Reference | None = None, options: EquilibriumOptions = EquilibriumOptions(),
                        input_scales: Sequence | None = None, block_names: Sequence[str] = (),
                        modality_names: Sequence[str] = (),
                        cancel: Callable[[], bool] | None = None) -> EquilibriumReport:
    """The equilibrium quantities of a one-sample ``problem`` at its equilibrium ``z_star`` (1, D).

    ``residuals``/``best_step``: the solve's residual per step, for the observed contraction. ``reference``:
    the clean input's problem and z*; with it, the linear response to the input change is computed and
    compared with the actual shift, and the clean z* is one of the starts. ``cancel`` is checked between
    stages and raises ``Cancelled``.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if problem.z0.shape[0] != 1:
        raise ValueError(f"analyse_equilibrium takes a one-sample problem, got {problem.z0.shape[0]} samples")

    def check(*_) -> None:
        if cancel is not None and cancel():
            raise Cancelled()

    def stage(name: str, t0: float) -> float:
        timings[name] = time.perf_counter() - t0
        check()
        return time.perf_counter()

    lin = linearise(problem, torch.as_tensor(z_star), options.method, input_scales)
    layout = problem.layout
    dim = lin.dim
    dense = dim <= options.dense_max
    t0 = time.perf_counter()
    J = lin.dense().to(torch.float64) if dense else None
    t0 = stage("jacobian", t0)

    if J is not None:
        estimate = dense_arnoldi_radius(J[0].cpu().numpy(), tol=1e-8, seed=options.seed, callback=check)
        method = "dense"
    else:
        estimate = arnoldi_radius(lin.matvec, 1, dim, dtype=lin.dtype, device=lin.z.device,
                                  max_steps=options.arnoldi_steps, seed=options.seed, callback=check)
        method = "arnoldi"
    t0 = stage("spectral", t0)

    if J is not None:
        coupling = block_norms(J, layout)[0]
    else:
        pairs = lin.rows(torch.zeros(len(layout.sizes) ** 2, dtype=torch.long))
        coupling = block_norms_power(pairs.matvec, pairs.rmatvec, 1, layout, dtype=lin.dtype, device=lin.z.device,
                                     seed=options.seed)[0]
    t0 = stage("coupling", t0)

    with torch.no_grad():
        p = lin.probabilities(lin.z)
    columns = predicted_labels(p, problem.task)
    labels, sensitivity, adjoint = [], [], []
    for col in columns:
        label = int(col[0])
        if label in labels:
            continue
        grads, info = adjoint_sensitivity(lin, col, settings, dense=J, callback=check)
        labels.append(label)
        sensitivity.append([float(g[0].double().norm()) for g in grads])
        adjoint += info
    t0 = stage("sensitivity", t0)

    ref_z = None if reference is None else torch.as_tensor(reference.z_star).to(lin.z)
    starts = multiple_starts(problem.f, lin.z, settings, reference=ref_z, count=options.random_starts,
                             seed=options.seed, callback=check)
    t0 = stage("starts", t0)

    predicted = actual = None
    predicted_total = actual_total = float("nan")
    response = []
    if reference is not None:
        base = linearise(reference.problem, ref_z, lin.method, input_scales)
        dxs = [x - x0 for x, x0 in zip(lin.xs, base.xs)]
        J0 = base.dense().to(torch.float64) if dense else None
        delta, response = linear_response(base, dxs, settings, dense=J0, callback=check)
        shift = (lin.z - ref_z).to(torch.float64)
        delta = delta.to(torch.float64)
        predicted = _block_norms(delta[0], layout)
        actual = _block_norms(shift[0], layout)
        predicted_total, actual_total = float(delta.norm()), float(shift.norm())
        stage("response", t0)

    contraction = None if residuals is None else observed_contraction(residuals, best_step)
    return EquilibriumReport(
        block_names=tuple(block_names) or tuple(layout.names), modality_names=tuple(modality_names),
        derivatives=lin.method, spectral_radius=float(estimate.radius[0]), spectral_method=method,
        spectral_steps=estimate.steps, contraction_observed=contraction, coupling=np.asarray(coupling),
        labels=tuple(labels), sensitivity=np.asarray(sensitivity, dtype=np.float64), adjoint=adjoint, starts=starts,
        predicted_shift=predicted, actual_shift=actual, predicted_total=predicted_total, actual_total=actual_total,
        response=response, seconds=time.perf_counter() - t_start, timings=timings,
    )


def _block_norms(v: torch.Tensor, layout) -> np.ndarray:
    return np.array([float(b.norm()) for b in torch.split(v, list(layout.sizes))])


# -- batched pieces, for sweeps over many samples ------------------------------------------------------------------
def spectral_radii(problem: FixedPointProblem, z_star, *, steps: int = 20, seed: int = 0,
                   method: str | None = None) -> np.ndarray:
    """ρ(J) of every row of a batched problem at its equilibria (B, D), by ``steps`` Arnoldi steps on products."""
    lin = linearise(problem, torch.as_tensor(z_star), method)
    return arnoldi_radius(lin.matvec, lin.batch, lin.dim, dtype=lin.dtype, device=lin.z.device, max_steps=steps,
                          check_every=steps, seed=seed).radius


def linear_shift(clean: FixedPointProblem, z_clean, corrupted_inputs: Sequence, settings: SolverSettings, *,
                 method: str | None = None, input_scales: Sequence | None = None,
                 tol: float | None = None) -> np.ndarray:
    """‖(I − J)⁻¹ ∂f/∂x Δx‖ of every row: the whole-state shift the linear response predicts, (B,).
    ``tol``: the linear solve's relative tolerance (default: what the precision reaches)."""
    lin: Linearisation = linearise(clean, torch.as_tensor(z_clean), method, input_scales)
    dxs = [torch.as_tensor(x).to(x0) - x0 for x, x0 in zip(corrupted_inputs, lin.xs)]
    delta, _ = linear_response(lin, dxs, settings, tol=tol)
    return delta.to(torch.float64).norm(dim=1).cpu().numpy()
