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


GUI_MODULES = ("PySide6", "shiboken6", "pyqtgraph", "qasync")
GUI_EXTRA = "pip install 'deqstudio[gui]'"


def missing_gui_extra(command: str) -> str | None:
    """The one line a command that draws with Qt says when the ``gui`` extra is not installed, else None.

    Looked up without importing anything (``find_spec``), so the studio's start-up is not slowed.
    """
    import importlib.util

    for name in GUI_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"deqstudio {command} needs the gui extra: {GUI_EXTRA} ({name} is not installed)"
    return None


class PlainBar:
    """The progress bar when tqdm is not installed (a bare torch + numpy + h5py machine): a percentage on a
    terminal, nothing when stderr is a file or a pipe."""

    def __init__(self, desc: str, total: int) -> None:
        self.desc, self.total, self.n, self.postfix = desc, max(1, total), 0, ""
        self.live = sys.stderr.isatty()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._show()

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:  # tqdm's signature
        self.postfix = text
        if refresh:
            self._show()

    def _show(self) -> None:
        if self.live:
            print(f"\r{self.desc} {100 * self.n // self.total:3d}% {self.postfix}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def progress_bar(what: str, total: int, unit: str = "it"):
    """A tqdm bar on stderr (a plain one without tqdm); call ``update(n)`` / ``set_postfix_str`` / ``close``."""
    try:
        from tqdm import tqdm
    except ImportError:
        return PlainBar(what, total)

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


DEVICE_HELP = {
    "cpu": "auto, cpu or cuda (default cpu: one sample solves fastest there; auto = CUDA when present)",
    "auto": "auto, cpu or cuda (default auto: CUDA when present, else the CPU)",
}


def add_files(p: argparse.ArgumentParser, device: str = "cpu") -> None:
    """--checkpoint, --dataset, --device (default ``device``), plugin consent and safe mode."""
    from .plugins import add_safe_mode

    p.add_argument("--checkpoint", help=MODEL_HELP)
    p.add_argument("--dataset", help="dataset file (default: the bundled UCI Multiple Features)")
    p.add_argument("--device", default=device, help=DEVICE_HELP[device])
    add_plugin_consent(p)
    add_safe_mode(p)


def add_corrupt_and_solver(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corrupt", action="append", default=[], metavar="MOD=KIND:SEVERITY",
                   help="corrupt a modality, e.g. pix=gaussian:3 (repeatable)")
    defaults = SolverSettings()
    p.add_argument("--solver", choices=SOLVER_NAMES, help=f"{', '.join(SOLVER_NAMES)} (default {defaults.solver})")
    p.add_argument("--max-iter", type=int, help=f"solver step limit (default {defaults.max_iter})")
    p.add_argument("--tol", type=float, help=f"solver tolerance (default {defaults.tol:g})")
