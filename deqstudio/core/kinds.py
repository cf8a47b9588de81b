"""The names models are built from, in one torch-free place (the command line offers them as choices)."""

from __future__ import annotations

FUSIONS = ("deq", "deq-udml", "concat", "sum", "weighted-sum", "late")
DEQ_FUSIONS = ("deq", "deq-udml")
ABLATIONS = ("full", "no-ftheta", "no-ffuse", "no-gate", "no-deq", "unrolled")
BACKWARD_MODES = ("implicit", "phantom")
MODALITY_KINDS = ("vector", "image")
TASKS = ("multiclass", "multilabel")
# Encoders: "native" (DEQ Studio's MLP / CNN trunk and a projection, on standardised inputs); the imported
# models' "identity" (the dataset holds the features the fusion receives), "mmdynamic" (the BRCA experiment's
# per-omics feature-information encoder with its TCP confidence and classifier) and "maxout" (the MM-IMDB
# experiment's MaxOut MLP).
ENCODERS = ("native", "identity", "mmdynamic", "maxout")
GROUPS = 4  # GroupNorm groups per block of the fusion: the width must be a multiple of it
