"""What it takes to reproduce an export: files with their hashes, sample, corruptions, solver, versions."""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from importlib import metadata

from .. import __version__

PACKAGES = ("torch", "numpy", "h5py", "PySide6-Essentials", "pyqtgraph", "qasync")
PROVENANCE_FORMAT = "deqstudio-provenance"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "deqstudio": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def checkpoint_record(checkpoint) -> dict:
    """The open model file: where it is, its hash, what kind of model it holds, where it came from."""
    if checkpoint is None:
        return {}
    adapter = checkpoint.adapter
    record = {
        "path": str(checkpoint.path) if checkpoint.path else "",
        "sha256": checkpoint.sha256 or "",
        "fusion": adapter.name,
        "modalities": list(adapter.modality_names),
        "source": adapter.source.kind,
        "test_accuracy": (getattr(checkpoint, "metrics", None) or {}).get("test_accuracy"),
    }
    if adapter.source.details:  # e.g. a package's programs and how Jacobian-vector products are made
        record["source_details"] = dict(adapter.source.details)
    config = getattr(checkpoint, "config", None)
    if config is not None:
        record["hidden"] = config.hidden
    imported = getattr(checkpoint, "imported", None)
    if imported:  # where an imported model came from: the official file, its hash, what was detected in it
        record["imported"] = {k: imported[k] for k in ("source_file", "source_sha256", "prefix", "variant", "head",
                                                        "mixing", "modality_order", "inputs", "encoders", "task")
                              if k in imported}
    note = getattr(adapter, "input_note", "")
    if note:
        record["input_note"] = note
    return record


def dataset_record(dataset) -> dict:
    if dataset is None:
        return {}
    return {"name": dataset.name, "path": str(dataset.path) if dataset.path else "", "sha256": dataset.sha256,
            "samples": len(dataset), "classes": list(dataset.class_names)}


def provenance(checkpoint=None, dataset=None, result=None, *, what: str = "", analyses=(), device: str = "") -> dict:
    """A JSON-ready record; ``result`` is a SolveResult (sample, corruptions, solver) or None."""
    record = {
        "format": PROVENANCE_FORMAT,
        "version": 1,
        "what": what,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["deqstudio", *sys.argv[1:]]) if sys.argv and "deqstudio" in sys.argv[0] else "",
        "checkpoint": checkpoint_record(checkpoint),
        "dataset": dataset_record(dataset),
        "packages": package_versions(),
        "platform": platform.platform(),
    }
    if result is not None:
        req = result.request
        record.update({
            "sample": req.sample,
            "label": result.label_text() if result.class_names else result.label,
            "corruptions": req.corruption_specs(),
            "corruption_settings": {m: {"kind": c.kind, "severity": c.severity, "seed": c.seed}
                                    for m, c in req.corruptions if c.active},
            "solver": req.solver.to_dict(),
            "device": result.device,
            "device_asked": req.device,
        })
    elif device:
        record["device"] = device
    if analyses:
        record["analyses"] = list(analyses)
    return record
