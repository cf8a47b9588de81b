"""Command line: ``deqstudio [command] ...``. Heavy imports happen inside each command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deqstudio")
    parser.print_help()
    return 0
