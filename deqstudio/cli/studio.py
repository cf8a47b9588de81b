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


def run(args: argparse.Namespace) -> int:
    from ..core.corruptions import Corruption
    from ..errors import DeqStudioError
    from ..io.guard import regular_file
    from ..io.session_file import read_session

    if (problem := missing_gui_extra("gui")) is not None:
        return fail(problem)
    for text in args.corrupt:
        try:
            Corruption.parse(text)
        except ValueError as exc:
            return fail(str(exc))
    for label, path in (("checkpoint", args.checkpoint), ("dataset", args.dataset), ("session", args.session)):
        if path is None or (label == "checkpoint" and (path.startswith("plugin:") or os.path.isdir(path))):
            continue
        try:
            regular_file(path)  # a FIFO or a device is refused here, at once, never opened
        except ValueError as exc:
            return fail(f"{label} {path}: {exc}")
    if args.session is not None:
        try:
            read_session(args.session)  # checked before any window opens: one line, exit 2
        except DeqStudioError as exc:
            return fail(str(exc))
    from ..gui.app import run_gui

    return run_gui(checkpoint=args.checkpoint, dataset=args.dataset, session_path=args.session,
                   screenshot=args.screenshot, sample=args.sample, corruptions=tuple(args.corrupt), step=args.step,
                   allow_plugins=tuple(args.allow_plugin))
