"""``deqstudio gui`` (the default command): the studio window, or a screenshot of it."""

from __future__ import annotations

import argparse
import os

from .common import MODEL_HELP, add_plugin_consent, fail, missing_gui_extra
from .plugins import add_safe_mode


def add_parsers(sub) -> None:
    gui = sub.add_parser("gui", help="open the studio (the default command)")
    gui.add_argument("--checkpoint", help=MODEL_HELP)
    gui.add_argument("--dataset", help="dataset file (default: the bundled UCI Multiple Features)")
    gui.add_argument("--session", help="a saved session file")
    gui.add_argument("--screenshot", metavar="OUT.png", help="wait for the solve, save a screenshot of the window, exit")
    gui.add_argument("--sample", type=int, help="dataset index of the sample to show")
    gui.add_argument("--corrupt", action="append", default=[], metavar="MOD=KIND:SEVERITY",
                     help="corrupt a modality, e.g. pix=gaussian:3 (repeatable)")
    gui.add_argument("--step", type=int, help="solver step the scrubber shows (1-based; default the last)")
    add_plugin_consent(gui)
    add_safe_mode(gui)
    gui.set_defaults(run=run)


def _first_solve_helper(args: argparse.Namespace):
    """The start-up helper that solves the first sample while the window is built (``session.first_solve``),
    started before anything else is imported; None where the window waits for settings of its own (a session, a
    sample or corruption, a screenshot) or the model is not a file."""
    no_display = not any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
    if args.session or args.screenshot or args.sample is not None or args.corrupt or no_display:
        return None  # (without a display the window refuses to start)
    from ..paths import default_checkpoint, default_dataset
    from ..session import first_solve

    checkpoint, dataset = args.checkpoint or default_checkpoint(), args.dataset or default_dataset()
    return first_solve.FirstSolve(checkpoint, dataset) if first_solve.applies(checkpoint) else None


def run(args: argparse.Namespace) -> int:
    from ..io.guard import regular_file

    if (problem := missing_gui_extra("gui")) is not None:
        return fail(problem)
    for label, path in (("checkpoint", args.checkpoint), ("dataset", args.dataset), ("session", args.session)):
        if path is None or (label == "checkpoint" and (path.startswith("plugin:") or os.path.isdir(path))):
            continue
        try:
            regular_file(path)  # a FIFO or a device is refused here, at once, never opened
        except ValueError as exc:
            return fail(f"{label} {path}: {exc}")
    first = _first_solve_helper(args)
    try:
        return _run(args, first)
    finally:
        if first is not None:
            first.cancel()  # done with it (a no-op once it has answered)


def _run(args: argparse.Namespace, first) -> int:
    from ..core.corruptions import Corruption
    from ..errors import DeqStudioError
    from ..io.session_file import read_session

    for text in args.corrupt:
        try:
            Corruption.parse(text)
        except ValueError as exc:
            return fail(str(exc))
    if args.session is not None:
        try:
            read_session(args.session)  # checked before any window opens: one line, exit 2
        except DeqStudioError as exc:
            return fail(str(exc))
    from ..gui.app import run_gui

    return run_gui(checkpoint=args.checkpoint, dataset=args.dataset, session_path=args.session,
                   screenshot=args.screenshot, sample=args.sample, corruptions=tuple(args.corrupt), step=args.step,
                   allow_plugins=tuple(args.allow_plugin), first=first)
