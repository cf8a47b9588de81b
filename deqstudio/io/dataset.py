"""Datasets in the DEQ Studio HDF5 schema (README "Dataset files"), validated on open, written atomically.

```
/                         attrs: format="deqstudio-dataset", version=1, name, description, source, license
/modalities/<name>        float32 (N, ...)  attrs: kind = "vector" | "image", image_shape (H, W) for images
/labels                   int64 (N,)        attrs: class_names
                          or int64 (N, C) of 0/1, attrs: class_names, task="multilabel" (a label set per sample)
/splits/<train|val|test>  int64 indices into 0..N-1
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from . import atomic, hdf5

FORMAT = "deqstudio-dataset"
VERSION = 1
SPLITS = ("train", "val", "test")
MULTILABEL = "multilabel"


@dataclass
class Modality:
    name: str
    kind: str  # "vector" | "image"
    data: np.ndarray  # float32 (N, D), images flattened row-major
    image_shape: tuple[int, int] | None = None

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])


@dataclass
class Dataset:
    name: str
    modalities: dict[str, Modality]
    labels: np.ndarray  # int64 (N,); or (N, C) of 0/1 for a multilabel dataset
    class_names: tuple[str, ...]
    splits: dict[str, np.ndarray]
    description: str = ""
    source: str = ""
    license: str = ""
    path: Path | None = None
    sha256: str = ""
    extra_attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(self.modalities)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def task(self) -> str:
        """"multilabel" when each sample has a label set ((N, C) labels), otherwise "multiclass"."""
        return MULTILABEL if np.asarray(self.labels).ndim == 2 else "multiclass"

    def split(self, name: str) -> np.ndarray:
        if name not in self.splits:
            raise DatasetError(f"dataset {self.name!r} has no split {name!r}; it has {', '.join(self.splits)}")
        return self.splits[name]

    def arrays(self, names, indices=None) -> list[np.ndarray]:
        """(N, D) float32 features of the named modalities, optionally for some rows."""
        missing = [n for n in names if n not in self.modalities]
        if missing:
            raise DatasetError(f"dataset {self.name!r} has no modality {missing[0]!r}; it has {', '.join(self.modalities)}")
        return [self.modalities[n].data if indices is None else self.modalities[n].data[indices] for n in names]

    def identity(self) -> dict:
        """What a checkpoint records about the data it was trained on."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "path": str(self.path) if self.path else "",
            "modalities": {n: {"kind": m.kind, "dim": m.dim, "image_shape": list(m.image_shape) if m.image_shape else None}
                           for n, m in self.modalities.items()},
            "num_samples": len(self),
            "splits": {k: len(v) for k, v in self.splits.items()},
            "class_names": list(self.class_names),
            "task": self.task,
        }


