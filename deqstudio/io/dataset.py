"""Datasets in the DEQ Studio HDF5 schema (README "Dataset files"), validated on open, written atomically.

```
/                         attrs: format="deqstudio-dataset", version=1, name, description, source, license
/modalities/<name>        float32 (N, ...)  attrs: kind = "vector" | "image", image_shape (H, W) for images
/labels                   int64 (N,)        attrs: class_names
                          or int64 (N, C) of 0/1, attrs: class_names, task="multilabel" (a label set per sample)
/splits/<train|val|test>  int64 indices into 0..N-1
```

A dataset read from a big file holds its labels and splits in memory and its features on disk: ``Modality.data`` is
then a ``LazyRows`` (``io.lazy_rows``) read on demand; ``Dataset.arrays(names, indices)`` is the one way to read
features either way. Statistics that need a pass over the values come from ``Dataset.statistics()``
(``io.dataset_stats``: computed once, cached beside the file); the sha256 of a file is computed when first asked for.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from . import atomic, hdf5
from .lazy_rows import LazyRows

FORMAT = "deqstudio-dataset"
VERSION = 1
SPLITS = ("train", "val", "test")
MULTILABEL = "multilabel"


@dataclass
class Modality:
    name: str
    kind: str  # "vector" | "image"
    data: np.ndarray | LazyRows  # float32 (N, D), images flattened row-major; read on demand from a big file
    image_shape: tuple[int, int] | None = None

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    @property
    def lazy(self) -> bool:
        """The features stay in the file and are read on demand."""
        return isinstance(self.data, LazyRows)


class _FileSha256:
    """``Dataset.sha256``: given, or (for a dataset read from a file) the file's, computed when first asked for —
    from the statistics cache when it knows this very file, else by hashing it (about 1 s per 400 MB)."""

    def __get__(self, obj, owner=None) -> str:
        if obj is None:
            return ""
        value = obj.__dict__.get("_sha256", "")
        hashed = obj.__dict__.get("_sha256_of")
        if not value and hashed is not None:
            from .dataset_stats import known_sha256
            from .guard import file_sha256

            try:
                value = known_sha256(hashed) or file_sha256(hashed)
            except OSError as exc:
                raise DatasetError(f"{hashed.name}: cannot be read ({exc})") from None
            obj.__dict__["_sha256"] = value
        return value

    def __set__(self, obj, value) -> None:
        obj.__dict__["_sha256"] = value or ""


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
    sha256: str = _FileSha256()  # type: ignore[assignment]
    extra_attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)
        self._stats = None
        self._stats_lock = threading.Lock()

    def __getstate__(self) -> dict:  # picklable (a lazily read one reopens its file on the next read)
        state = dict(self.__dict__)
        state.pop("_stats_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._stats_lock = threading.Lock()

    def hash_file_when_asked(self, resolved: Path) -> None:
        """``sha256`` will be this file's, computed on first use (read_dataset: never on the way to opening); its
        statistics record is kept beside ``path`` as given, made absolute now (a later change of folder is harmless)."""
        self.__dict__["_sha256_of"] = Path(resolved)
        self.__dict__["_stats_path"] = Path(os.path.abspath(self.path))

    @property
    def stats_file(self) -> Path | None:
        """The file whose statistics record is looked up (``path``, absolute as opened)."""
        return self.__dict__.get("_stats_path", self.path)

    @property
    def lazy(self) -> bool:
        """Some features stay in the file, read on demand (a big file)."""
        return any(m.lazy for m in self.modalities.values())

    @property
    def label(self) -> str:
        from .guard import printable

        return printable(self.path.name) if self.path is not None else f"dataset {self.name!r}"

    @property
    def statistics_known(self) -> bool:
        """``statistics()`` answers without a pass over the file (in memory, computed, or in the cache)."""
        if self._stats is not None or not self.lazy:
            return True
        return self._cached_stats(hash_ok=False) is not None

    def _cached_stats(self, hash_ok: bool = True):
        from . import dataset_stats

        dims = {n: m.dim for n, m in self.modalities.items()}
        return dataset_stats.cached(self.stats_file, dims, (lambda: self.sha256) if hash_ok else None)

    def statistics(self, progress=None, cancel=None):
        """Per modality: range, mean, non-finite samples and the training split's per-feature std
        (``io.dataset_stats.DatasetStats``). In memory: computed at once. From a big file: from the cache beside it,
        else one pass over the file (``progress(fraction)``, ``cancel()`` checked between blocks), then cached. A file
        holding NaN or Inf is a DatasetError naming the modality and the first such sample."""
        from . import dataset_stats

        with self._stats_lock:
            if self._stats is None:
                if not self.lazy:
                    train = self.split("train")
                    stats = dataset_stats.DatasetStats(
                        {n: dataset_stats.in_memory(m.data, train) for n, m in self.modalities.items()})
                else:
                    stats = self._cached_stats()
                    if stats is None:
                        info = os.stat(self.stats_file)
                        stats = dataset_stats.compute(self, progress, cancel)
                        stats = dataset_stats.DatasetStats(stats.modalities, self.sha256, stats.seconds)
                        dataset_stats.store(self.stats_file, stats, info)
                self._stats = stats
            dataset_stats.refuse_if_nonfinite(self._stats, self.label)
            return self._stats

    def train_std(self, name: str) -> np.ndarray:
        """A modality's per-feature std over the training split (1 where it is 0): the scale of Gaussian corruptions."""
        return self.statistics().modalities[name].train_std

    @property
    def cache_bytes(self) -> int:
        """Bytes of decoded rows a lazily read dataset holds in its cache (0 for one in memory)."""
        return sum({id(m.data.file): m.data.file.cache.nbytes for m in self.modalities.values() if m.lazy}.values())

    def close(self) -> None:
        """Close the file a lazily read dataset reads from (it reopens on the next read)."""
        for m in self.modalities.values():
            if m.lazy:
                m.data.file.close()

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
        """float32 (len(indices), D) features of the named modalities for the rows ``indices``, in their order (all
        rows when None: for a big file that reads everything — the studio never asks for it)."""
        missing = [n for n in names if n not in self.modalities]
        if missing:
            raise DatasetError(f"dataset {self.name!r} has no modality {missing[0]!r}; it has {', '.join(self.modalities)}")
        out = []
        for n in names:
            data = self.modalities[n].data
            if indices is None:
                out.append(np.asarray(data))
            else:
                out.append(data.take(np.asarray(indices)) if isinstance(data, LazyRows) else data[indices])
        return out

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
            raise DatasetError(f"{where}: modality {name!r} must be float32 (N, D), got {m.data.dtype} {m.data.shape}")
        if m.data.shape[0] != n:
            raise DatasetError(f"{where}: modality {name!r} has {m.data.shape[0]} rows but /labels has {n}")
        if m.data.shape[1] == 0:
            raise DatasetError(f"{where}: modality {name!r} has no features")
        if not m.lazy and not np.isfinite(m.data).all():  # lazily read: checked as read, and by statistics()
            rows = (~np.isfinite(m.data)).any(axis=1)
            raise DatasetError(f"{where}: modality {name!r} has non-finite values (NaN or Inf) in {int(rows.sum())} "
                               f"samples (the first: sample {int(rows.argmax())})")
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


