"""DEQ Studio: see inside deep-equilibrium multimodal fusion models.

The public API (a handful of names; everything else is reached through them)::

    import deqstudio
    ck = deqstudio.load_checkpoint("models/uci_deq_udml.pt")         # never runs code from the file
    ds = deqstudio.read_dataset("resources/datasets/uci_mfeat.h5")
    model = ck.adapter                                               # a deqstudio.ModelAdapter
    run = model(ds.arrays(model.modality_names, ds.split("test")[:8]))  # probabilities, trace, z*, UDML
    z, trace = deqstudio.solve(lambda z: 0.5 * z + 1, torch.zeros(1, 3))  # any fixed point, traced

Importing the package is light: torch and h5py load when one of these names is first used.
"""

from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["ModelAdapter", "SolverSettings", "SolverTrace", "__version__", "load_checkpoint", "read_dataset", "solve"]

_PUBLIC = {
    "solve": "deqstudio.core.solvers",
    "SolverTrace": "deqstudio.core.solvers",
    "SolverSettings": "deqstudio.core.solvers",
    "ModelAdapter": "deqstudio.core.adapter",
    "load_checkpoint": "deqstudio.io.checkpoint",
    "read_dataset": "deqstudio.io.dataset",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'deqstudio' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
