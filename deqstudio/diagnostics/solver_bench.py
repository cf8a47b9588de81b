"""The solver benchmark: our solvers against torchdeq's Anderson on the 3-modality fusion map.

Everything is measured in one run, interleaved, as medians over repeats; speed is reported as ratios
(against torchdeq, and against the bare cost of the evaluations), since absolute times on shared
machines are noisy.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from collections.abc import Callable

import torch

from ..core.fusion.deq_fusion import DEQFusion
from ..core.solvers import solve
from ..core.solvers.registry import ANDERSON, SOLVER_NAMES

MODALITIES = ("m1", "m2", "m3")
FEATURE_SCALE = 3.0
MAP_DESCRIPTION = (
    "DEQ fusion block of the official code, 3 modalities of width d, default (nn.Linear-style) "
    f"initialisation with torch seed 0, injected features N(0, {FEATURE_SCALE:g}^2) with seed 1"
)
TORCHDEQ_HINT = "torchdeq is not installed; install it with: pip install --no-deps torchdeq==0.1.0"


@dataclass
class SolverBenchRow:
    solver: str
    d: int
    batch: int
    ms_median: float
    evaluations: int
    rel_residual: float
    f_call_ms: float  # from a bare loop of `evaluations` chained calls
    overhead_vs_evaluations: float
    torchdeq_ms_median: float | None = None
    torchdeq_evaluations: int | None = None
    torchdeq_rel_residual: float | None = None
    speedup_vs_torchdeq: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.solver != ANDERSON:
            for key in ("torchdeq_ms_median", "torchdeq_evaluations", "torchdeq_rel_residual", "speedup_vs_torchdeq"):
                d.pop(key)
        return d


def fusion_map(d: int, batch: int, device: str = "cpu"):
    """The benchmark map: ``(f, z0, plain_f)`` where ``plain_f`` is the same map as a bare callable."""
    torch.manual_seed(0)
    fusion = DEQFusion(MODALITIES, d).to(device).eval()
    g = torch.Generator().manual_seed(1)
    features = [FEATURE_SCALE * torch.randn(batch, d, generator=g).to(device) for _ in MODALITIES]
    with torch.no_grad():
        x = fusion.block.inject(features)
    f = fusion.fixed_point_map(x)
    return f, torch.zeros_like(x), (lambda z: fusion.block(z, x))


def _load_torchdeq_anderson() -> Callable | None:
    try:
        from torchdeq.solver import get_solver
    except ImportError:
        return None
    return get_solver(ANDERSON)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def bench_solvers(
    dims: tuple[int, ...] = (128, 512),
    batches: tuple[int, ...] = (1, 64),
    solvers: tuple[str, ...] = SOLVER_NAMES,
    *,
    repeats: int = 15,
    tol: float = 1e-4,
    max_iter: int = 50,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> tuple[list[SolverBenchRow], bool]:
    """Rows for every (solver, d, batch); the flag says whether torchdeq was there to compare."""
    torchdeq_anderson = _load_torchdeq_anderson()
    rows = []
    with torch.no_grad():
        for d in dims:
            for batch in batches:
                f, z0, plain = fusion_map(d, batch, device)
                for solver in solvers:
                    if progress:
                        progress(f"{solver} d={d} batch={batch}")
                    rows.append(_bench_one(solver, f, z0, plain, d, batch, repeats, tol, max_iter, device,
                                           torchdeq_anderson if solver == ANDERSON else None))
    return rows, torchdeq_anderson is not None


def _bare_loop(plain, z0, evaluations: int):
    z = z0
    for _ in range(evaluations):
        z = plain(z)
    return z


def _bench_one(solver, f, z0, plain, d, batch, repeats, tol, max_iter, device, torchdeq_anderson):
    """One case. The cost of one call of f is taken from a bare Python loop of as many chained
    evaluations as the solve made, timed in the same repeats: the floor any solver pays."""
    ours, theirs, bare = [], [], []
    result = {}

    def run_ours():
        result["ours"] = solve(f, z0, solver=solver, tol=tol, max_iter=max_iter)

    def run_theirs():
        result["theirs"] = torchdeq_anderson(plain, z0, max_iter=max_iter, tol=tol, stop_mode="rel")

    for _ in range(2):
        run_ours()
        if torchdeq_anderson:
            run_theirs()
    evaluations = int(result["ours"][1].evaluations)
    for _ in range(repeats):
        ours.append(_time(run_ours, device))
        bare.append(_time(lambda: _bare_loop(plain, z0, evaluations), device))
        if torchdeq_anderson:
            theirs.append(_time(run_theirs, device))
    _, trace = result["ours"]
    ms = statistics.median(ours)
    f_call = statistics.median(bare) / evaluations
    row = SolverBenchRow(
        solver=solver, d=d, batch=batch, ms_median=round(ms, 3), evaluations=int(trace.evaluations),
        rel_residual=float(trace.final_rel.max()), f_call_ms=round(f_call, 4),
        overhead_vs_evaluations=round(ms / (trace.evaluations * f_call), 3),
    )
    if torchdeq_anderson:
        _, _, info = result["theirs"]
        theirs_ms = statistics.median(theirs)
        row.torchdeq_ms_median = round(theirs_ms, 3)
        row.torchdeq_evaluations = int(info["nstep"].max())
        row.torchdeq_rel_residual = float(info["rel_lowest"].max())
        row.speedup_vs_torchdeq = round(theirs_ms / ms, 3)
    return row


def format_table(rows: list[SolverBenchRow]) -> str:
    header = f"{'solver':<12}{'d':>5}{'B':>4}{'ms':>9}{'evals':>7}{'rel':>10}{'f ms':>8}{'ovh':>6}{'tdq ms':>9}{'tdq ev':>7}{'speedup':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        tdq = (
            f"{r.torchdeq_ms_median:>9.2f}{r.torchdeq_evaluations:>7d}{r.speedup_vs_torchdeq:>8.2f}x"
            if r.torchdeq_ms_median is not None else f"{'':>25}"
        )
        lines.append(
            f"{r.solver:<12}{r.d:>5}{r.batch:>4}{r.ms_median:>9.2f}{r.evaluations:>7d}{r.rel_residual:>10.1e}"
            f"{r.f_call_ms:>8.3f}{r.overhead_vs_evaluations:>6.2f}{tdq}"
        )
    return "\n".join(lines)
