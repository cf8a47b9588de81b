"""The fixed-point solvers DEQ Studio knows: names, options, defaults and their checks. No torch here.

This is the one place solver names are written down. Everything else (settings, the command line's
``choices=``, the studio's solver box, analyses) takes them from here; the implementations are imported
only when a solve runs (``deqstudio.core.solvers.solve``).

>>> from deqstudio.core.solvers.registry import SOLVER_NAMES, option_defaults
>>> SOLVER_NAMES
('anderson', 'fixed_point', 'broyden')
>>> option_defaults("anderson")
{'m': 6, 'lam': 0.0001, 'tau': 1.0}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable

from ..bounds import MAX_ITER, TOL, bounded_int, bounded_real, solver_option

ANDERSON = "anderson"  # also the name torchdeq gives its Anderson solver (the benchmark compares the two)
DEFAULT_SOLVER = ANDERSON
PLAIN_ITERATION = "fixed_point"  # z <- f(z): what unrolled (weight-tied) models do
STOP_MODES = ("rel", "abs")


@dataclass(frozen=True)
class OptionSpec:
    """One solver option: its default, a check that raises ValueError, and what it means."""

    name: str
    default: float | int
    check: Callable[[str, str, object], None]
    label: str = ""  # what it is, in a word or two: "history size", "damping"
    help: str = ""


@dataclass(frozen=True)
class SolverSpec:
    """A registered solver: where its implementation lives and the options it takes."""

    name: str
    module: str  # "deqstudio.core.solvers.anderson:anderson" — imported when a solve runs
    options: tuple[OptionSpec, ...] = ()
    help: str = ""
    extra: dict = field(default_factory=dict)


def _option(solver: str, name: str, value: object) -> None:
    """An option within its range (``core.bounds``); the message names the solver and what the option is."""
    key = name.split()[-1]
    solver_option(key, value, f"{solver}: {name}")


_REGISTRY: dict[str, SolverSpec] = {}


def register_solver(spec: SolverSpec) -> None:
    """Add a solver; its implementation ``run(recorder, z0, **options)`` iterates until ``recorder.done``."""
    _REGISTRY[spec.name] = spec


register_solver(SolverSpec(
    ANDERSON, "deqstudio.core.solvers.anderson:anderson",
    (OptionSpec("m", 6, _option, "history size", "how many past residuals are mixed"),
     OptionSpec("lam", 1e-4, _option, "regulariser", "Tikhonov λ, relative to the trace of GGᵀ"),
     OptionSpec("tau", 1.0, _option, "mixing", "1 takes the mixed images; less damps toward the iterates")),
    "Anderson acceleration (type II) with a scale-aware regulariser",
))
register_solver(SolverSpec(
    PLAIN_ITERATION, "deqstudio.core.solvers.fixed_point:fixed_point",
    (OptionSpec("tau", 1.0, _option, "damping", "z ← (1 − τ)·z + τ·f(z)"),),
    "plain (optionally damped) fixed-point iteration",
))
register_solver(SolverSpec(
    "broyden", "deqstudio.core.solvers.broyden:broyden",
    (OptionSpec("m", 30, _option, "memory", "rank-one updates kept before the estimate restarts"),),
    "limited-memory ('good') Broyden on g(z) = f(z) − z",
))

SOLVER_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def available_solvers() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get_spec(name: str) -> SolverSpec:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(_REGISTRY)}") from None


def option_defaults(name: str) -> dict:
    return {o.name: o.default for o in get_spec(name).options}


def check_options(name: str, options: dict) -> dict:
    """The solver's full options (defaults filled in), checked; unknown names are an error, not ignored."""
    spec = get_spec(name)
    known = {o.name: o for o in spec.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for solver {name!r}; it takes: {allowed}")
    full = {**option_defaults(name), **options}
    for key, value in full.items():
        option = known[key]
        option.check(name, f"{option.label} {key}".strip(), value)
    return full


def check_common(max_iter: object, tol: object, stop_mode: object) -> None:
    """The settings every solver shares, within their ranges (``core.bounds``); ValueError names the first bad one."""
    bounded_int("max_iter", max_iter, *MAX_ITER)
    bounded_real("tol", tol, *TOL)
    if stop_mode not in STOP_MODES:
        raise ValueError(f"stop_mode must be one of {', '.join(STOP_MODES)}, got {stop_mode!r}")


def implementation(name: str) -> Callable[..., None]:
    """Import and return the solver's ``run`` function."""
    import importlib

    module, function = get_spec(name).module.split(":")
    return getattr(importlib.import_module(module), function)
