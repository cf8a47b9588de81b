"""Allowed ranges of numeric settings, checked where a file's values are read (no torch needed).

A value outside its range would only fail later, as a solve that never ends or an allocation that
cannot succeed; refused on reading, the message names the field and the range.
"""

from __future__ import annotations

import math
import numbers

MAX_ITER = (1, 10_000)
TOL = (1e-12, 1e3)
SOLVER_OPTION_FIELDS = {"m": (int, 1, 256), "lam": (float, 0.0, 1e6), "tau": (float, 1e-3, 1.0)}


def shown(value) -> str:
    """A short description of a value for a message: a number or text itself, otherwise its type."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value) if isinstance(value, (str, numbers.Number)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def bounded_int(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in low..high, or ValueError naming the field and its range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high:,}, got {shown(value)}")
    return int(value)


def bounded_real(name: str, value, low: float, high: float) -> float:
    """``value`` as a finite float in [low, high], or ValueError naming the field and its range."""
    try:
        number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {shown(value)}")
    return number


def solver_option(name: str, value, label: str | None = None):
    """A solver option (m, lam, tau) checked against its range."""
    kind, low, high = SOLVER_OPTION_FIELDS[name]
    return (bounded_int if kind is int else bounded_real)(label or name, value, low, high)
