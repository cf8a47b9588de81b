"""DEQ Studio: see inside deep-equilibrium multimodal fusion models."""

import os

# Idle OpenMP threads sleep instead of spinning. The studio runs torch on a worker thread (and analyses on
# another) beside the GUI thread; with spinning threads, torch work on more threads than there are cores
# slowed by 35x (a 17 s training took 600 s with a second process beside it). Read once, when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