CHUNK_BYTES = 128 * 1024  # an HDF5 chunk holds whole sample rows, about this many bytes (1..1024 rows)
WRITE_BYTES = 16 * 1024**2  # rows written at a time


def chunk_rows(n: int, d: int) -> int:
    """Rows per HDF5 chunk for an (n, d) float32 array: a sample is read by inflating one small chunk."""
    return int(max(1, min(n, 1024, CHUNK_BYTES // max(4 * d, 1))))


def write_dataset(ds: Dataset, path: str | os.PathLike, compression: str | None = "gzip") -> Path:
    """Write atomically (temporary file in the same folder, then rename); returns the path.

    Features are chunked by whole sample rows (``chunk_rows``) and written a block of rows at a time, so a lazily
    read dataset is copied without ever being held in memory."""
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
        n = len(ds)
        for name, m in ds.modalities.items():
            inner = tuple(m.image_shape) if m.kind == "image" else (m.dim,)
            dset = group.create_dataset(name, shape=(n, *inner), dtype=np.float32, chunks=(chunk_rows(n, m.dim), *inner),
                                        shuffle=bool(opts), track_times=False, **opts)
            step = max(1, WRITE_BYTES // (4 * m.dim))
            for start in range(0, n, step):
                rows = ds.arrays([name], np.arange(start, min(start + step, n)))[0]
                dset[start : start + len(rows)] = rows.reshape(len(rows), *inner)
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


def __getattr__(name: str):
    """``read_dataset`` lives in ``dataset_reader`` (which imports this module) and is importable from here too."""
    if name == "read_dataset":
        from .dataset_reader import read_dataset

        return read_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
