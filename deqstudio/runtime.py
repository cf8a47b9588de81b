"""What the entry points (the command line, the studio) set up in their own process before torch loads.

A library import never changes its host process; ``deqstudio.cli.main`` calls ``prepare_process`` first.
"""

from __future__ import annotations

import os


def prepare_process() -> None:
    """Idle OpenMP threads sleep instead of spinning (unless the user chose otherwise).

    The studio runs torch on a worker thread (and analyses on another) beside the GUI thread; with spinning
    threads, torch work on more threads than there are cores ran 35× slower (a 17 s training took 600 s with a
    second process beside it). OpenMP reads the setting once, when torch loads.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
