"""Command line: ``deqstudio [command] ...``. Heavy imports (torch, Qt) happen inside each command.

Each command lives in a module of this package with ``add_parser(sub)`` and ``run(args)``; ``main`` parses,
prepares the process (``deqstudio.runtime``) and runs the command. Every problem a user can act on is one
``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from .. import __version__
from ..runtime import prepare_process
from . import bench, headless, imports, model_files, plugins, studio
from .common import fail

MODULES = (studio, headless, model_files, imports, plugins, bench)
_CHOICE = re.compile(r"argument (?:--)?([\w-]+).*: invalid choice: '?([^']*)'? \(choose from (.*)\)")


class UsageProblem(Exception):
    """A command line argparse cannot read; its message is the one line the command prints."""


class Parser(argparse.ArgumentParser):
    """argparse, with its complaints as one ``error:`` line (no usage block) and choices said in words."""

    def error(self, message: str):
        found = _CHOICE.match(message)
        if found:
            name, value, choices = found.groups()
            choices = ", ".join(c.strip(" '") for c in choices.split(","))
            message = f"unknown {name.replace('-', ' ')} {value!r}; choose one of {choices}"
        raise UsageProblem(f"{message} (see: {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="deqstudio", description="See inside deep-equilibrium multimodal fusion models.")
    parser.add_argument("--version", action="version", version=f"deqstudio {__version__}")
    plugins.add_safe_mode(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in MODULES:
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    prepare_process()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(["gui"])
    except UsageProblem as exc:
        return fail(str(exc))
    if getattr(args, "safe_mode", False):
        from ..io.plugins import SAFE_MODE_ENV

        os.environ[SAFE_MODE_ENV] = "1"  # this process is the command's own: the studio and every loader see it
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
