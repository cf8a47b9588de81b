"""``SolverSettings``: how a fixed point is found, in one frozen value, checked once. No torch here.

The studio's solver panel, session files, the command line, analyses and a model's own defaults all
build one of these; everything downstream trusts it.

>>> s = SolverSettings("broyden", max_iter=80)
>>> s.options
(('m', 30),)
>>> s.with_(solver="fixed_point").option_dict
{'tau': 1.0}
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from collections.abc import Mapping

from .registry import DEFAULT_SOLVER, check_common, check_options, get_spec


@dataclass(frozen=True)
class SolverSettings:
    """Solver name, step limit, tolerance, stop mode and the solver's own options (all of them, defaults
    filled in, as sorted ``(name, value)`` pairs so that the value is hashable).

    Raises ValueError naming the first bad field.
    """

    solver: str = DEFAULT_SOLVER
    max_iter: int = 50
    tol: float = 1e-4
    stop_mode: str = "rel"
    options: tuple = field(default=())

    def __post_init__(self) -> None:
        get_spec(self.solver)
        check_common(self.max_iter, self.tol, self.stop_mode)
        try:
            given = dict(self.options)
        except (TypeError, ValueError):
            raise ValueError(f"solver options must be name-value pairs, got {self.options!r}") from None
        full = check_options(self.solver, given)
        object.__setattr__(self, "max_iter", int(self.max_iter))
        object.__setattr__(self, "tol", float(self.tol))
        object.__setattr__(self, "options", tuple(sorted(full.items())))

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def with_(self, **changes) -> "SolverSettings":
        """A copy with fields changed; switching solver drops options the new solver does not take."""
        if "solver" in changes and changes["solver"] != self.solver and "options" not in changes:
            keep = {o.name for o in get_spec(changes["solver"]).options}
            changes["options"] = {k: v for k, v in self.options if k in keep}
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {"solver": self.solver, "max_iter": self.max_iter, "tol": self.tol, "stop_mode": self.stop_mode,
                "options": self.option_dict}

    @classmethod
    def from_dict(cls, data: Mapping) -> "SolverSettings":
        """From ``to_dict``'s form, or a version-1 session's flat form (``m``, ``lam``, ``tau`` beside the rest;
        only the chosen solver's options are kept)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"solver settings must be an object, got {type(data).__name__}")
        data = dict(data)
        data.pop("device", None)
        solver = data.get("solver", DEFAULT_SOLVER)
        options = data.pop("options", None)
        flat = {k: data.pop(k) for k in ("m", "lam", "tau") if k in data}
        if options is None:
            keep = {o.name for o in get_spec(solver).options}
            options = {k: v for k, v in flat.items() if k in keep}
        if not isinstance(options, Mapping):
            raise ValueError(f"solver options must be an object, got {type(options).__name__}")
        unknown = sorted(set(data) - {"solver", "max_iter", "tol", "stop_mode"})
        if unknown:
            raise ValueError(f"unknown solver setting(s): {', '.join(unknown)}")
        return cls(options=dict(options), **data)

    def describe(self) -> str:
        opts = ", ".join(f"{k} {v:g}" for k, v in self.options)
        return f"{self.solver}, tol {self.tol:g} ({self.stop_mode}), at most {self.max_iter} steps" + (
            f"; {opts}" if opts else "")
