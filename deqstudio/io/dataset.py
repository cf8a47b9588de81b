"""Datasets in the DEQ Studio HDF5 schema (README "Dataset files"), validated on open, written atomically.

```
/                         attrs: format="deqstudio-dataset", version=1, name, description, source, license
/modalities/<name>        float32 (N, ...)  attrs: kind = "vector" | "image", image_shape (H, W) for images
/labels                   int64 (N,)        attrs: class_names
/splits/<train|val|test>  int64 indices into 0..N-1
```
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import atomic

FORMAT = "deqstudio-dataset"
VERSION = 1
SPLITS = ("train", "val", "test")
MAX_ELEMENTS = 200_000_000  # refuse declared shapes above ~800 MB of float32 before reading them


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message names the file and the problem."""

    def __init__(self, message: str) -> None:
        # one line, of a readable length, whatever values from the file the message quotes
        message = " ".join(str(message).split())
        super().__init__(message if len(message) <= 400 else message[:397] + "...")


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
    labels: np.ndarray  # int64 (N,)
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
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
            "class_names": list(self.class_names),
        }


def validate(ds: Dataset) -> None:
    """Raise DatasetError naming the first thing that breaks the schema."""
    where = f"dataset {ds.name!r}"
    if not ds.modalities:
        raise DatasetError(f"{where}: no modalities")
    labels = np.asarray(ds.labels)
    if labels.ndim != 1 or labels.dtype != np.int64:
        raise DatasetError(f"{where}: /labels must be int64 of shape (N,), got {labels.dtype} {labels.shape}")
    n = labels.shape[0]
    if n == 0:
        raise DatasetError(f"{where}: no samples")
    if len(ds.class_names) < 2:
        raise DatasetError(f"{where}: /labels needs class_names with at least 2 classes, got {len(ds.class_names)}")
    if labels.min() < 0 or labels.max() >= len(ds.class_names):
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


def _attr_str(attrs, key: str, default: str = "") -> str:
    value = attrs.get(key, default)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)


