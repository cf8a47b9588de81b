"""Is the equilibrium the only one? Solve again from several starts and compare what is found.

Starts: zeros (what the model does), a reference equilibrium (the clean input's z*), and ``count`` random states
with the equilibrium's own scale, seeded. They agree when every pair of converged equilibria is closer than
``AGREE_FACTOR`` × the solver's tolerance, relative to ‖z*‖. Disagreement means the map has more than one fixed
point reachable from ordinary starts.

The starts are solved to a tenth of the tolerance (``TIGHTER``), with twice the steps, so that two solves of one
equilibrium land well inside the agreement distance even where (I − J) is poorly conditioned; a start counts
as converged when it met the solver's own tolerance.
"""

from __future__ import annotations

import numpy as np
import torch

from ..solvers import solve
from ..solvers.settings import SolverSettings
from .report import StartsOutcome

AGREE_FACTOR = 10.0
DEFAULT_RANDOM_STARTS = 4
TIGHTER = 0.1
_FLOOR = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 1e-2}  # what a solve in that precision reaches


def multiple_starts(f, z_star: torch.Tensor, settings: SolverSettings, *, reference: torch.Tensor | None = None,
                    count: int = DEFAULT_RANDOM_STARTS, seed: int = 0, callback=None) -> StartsOutcome:
    """Solve one sample's map ``f`` (a one-row ``BatchMap``) from every start at once, in one batch.

    ``z_star`` (1, D) is the sample's equilibrium (distances are relative to its norm, random starts have its
    RMS scale); ``reference`` (1, D), another equilibrium to start from (the clean one); defaults to z*.
    """
    if count < 0:
        raise ValueError(f"the number of random starts must be >= 0, got {count}")
    z_star = z_star.detach()
    dim = z_star.shape[1]
    scale = float(z_star.pow(2).mean().sqrt()) or 1.0
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    random = torch.randn(count, dim, generator=gen, dtype=torch.float64).to(z_star) * scale
    ref = z_star if reference is None else reference.detach().to(z_star)
    starts = torch.cat([torch.zeros_like(z_star), ref, random])
    labels = ("zeros", "reference", *(f"random {k}" for k in range(count)))
    rows = f.select(torch.zeros(len(starts), dtype=torch.long, device=z_star.device))
    tol = max(settings.tol * TIGHTER, _FLOOR.get(z_star.dtype, 0.0)) if settings.stop_mode == "rel" else \
        settings.tol * TIGHTER
    found, trace = solve(rows, starts, solver=settings.solver, max_iter=2 * settings.max_iter, tol=min(tol, settings.tol),
                         stop_mode=settings.stop_mode, callback=callback, **settings.option_dict)
    residual = trace.final_rel if settings.stop_mode == "rel" else trace.final_abs
    ok = np.isfinite(residual) & (residual <= settings.tol)
    norm = max(float(z_star.norm()), 1e-12)
    distances = ((found - z_star).norm(dim=1) / norm).double().cpu().numpy()
    good = found[torch.as_tensor(ok, device=found.device)]
    if len(good) >= 2:
        pairwise = torch.cdist(good.double(), good.double())
        max_distance = float(pairwise.max()) / norm
    else:
        max_distance = float("nan")
    return StartsOutcome(count=len(starts), converged=int(ok.sum()), max_distance=max_distance,
                         threshold=AGREE_FACTOR * settings.tol, labels=labels, distances=distances)
