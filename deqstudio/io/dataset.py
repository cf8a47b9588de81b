"""Datasets in the DEQ Studio HDF5 schema (README "Dataset files"), validated on open, written atomically.

```
/                         attrs: format="deqstudio-dataset", version=1, name, description, source, license
/modalities/<name>        float32 (N, ...)  attrs: kind = "vector" | "image", image_shape (H, W) for images
/labels                   int64 (N,)        attrs: class_names
/splits/<train|val|test>  int64 indices into 0..N-1
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from . import atomic, guard, hdf5
from .guard import file_sha256

FORMAT = "deqstudio-dataset"
VERSION = 1
SPLITS = ("train", "val", "test")
MAX_ELEMENTS = 200_000_000  # refuse declared shapes above ~800 MB of float32 before reading them
# Arrays may declare at most MAX_EXPANSION times the file's size in values (or EXPANSION_FLOOR bytes, for
# small files): gzip of real features saves 1-3x (the bundled UCI file declares 2.5x its size), while a
# compression or fill-value bomb declares gigabytes in kilobytes. Checked before any value is read.
MAX_EXPANSION = 64
EXPANSION_FLOOR = 8 * 1024**2
READ_BLOCK = 16 * 1024**2  # bytes per read while loading an array
_FILTERS = (1, 2, 3, 32000)  # HDF5 filters read: deflate (gzip), shuffle, fletcher32, lzf


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
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    return guard.decode(value.item() if isinstance(value, np.generic) and not isinstance(value, np.bytes_) else value)


class _Reader:
    """Reads the members of one open file, trusting nothing in it.

    Only hard links are followed (an external link would open another file, a soft link can point
    anywhere); every array's storage is checked (contiguous, chunked or compact in this file, known
    filters, no external raw storage, not virtual) before any value is read; the bytes all arrays
    declare are checked against the file's size before the first value is read; values are read in
    blocks.
    """

    def __init__(self, h5, label: str, file_size: int) -> None:
        self.h5, self.label, self.file_size = h5, label, file_size
        self.declared = 0  # bytes the arrays to read will take in memory

    def fail(self, problem: str) -> DatasetError:
        return DatasetError(f"{self.label}: {problem}")

    def member(self, parent, name: str, where: str):
        """The object at ``parent[name]``, reached through a hard link only; None if absent."""
        import h5py

        link = parent.get(name, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            raise self.fail(f"{where} is an external link to {guard.printable(link.filename)!r}; a DEQ Studio "
                            "dataset is self-contained and links to other files are refused")
        if not isinstance(link, h5py.HardLink):
            raise self.fail(f"{where} is a soft link; a DEQ Studio dataset holds its arrays directly")
        return parent[name]

    def names(self, group, where: str) -> list[str]:
        """Member names of a group, which must be UTF-8 (never decoded by guesswork)."""
        out = []
        for raw in group.id.__iter__():
            raw = bytes(raw) if not isinstance(raw, str) else raw.encode("utf-8", "surrogateescape")
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise self.fail(f"{where} holds a member whose name is not valid UTF-8 "
                                f"({guard.printable(raw.decode('utf-8', 'backslashreplace'))})") from None
        return out

    def array(self, obj, where: str, widened_itemsize: int):
        """Check an array's storage and count what reading it will take; values are not read here."""
        import h5py

        if not isinstance(obj, h5py.Dataset):
            raise self.fail(f"{where} must be an array, not a group")
        dcpl = obj.id.get_create_plist()
        layout = dcpl.get_layout()
        if layout == h5py.h5d.VIRTUAL:
            raise self.fail(f"{where} is a virtual dataset (its values are mapped from other datasets or files); "
                            "a DEQ Studio dataset is self-contained")
        if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED, h5py.h5d.COMPACT):
            raise self.fail(f"{where} has an unknown storage layout ({layout})")
        if dcpl.get_external_count() > 0:
            raise self.fail(f"{where} keeps its values in another file (external storage); "
                            "a DEQ Studio dataset is self-contained")
        for i in range(dcpl.get_nfilters()):
            code = dcpl.get_filter(i)[0]
            if code not in _FILTERS:
                raise self.fail(f"{where} is compressed with a filter this app does not read (HDF5 filter {code}); "
                                "use gzip")
        self.declared += int(np.prod(obj.shape, dtype=np.float64)) * max(obj.dtype.itemsize, widened_itemsize)
        return obj

    def check_budget(self) -> None:
        """Refuse compression and fill-value bombs: arrays declaring far more bytes than the file holds."""
        budget = max(MAX_EXPANSION * self.file_size, EXPANSION_FLOOR)
        if self.declared > budget:
            raise self.fail(f"its arrays declare {_size(self.declared)} of values in a file of "
                            f"{_size(self.file_size)} (more than {MAX_EXPANSION} times its size: a compression "
                            "or fill-value bomb, or arrays never written); refused before reading")

    def int_array(self, path: str, what: str):
        """Checks for a 1-D integer array; its values are read by ``read_ints``."""
        obj = self.member(self.h5, path, f"/{path}")
        if obj is None:
            raise self.fail(f"missing {path}")
        self.array(obj, f"/{path}", 8)
        if obj.dtype.kind not in "iu":
            raise self.fail(f"{path} must hold integer {what}, got dtype {obj.dtype}")
        if obj.ndim != 1:
            raise self.fail(f"{path} must be one-dimensional, got shape {obj.shape}")
        if obj.shape[0] > MAX_ELEMENTS:
            raise self.fail(f"{path} declares {obj.shape[0]} entries, too large to load")
        return obj


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _read_ints(obj) -> np.ndarray:
    n = obj.shape[0]
    out = np.empty(n, dtype=np.int64)
    step = max(1, READ_BLOCK // max(obj.dtype.itemsize, 1))
    for start in range(0, n, step):
        out[start : start + step] = obj[start : start + step]
    return out


def _read_features(obj, n: int, label: str, name: str) -> np.ndarray:
    """(N, D) float32, read a block of rows at a time (never a float64 copy of the whole array)."""
    d = int(np.prod(obj.shape[1:]))
    out = np.empty((n, d), dtype=np.float32)
    if d == 0:
        return out  # refused by validate(), naming it
    rows = max(1, READ_BLOCK // max(1, d * obj.dtype.itemsize))
    if obj.chunks:  # whole chunks per read: no compressed chunk is inflated twice
        rows = max(obj.chunks[0], rows // obj.chunks[0] * obj.chunks[0])
    for start in range(0, n, rows):
        raw = np.asarray(obj[start : start + rows]).reshape(-1, d)
        with np.errstate(over="ignore", invalid="ignore"):
            block = raw.astype(np.float32)
        if raw.dtype.itemsize > 4 and np.isfinite(raw).all() and not np.isfinite(block).all():
            raise DatasetError(f"{label}: /modalities/{name} has values beyond the float32 range (about 3.4e38)")
        out[start : start + len(block)] = block
    return out


def read_dataset(path: str | os.PathLike) -> Dataset:
    """Open and validate a dataset file; any problem is a DatasetError naming it."""
    import h5py

    path = Path(path)
    label = guard.printable(path.name)
    try:
        resolved, info = guard.regular_file(path)
    except ValueError as exc:
        raise DatasetError(f"{label}: {exc}") from None
    if info.st_size == 0:
        raise DatasetError(f"{label}: the file is empty (0 bytes)")
    try:
        h5 = h5py.File(resolved, "r")
    except OSError as exc:
        raise DatasetError(f"{label}: not an HDF5 file or truncated ({exc.__class__.__name__})") from None
    try:
        with h5:
            r = _Reader(h5, label, info.st_size)
            fmt = _attr_str(h5.attrs, "format")
            if fmt != FORMAT:
                raise DatasetError(f"{label}: not a DEQ Studio dataset (root attribute format={fmt or 'missing'!r}, "
                                   f"expected {FORMAT!r})")
            try:
                version = int(h5.attrs.get("version", -1))
            except (TypeError, ValueError, OverflowError):
                version = -1
            if version != VERSION:
                shown = h5.attrs.get("version")
                shown = shown.item() if isinstance(shown, np.generic) else shown  # 7, not np.int64(7)
                raise DatasetError(f"{label}: dataset format version {shown!r} is not supported (expected {VERSION})")
            group = r.member(h5, "modalities", "/modalities")
            if not isinstance(group, h5py.Group):
                raise DatasetError(f"{label}: missing group /modalities")
            names = r.names(group, "/modalities")
            if not names:
                raise DatasetError(f"{label}: /modalities is empty")
            labels_obj = r.int_array("labels", "class labels")
            n = labels_obj.shape[0]
            arrays = {}
            for name in names:
                where = f"/modalities/{name}"
                obj = r.member(group, name, where)
                if not isinstance(obj, h5py.Dataset):
                    raise DatasetError(f"{label}: {where} must be an array, not a group")
                if obj.ndim < 2:
                    raise DatasetError(f"{label}: {where} must have shape (N, ...), got {obj.shape}")
                if obj.dtype.kind != "f":
                    raise DatasetError(f"{label}: {where} must be floating point, got dtype {obj.dtype}")
                if obj.shape[0] != n:
                    raise DatasetError(f"{label}: {where} has {obj.shape[0]} rows but /labels has {n}")
                if int(np.prod(obj.shape, dtype=np.float64)) > MAX_ELEMENTS:
                    raise DatasetError(f"{label}: {where} declares shape {obj.shape}, too large to load")
                r.array(obj, where, 4)
                kind = _attr_str(obj.attrs, "kind", "vector")
                shape_attr = obj.attrs.get("image_shape")
                image_shape = None
                if shape_attr is not None:
                    try:
                        image_shape = tuple(int(v) for v in np.asarray(shape_attr).reshape(-1)[:8])
                    except (TypeError, ValueError, OverflowError):
                        raise DatasetError(f"{label}: {where} has an unreadable image_shape") from None
                elif kind == "image" and obj.ndim == 3:
                    image_shape = (int(obj.shape[1]), int(obj.shape[2]))
                arrays[name] = (obj, kind, image_shape)
            names_attr = labels_obj.attrs.get("class_names")
            if names_attr is None:
                raise DatasetError(f"{label}: /labels has no class_names attribute")
            class_names = tuple(guard.decode(v) for v in np.asarray(names_attr).reshape(-1))
            splits_group = r.member(h5, "splits", "/splits")
            if not isinstance(splits_group, h5py.Group):
                raise DatasetError(f"{label}: missing group /splits")
            split_objs = {s: r.int_array(f"splits/{s}", "sample indices") for s in r.names(splits_group, "/splits")}
            r.check_budget()  # everything above read no array values; from here on they are read
            labels = _read_ints(labels_obj)
            modalities = {name: Modality(name, kind, _read_features(obj, n, label, name), image_shape)
                          for name, (obj, kind, image_shape) in arrays.items()}
            splits = {s: _read_ints(obj) for s, obj in split_objs.items()}
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
            path=path, sha256=file_sha256(resolved),
        )
    except DatasetError as exc:
        raise DatasetError(f"{label}: {str(exc).split(': ', 1)[-1]}") from None
    except OSError as exc:
        raise DatasetError(f"{label}: cannot be read ({exc.strerror or exc})") from None
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
        hdf5.set_attrs(h5, {"format": FORMAT, "version": VERSION, "name": ds.name, "description": ds.description,
                            "source": ds.source, "license": ds.license})
        group = h5.create_group("modalities", track_order=True)
        opts = {"compression": compression, "compression_opts": 9} if compression == "gzip" else {}
        for name, m in ds.modalities.items():
            arr = m.data.reshape(len(ds), *m.image_shape) if m.kind == "image" else m.data
            dset = group.create_dataset(name, data=arr.astype(np.float32), shuffle=bool(opts), track_times=False, **opts)
            hdf5.set_attrs(dset, {"kind": m.kind, **({"image_shape": list(m.image_shape)} if m.image_shape else {})})
        labels = h5.create_dataset("labels", data=ds.labels.astype(np.int64), track_times=False, **opts)
        hdf5.set_attrs(labels, {"class_names": list(ds.class_names)})
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