def _read_int_array(h5, path: str, what: str, file: str) -> np.ndarray:
    import h5py

    obj = h5.get(path)
    if obj is None:
        raise DatasetError(f"{file}: missing {path}")
    if not isinstance(obj, h5py.Dataset):
        raise DatasetError(f"{file}: {path} must be an array, not a group")
    if obj.dtype.kind not in "iu":
        raise DatasetError(f"{file}: {path} must hold integer {what}, got dtype {obj.dtype}")
    if obj.ndim != 1:
        raise DatasetError(f"{file}: {path} must be one-dimensional, got shape {obj.shape}")
    if obj.shape[0] > MAX_ELEMENTS:
        raise DatasetError(f"{file}: {path} declares {obj.shape[0]} entries, too large to load")
    return np.asarray(obj[()], dtype=np.int64)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_dataset(path: str | os.PathLike) -> Dataset:
    """Open and validate a dataset file; any problem is a DatasetError naming it."""
    import h5py

    path = Path(path)
    label = path.name
    if not path.exists():
        raise DatasetError(f"{label}: no such file")
    if path.is_dir():
        raise DatasetError(f"{label}: is a folder, not a dataset file")
    if path.stat().st_size == 0:
        raise DatasetError(f"{label}: the file is empty (0 bytes)")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{label}: not an HDF5 file or truncated ({exc.__class__.__name__})") from None
    try:
        with h5:
            fmt = _attr_str(h5.attrs, "format")
            if fmt != FORMAT:
                raise DatasetError(f"{label}: not a DEQ Studio dataset (root attribute format={fmt or 'missing'!r}, "
                                   f"expected {FORMAT!r})")
            try:
                version = int(h5.attrs.get("version", -1))
            except (TypeError, ValueError):
                version = -1
            if version != VERSION:
                shown = h5.attrs.get("version")
                shown = shown.item() if isinstance(shown, np.generic) else shown  # 7, not np.int64(7)
                raise DatasetError(f"{label}: dataset format version {shown!r} is not supported (expected {VERSION})")
            group = h5.get("modalities")
            if not isinstance(group, h5py.Group):
                raise DatasetError(f"{label}: missing group /modalities")
            if len(group) == 0:
                raise DatasetError(f"{label}: /modalities is empty")
            labels = _read_int_array(h5, "labels", "class labels", label)
            n = labels.shape[0]
            modalities = {}
            for name in group:
                obj = group[name]
                if not isinstance(obj, h5py.Dataset):
                    raise DatasetError(f"{label}: /modalities/{name} must be an array, not a group")
                if obj.ndim < 2:
                    raise DatasetError(f"{label}: /modalities/{name} must have shape (N, ...), got {obj.shape}")
                if obj.dtype.kind != "f":
                    raise DatasetError(f"{label}: /modalities/{name} must be floating point, got dtype {obj.dtype}")
                if obj.shape[0] != n:
                    raise DatasetError(f"{label}: /modalities/{name} has {obj.shape[0]} rows but /labels has {n}")
                if int(np.prod(obj.shape, dtype=np.float64)) > MAX_ELEMENTS:
                    raise DatasetError(f"{label}: /modalities/{name} declares shape {obj.shape}, too large to load")
                kind = _attr_str(obj.attrs, "kind", "vector")
                shape_attr = obj.attrs.get("image_shape")
                image_shape = None
                if shape_attr is not None:
                    try:
                        image_shape = tuple(int(v) for v in np.asarray(shape_attr).reshape(-1))
                    except (TypeError, ValueError, OverflowError):
                        raise DatasetError(f"{label}: /modalities/{name} has an unreadable image_shape") from None
                elif kind == "image" and obj.ndim == 3:
                    image_shape = (int(obj.shape[1]), int(obj.shape[2]))
                raw = np.asarray(obj[()])
                with np.errstate(over="ignore", invalid="ignore"):
                    data = raw.astype(np.float32).reshape(n, int(np.prod(obj.shape[1:])))
                if raw.dtype.itemsize > 4 and np.isfinite(raw).all() and not np.isfinite(data).all():
                    raise DatasetError(f"{label}: /modalities/{name} has values beyond the float32 range (about 3.4e38)")
                modalities[name] = Modality(name, kind, data, image_shape)
            names_attr = h5["labels"].attrs.get("class_names")
            if names_attr is None:
                raise DatasetError(f"{label}: /labels has no class_names attribute")
            class_names = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(names_attr).reshape(-1))
            splits_group = h5.get("splits")
            if not isinstance(splits_group, h5py.Group):
                raise DatasetError(f"{label}: missing group /splits")
            splits = {s: _read_int_array(h5, f"splits/{s}", "sample indices", label) for s in splits_group}
            attrs = {k: _attr_str(h5.attrs, k) for k in ("name", "description", "source", "license")}
    except DatasetError:
        raise
    except MemoryError:
        raise DatasetError(f"{label}: too large to load into memory") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, OverflowError) as exc:
        raise DatasetError(f"{label}: unreadable HDF5 content ({exc})") from None
    try:
        ds = Dataset(
            name=attrs["name"] or path.stem, modalities=modalities, labels=labels, class_names=class_names,
            splits=splits, description=attrs["description"], source=attrs["source"], license=attrs["license"],
            path=path, sha256=file_sha256(path),
        )
    except DatasetError as exc:
        raise DatasetError(f"{label}: {str(exc).split(': ', 1)[-1]}") from None
    return ds


def write_dataset(ds: Dataset, path: str | os.PathLike, compression: str | None = "gzip") -> Path:
    """Write atomically (temporary file in the same folder, then rename); returns the path."""
    import h5py

    validate(ds)
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DatasetError(f"{path}: folder {folder} does not exist")
    with atomic.atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update({"format": FORMAT, "version": VERSION, "name": ds.name, "description": ds.description,
                         "source": ds.source, "license": ds.license})
        group = h5.create_group("modalities", track_order=True)
        opts = {"compression": compression, "compression_opts": 9} if compression == "gzip" else {}
        for name, m in ds.modalities.items():
            arr = m.data.reshape(len(ds), *m.image_shape) if m.kind == "image" else m.data
            dset = group.create_dataset(name, data=arr.astype(np.float32), shuffle=bool(opts), track_times=False, **opts)
            dset.attrs["kind"] = m.kind
            if m.image_shape:
                dset.attrs["image_shape"] = np.asarray(m.image_shape, dtype=np.int64)
        labels = h5.create_dataset("labels", data=ds.labels.astype(np.int64), track_times=False, **opts)
        labels.attrs["class_names"] = np.asarray(ds.class_names, dtype=h5py.string_dtype())
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
