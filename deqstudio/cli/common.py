"""What the commands share: the one-line error, progress bars, and the arguments several commands take."""

from __future__ import annotations

import argparse
import sys

from ..core.device import check_device_name
from ..core.solvers.registry import SOLVER_NAMES
from ..core.solvers.settings import SolverSettings
from ..errors import printable


def fail(message: str, code: int = 2) -> int:
    print(f"error: {printable(message)}", file=sys.stderr)  # one line: nothing from a file reaches it raw
    return code


def device_problem(device: str) -> str | None:
    try:
        check_device_name(device)
    except ValueError as exc:
        return str(exc)
    return None


def progress_bar(what: str, total: int, unit: str = "it"):
    """A tqdm bar on stderr; call ``update(n)`` / ``set_postfix_str`` / ``close``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                bar_format="{desc} {bar} {percentage:3.0f}% {postfix}")


def fraction_progress(what: str, samples: int | None = None):
    """``(callback, close)``: a callback taking the fraction done (0..1) that drives a tqdm bar, and its close.

    The bar appears with the first progress, so a command that fails before any work prints only its error.
    ``samples``: the work's size in samples; the bar then shows this run's pace in samples/s (from the first
    fraction it was given, so work a resumed run found finished does not count).
    """
    import time

    bars, start = [], []

    def show(fraction: float) -> None:
        if not bars:
            bars.append(progress_bar(what, 1000))
            start.append((time.perf_counter(), fraction))
        bars[0].update(max(0, int(1000 * fraction) - bars[0].n))
        if samples:
            seconds = time.perf_counter() - start[0][0]
            if seconds > 0 and fraction > start[0][1]:
                bars[0].set_postfix_str(f"{(fraction - start[0][1]) * samples / seconds:.1f} samples/s", refresh=False)

    def close() -> None:
        if bars:
            bars.pop().close()

    return show, close


MODEL_HELP = ("the model: a checkpoint (.pt), a DEQ package (a folder or .zip with contract.json), or "
              "plugin:NAME[:PATH] (default: the bundled demo model)")


def add_plugin_consent(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-plugin", action="append", default=[], metavar="NAME",
                   help="let the installed plugin NAME run its Python code in this command (repeatable)")


def add_files(p: argparse.ArgumentParser) -> None:
    from .plugins import add_safe_mode

    p.add_argument("--checkpoint", help=MODEL_HELP)
    p.add_argument("--dataset", help="dataset file (default: the bundled UCI Multiple Features)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    add_plugin_consent(p)
    add_safe_mode(p)


def add_corrupt_and_solver(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corrupt", action="append", default=[], metavar="MOD=KIND:SEVERITY",
                   help="corrupt a modality, e.g. pix=gaussian:3 (repeatable)")
    defaults = SolverSettings()
    p.add_argument("--solver", choices=SOLVER_NAMES, help=f"{', '.join(SOLVER_NAMES)} (default {defaults.solver})")
    p.add_argument("--max-iter", type=int, help=f"solver step limit (default {defaults.max_iter})")
    p.add_argument("--tol", type=float, help=f"solver tolerance (default {defaults.tol:g})")
