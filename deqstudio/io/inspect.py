"""``deqstudio inspect``: a summary of a checkpoint, a DEQ package or a dataset file, as a dict and as text."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, DatasetError, InspectError
from . import guard

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"


def describe(path: str | Path, check: bool = False) -> dict:
    """Summarise the file; raises InspectError with a one-line reason when it is not usable.

    Every string in the summary (names, descriptions, metrics from the file) is escaped with
    ``guard.printable``: printed as text or as JSON, nothing from a file reaches the terminal raw.

    A big dataset file is summarised from its metadata, labels and splits: its value ranges and sha256 come from its
    statistics cache when a pass over it already ran (``Dataset.statistics``), else they are ``None``; ``check``
    runs that pass (every value read and checked, then cached). A checkpoint's torch is imported only for one.
    """
    from .dataset import read_dataset
    from .package import is_package, open_package

    path = Path(path)
    if path.is_dir() or is_package(path):
        try:
            return guard.printable_data(_package_summary(open_package(path)))
        except CheckpointError as exc:
            raise InspectError(str(exc)) from None
    try:
        fh = guard.open_regular(path)
    except ValueError as exc:
        shown = path.name if path.name and "no such file" not in str(exc) else path
        if "folder" in str(exc):
            raise InspectError(f"{path}: is a folder, not a checkpoint or dataset file") from None
        raise InspectError(f"{shown}: {exc}") from None
    try:
        with fh:
            head = fh.read(8)
    except OSError as exc:
        raise InspectError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        if head.startswith(HDF5_MAGIC):
            ds = read_dataset(path)
            if check:
                ds.statistics()
            return guard.printable_data(_dataset_summary(ds))
        if head.startswith(ZIP_MAGIC) or path.suffix in (".pt", ".pth", ".ckpt"):
            from .checkpoint import load_checkpoint

            return guard.printable_data(_checkpoint_summary(load_checkpoint(path)))
    except (CheckpointError, DatasetError) as exc:
        raise InspectError(str(exc)) from None
    if not head:
        raise InspectError(f"{path.name}: the file is empty (0 bytes)")
    raise InspectError(f"{path.name}: neither a DEQ Studio checkpoint (torch zip), a DEQ package nor a dataset (HDF5)")


def _dataset_summary(ds) -> dict:
    from .dataset_stats import known_sha256

    stats = ds.statistics() if ds.statistics_known else None
    sha = ds.sha256 if not ds.lazy else (stats.sha256 if stats is not None and stats.sha256 else None) or known_sha256(
        ds.stats_file)
    if ds.task == "multilabel":  # samples carrying each label
        counts = {name: int(n) for name, n in zip(ds.class_names, ds.labels.sum(axis=0))}
    else:
        counts = {ds.class_names[c]: int(n) for c, n in zip(*_unique(ds.labels))}
    return {
        "type": "dataset",
        "path": str(ds.path),
        "sha256": sha,
        "name": ds.name,
        "description": ds.description,
        "source": ds.source,
        "license": ds.license,
        "num_samples": len(ds),
        "class_names": list(ds.class_names),
        "class_counts": counts,
        "task": ds.task,
        "splits": {k: len(v) for k, v in ds.splits.items()},
        "read": "on demand" if ds.lazy else "whole",
        "values_checked": stats is not None,
        "modalities": {
            n: {"kind": m.kind, "dim": m.dim, "image_shape": list(m.image_shape) if m.image_shape else None,
                **({k: getattr(stats.modalities[n], a) if stats is not None else None
                    for k, a in (("min", "minimum"), ("max", "maximum"), ("mean", "mean"))})}
            for n, m in ds.modalities.items()
        },
    }


def _unique(labels):
    import numpy as np

    return np.unique(labels, return_counts=True)


def _checkpoint_summary(ck) -> dict:
    params = sum(p.numel() for p in ck.model.parameters())
    training = dict(ck.training)
    training.pop("history", None)
    return {
        "type": "checkpoint",
        "path": str(ck.path),
        "sha256": ck.sha256,
        "config": ck.config.to_dict(),
        "parameters": int(params),
        "metrics": ck.metrics,
        "dependency": ck.dependency,
        "dataset": ck.dataset,
        "training": training,
        "imported": ck.imported,
    }


def _package_summary(package) -> dict:
    c, adapter = package.contract, package.adapter
    caps = adapter.capabilities
    return {
        "type": "package",
        "path": str(package.path),
        "sha256": package.sha256,
        "name": c.name,
        "description": c.description,
        "format": c.raw.get("format"),
        "version": c.raw.get("version"),
        "task": c.task,
        "class_names": list(c.class_names),
        "modalities": [{"name": m.name, "size": m.size, "kind": m.kind,
                        "image_shape": list(m.image_shape) if m.image_shape else None} for m in c.modalities],
        "features": [{"name": f.name, "size": f.size} for f in c.features] if "encode" in c.programs else None,
        "blocks": [{"name": b.name, "size": b.size, "shape": list(b.shape) if b.shape else None} for b in c.blocks],
        "fused_block": c.fused_block,
        "solver": c.solver,
        "programs": {n: {"file": p.file, "inputs": list(p.inputs), "outputs": list(p.outputs)}
                     for n, p in c.programs.items()},
        "capabilities": {k: bool(getattr(caps, k)) for k in ("solver", "gates", "unimodal", "noise", "dependency")},
        "jvp": adapter.jvp_method,
        "dependency": c.dependency,
        "metrics": package.metrics,
        "dataset": package.dataset,
        "trust": adapter.source.trust,
    }


def _format_package(info: dict) -> list[str]:
    lines = [f"DEQ package {info['name']} ({info['path']})"]
    if info["description"]:
        lines.append(f"  {info['description']}")
    lines.append(f"  {info['task']}, {len(info['class_names'])} classes: {', '.join(info['class_names'][:12])}"
                 + (" ..." if len(info["class_names"]) > 12 else ""))
    for m in info["modalities"]:
        shape = f" image {m['image_shape'][0]}x{m['image_shape'][1]}" if m["image_shape"] else ""
        lines.append(f"  modality {m['name']:<10} {m['kind']:<6} {m['size']:>6} features{shape}")
    if info["features"]:
        lines.append("  features (encode's outputs): " + ", ".join(f"{f['name']}({f['size']})" for f in info["features"]))
    blocks = ", ".join(f"{b['name']}({'x'.join(map(str, b['shape'])) if b['shape'] else b['size']})"
                       + (" fused" if b["name"] == info["fused_block"] else "") for b in info["blocks"])
    lines.append(f"  state blocks: {blocks}")
    s = info["solver"]
    lines.append(f"  solver: {s['solver']}, max_iter {s['max_iter']}, tol {s['tol']:g} ({s['stop_mode']})")
    for name, p in info["programs"].items():
        lines.append(f"  program {name:<9} {p['file']}: ({', '.join(p['inputs'])}) -> ({', '.join(p['outputs'])})")
    lines.append(f"  Jacobian-vector products: {info['jvp']}")
    for key, value in info["metrics"].items():
        lines.append(f"  {key:<28} {value:.4f}" if isinstance(value, float) else f"  {key:<28} {value}")
    lines.append(f"  trust: {info['trust']}")
    return lines


def format_description(info: dict) -> str:
    lines = []
    if info["type"] == "package":
        lines += _format_package(info)
    elif info["type"] == "dataset":
        lines.append(f"dataset {info['name']} ({info['path']})")
        lines.append(f"  {info['num_samples']} samples, {len(info['class_names'])} "
                     f"{'labels (multilabel)' if info.get('task') == 'multilabel' else 'classes'}; splits "
                     + ", ".join(f"{k} {v}" for k, v in info["splits"].items()))
        for name, m in info["modalities"].items():
            shape = f" image {m['image_shape'][0]}x{m['image_shape'][1]}" if m["image_shape"] else ""
            values = f"range {m['min']:.3g}..{m['max']:.3g}" if m["min"] is not None else "range not read yet"
            lines.append(f"  {name:<10} {m['kind']:<6} {m['dim']:>5} features{shape}  {values}")
        if not info.get("values_checked", True):
            lines.append("  features read on demand; values not all read yet (`deqstudio inspect --check` reads and "
                         "checks every value, and caches ranges and sha256)")
        if info["source"]:
            lines.append(f"  source: {info['source']}")
        if info["license"]:
            lines.append(f"  licence: {info['license']}")
    else:
        cfg = info["config"]
        mods = ", ".join(f"{m['name']}({m['input_dim']})" for m in cfg["modalities"])
        lines.append(f"checkpoint {info['path']}")
        lines.append(f"  fusion {cfg['fusion']} (ablation {cfg['ablation']}), hidden {cfg['hidden']}, "
                     f"{cfg['num_classes']} classes, {info['parameters']:,} parameters")
        lines.append(f"  modalities: {mods}")
        lines.append(f"  solver: {cfg['solver']}, max_iter {cfg['max_iter']}, tol {cfg['tol']:g} ({cfg['stop_mode']})")
        imported = info.get("imported") or {}
        if imported:
            lines.append(f"  imported from {Path(str(imported.get('source_file', '?'))).name} (sha256 "
                         f"{str(imported.get('source_sha256', ''))[:12]}): block under {imported.get('prefix')!r}, "
                         f"variant {imported.get('variant')}, head {imported.get('head')}, {cfg.get('task', 'multiclass')}")
            lines.append(f"  inputs: {imported.get('inputs')} ({', '.join(map(str, imported.get('modality_order', [])))})"
                         + ("; corruptions act on imported features" if imported.get("inputs") == "features" else ""))
        ds = info["dataset"]
        if ds:
            lines.append(f"  {'data' if imported else 'trained on'}: {ds.get('name', '?')} (sha256 "
                         f"{str(ds.get('sha256', ''))[:12]})")
        for key, value in info["metrics"].items():
            lines.append(f"  {key:<28} {value:.4f}" if isinstance(value, float) else f"  {key:<28} {value}")
        alpha = info["dependency"].get("logit_magnitude")
        if alpha:
            lines.append("  dependency α (logit magnitude): " + ", ".join(f"{k} {v:.3g}" for k, v in alpha.items()))
        if info["training"].get("command"):
            lines.append(f"  command: {info['training']['command']}")
    return "\n".join(lines)