def validate(ds: Dataset) -> None:
    """Raise DatasetError naming the first thing that breaks the schema."""
    where = f"dataset {ds.name!r}"
    if not ds.modalities:
        raise DatasetError(f"{where}: no modalities")
    labels = np.asarray(ds.labels)
    if labels.ndim not in (1, 2) or labels.dtype != np.int64:
        raise DatasetError(f"{where}: /labels must be int64 of shape (N,) (or (N, C) of 0/1 for multilabel), "
                           f"got {labels.dtype} {labels.shape}")
    n = labels.shape[0]
    if n == 0:
        raise DatasetError(f"{where}: no samples")
    if len(ds.class_names) < 2:
        raise DatasetError(f"{where}: /labels needs class_names with at least 2 classes, got {len(ds.class_names)}")
    if labels.ndim == 2:
        if labels.shape[1] != len(ds.class_names):
            raise DatasetError(f"{where}: multilabel /labels has {labels.shape[1]} columns for "
                               f"{len(ds.class_names)} class names")
        if labels.size and (labels.min() < 0 or labels.max() > 1):
            raise DatasetError(f"{where}: multilabel /labels must hold 0 or 1, found {labels.min()}..{labels.max()}")
    elif labels.min() < 0 or labels.max() >= len(ds.class_names):
        raise DatasetError(f"{where}: labels must lie in 0..{len(ds.class_names) - 1} (one per class name), "
                           f"found {labels.min()}..{labels.max()}")
    for name, m in ds.modalities.items():
        if m.kind not in ("vector", "image"):
            raise DatasetError(f"{where}: modality {name!r} has kind {m.kind!r}; expected 'vector' or 'image'")
        if m.data.dtype != np.float32 or m.data.ndim != 2:
            raise DatasetError(f"{where}: modality {name!r} must be float32 (N, D) in memory, got {m.data.dtype} {m.data.shape}")
        if m.data.shape[0] != n:
            raise DatasetError(f"{where}: modality {name!r} has {m.data.shape[0]} rows but /labels has {n}")
        if m.data.shape[1] == 0:
            raise DatasetError(f"{where}: modality {name!r} has no features")
        if not np.isfinite(m.data).all():
            bad = int((~np.isfinite(m.data)).any(axis=1).sum())
            raise DatasetError(f"{where}: modality {name!r} has non-finite values (NaN or Inf) in {bad} samples")
        if m.kind == "image":
            shape = m.image_shape
            if shape is None or len(shape) != 2 or int(shape[0]) * int(shape[1]) != m.data.shape[1] or min(shape) < 1:
                raise DatasetError(f"{where}: image modality {name!r} needs image_shape (H, W) with H*W = "
                                   f"{m.data.shape[1]}, got {shape!r}")
    if not ds.splits:
        raise DatasetError(f"{where}: no splits; expected /splits/train, /splits/val, /splits/test")
    for split in SPLITS:
        if split not in ds.splits:
            raise DatasetError(f"{where}: missing split /splits/{split}")
    for split, idx in ds.splits.items():
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.dtype != np.int64:
            raise DatasetError(f"{where}: split {split!r} must be int64 indices of shape (K,), got {idx.dtype} {idx.shape}")
        if idx.size == 0:
            raise DatasetError(f"{where}: split {split!r} is empty")
        if idx.min() < 0 or idx.max() >= n:
            raise DatasetError(f"{where}: split {split!r} has indices outside 0..{n - 1}")


def write_dataset(ds: Dataset, path: str | os.PathLike, compression: str | None = "gzip") -> Path:
    """Write atomically (temporary file in the same folder, then rename); returns the path."""
    import h5py

    validate(ds)
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DatasetError(f"{path}: folder {folder} does not exist")
    with atomic.atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        hdf5.set_attrs(h5, {"format": FORMAT, "version": VERSION, "name": ds.name, "description": ds.description,
                            "source": ds.source, "license": ds.license})
        group = h5.create_group("modalities", track_order=True)
        opts = {"compression": compression, "compression_opts": 9} if compression == "gzip" else {}
        for name, m in ds.modalities.items():
            arr = m.data.reshape(len(ds), *m.image_shape) if m.kind == "image" else m.data
            dset = group.create_dataset(name, data=arr.astype(np.float32), shuffle=bool(opts), track_times=False, **opts)
            hdf5.set_attrs(dset, {"kind": m.kind, **({"image_shape": list(m.image_shape)} if m.image_shape else {})})
        labels = h5.create_dataset("labels", data=ds.labels.astype(np.int64), track_times=False, **opts)
        hdf5.set_attrs(labels, {"class_names": list(ds.class_names),
                                **({"task": MULTILABEL} if ds.task == MULTILABEL else {})})
        splits = h5.create_group("splits")
        for split, idx in ds.splits.items():
            splits.create_dataset(split, data=np.asarray(idx, dtype=np.int64), track_times=False)
    return path


def stratified_splits(labels: np.ndarray, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> dict[str, np.ndarray]:
    """Class-stratified train/val/test indices, sorted, reproducible for a seed."""
    rng = np.random.default_rng(seed)
    parts = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train : n_train + n_val])
        parts["test"].append(idx[n_train + n_val :])
    return {s: np.sort(np.concatenate(v)).astype(np.int64) for s, v in parts.items()}


from .dataset_reader import read_dataset  # noqa: E402, F401 — reading lives in its own module; imported from here too
