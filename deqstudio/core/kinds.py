"""The names models are built from, in one torch-free place (the command line offers them as choices)."""

from __future__ import annotations

FUSIONS = ("deq", "deq-udml", "concat", "sum", "weighted-sum", "late")
DEQ_FUSIONS = ("deq", "deq-udml")
ABLATIONS = ("full", "no-ftheta", "no-ffuse", "no-gate", "no-deq", "unrolled")
BACKWARD_MODES = ("implicit", "phantom")
MODALITY_KINDS = ("vector", "image")
TASKS = ("multiclass", "multilabel")
GROUPS = 4  # GroupNorm groups per block of the fusion: the width must be a multiple of it
