"""Fixed-point solvers with one contract and a full step-by-step trace.

>>> import torch
>>> from deqstudio.core.solvers import solve
>>> A = 0.5 * torch.eye(2, dtype=torch.float64)
>>> b = torch.ones(1, 2, dtype=torch.float64)
>>> z, trace = solve(lambda z: z @ A.T + b, torch.zeros(1, 2, dtype=torch.float64), tol=1e-10)
>>> torch.allclose(z, torch.full((1, 2), 2.0, dtype=torch.float64)), bool(trace.converged[0])
(True, True)
"""

from __future__ import annotations

from .registry import (
    DEFAULT_SOLVER,
    SOLVER_NAMES,
    STOP_MODES,
    SolverSpec,
    available_solvers,
    check_options,
    get_spec,
    option_defaults,
    register_solver,
)
from .settings import SolverSettings

__all__ = [
    "DEFAULT_SOLVER",
    "REASONS",
    "SOLVER_NAMES",
    "STOP_MODES",
    "BatchMap",
    "BlockLayout",
    "PerSampleMap",
    "SolverSettings",
    "SolverSpec",
    "SolverTrace",
    "available_solvers",
    "check_options",
    "concat_traces",
    "get_spec",
    "option_defaults",
    "register_solver",
    "solve",
]

# The names below need torch: they are imported on first use, so that the registry and the settings
# (solver names for the command line's choices, the studio's settings) load without it.
_LAZY = {
    "solve": "solving", "BatchMap": "batch_map", "BlockLayout": "batch_map", "PerSampleMap": "batch_map",
    "SolverTrace": "trace", "REASONS": "trace", "concat_traces": "trace",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
