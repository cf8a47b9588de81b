"""Reading a dataset file without trusting anything in it: links, storage, declared sizes, names, values.

The schema is ``deqstudio.io.dataset``'s; ``read_dataset`` opens a file, checks every member before reading
any value, reads the labels and splits, and builds the validated ``Dataset``. The features of a small file are read
whole, in blocks, and checked at once; those of a big one (more than ``EAGER_BYTES`` of float32 values) stay in the
file and are read on demand (``io.lazy_rows``), each row checked as it is read and every value by the statistics pass
(``Dataset.statistics``), whose cached result refuses a file known to hold NaN or Inf at open.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from . import guard
from .dataset import FORMAT, MULTILABEL, VERSION, Dataset, Modality
from .guard import file_sha256

MAX_ELEMENTS = 200_000_000  # refuse declared shapes above ~800 MB of float32 before reading them whole
MAX_ROW_ELEMENTS = 1 << 24  # features per sample of a lazily read modality (a row is read whole: 64 MB)
MAX_LAZY_ELEMENTS = 1 << 38  # values of a lazily read modality (1 TiB of float32)
EAGER_BYTES = 64 * 1024**2  # features up to this many float32 bytes are read whole at open; more are read on demand
# Arrays may declare at most MAX_EXPANSION times the file's size in values (or EXPANSION_FLOOR bytes, for
# small files): gzip of real features saves 1-3x (the bundled UCI file declares 2.5x its size), while a
# compression or fill-value bomb declares gigabytes in kilobytes. Checked before any value is read.
MAX_EXPANSION = 64
EXPANSION_FLOOR = 8 * 1024**2
READ_BLOCK = 16 * 1024**2  # bytes per read while loading an array
_FILTERS = (1, 2, 3, 32000)  # HDF5 filters read: deflate (gzip), shuffle, fletcher32, lzf


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

    def int_array(self, path: str, what: str, ndim: int = 1):
        """Checks for a 1-D (or ``ndim``-D) integer array; its values are read by ``read_ints``."""
        obj = self.member(self.h5, path, f"/{path}")
        if obj is None:
            raise self.fail(f"missing {path}")
        self.array(obj, f"/{path}", 8)
        if obj.dtype.kind not in "iu":
            raise self.fail(f"{path} must hold integer {what}, got dtype {obj.dtype}")
        if obj.ndim != ndim:
            hint = " (a multilabel /labels of 0/1 needs the attribute task='multilabel')" if (
                path == "labels" and obj.ndim == 2) else ""
            raise self.fail(f"{path} must be one-dimensional, got shape {obj.shape}{hint}" if ndim == 1 else
                            f"{path} must be two-dimensional (samples, classes), got shape {obj.shape}")
        if int(np.prod(obj.shape, dtype=np.float64)) > MAX_ELEMENTS:
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
    out = np.empty(obj.shape, dtype=np.int64)
    step = max(1, READ_BLOCK // max(obj.dtype.itemsize * int(np.prod(obj.shape[1:], dtype=np.int64)), 1))
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


def read_dataset(path: str | os.PathLike, lazy: bool | None = None) -> Dataset:
    """Open and validate a dataset file; any problem is a DatasetError naming it.

    ``lazy``: keep the features in the file and read them on demand (True), read them whole (False), or decide by
    size (None: lazily above ``EAGER_BYTES`` of float32 features)."""
    import h5py

    from .lazy_rows import LazyFile, LazyRows

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
            labels_link = r.member(h5, "labels", "/labels")
            multilabel = labels_link is not None and _attr_str(labels_link.attrs, "task") == MULTILABEL
            labels_obj = r.int_array("labels", "label sets (0/1)" if multilabel else "class labels",
                                     ndim=2 if multilabel else 1)
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
                if (int(np.prod(obj.shape[1:], dtype=np.float64)) > MAX_ROW_ELEMENTS
                        or int(np.prod(obj.shape, dtype=np.float64)) > (MAX_ELEMENTS if lazy is False else MAX_LAZY_ELEMENTS)):
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
            feature_bytes = sum(4 * float(np.prod(obj.shape, dtype=np.float64)) for obj, _, _ in arrays.values())
            if lazy is None:
                lazy = feature_bytes > EAGER_BYTES
            if lazy:
                source = LazyFile(resolved, label)
                modalities = {name: Modality(name, kind, LazyRows(source, name, n, int(np.prod(obj.shape[1:])), obj.dtype,
                                                                  obj.chunks), image_shape)
                              for name, (obj, kind, image_shape) in arrays.items()}
            else:
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
            path=path, sha256="" if lazy else file_sha256(resolved),
        )
    except DatasetError as exc:
        raise DatasetError(f"{label}: {str(exc).split(': ', 1)[-1]}") from None
    except OSError as exc:
        raise DatasetError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if lazy:  # hashing 400 MB takes a second: done when first asked for, never on the way to opening
        ds.hash_file_when_asked(resolved)
        from . import dataset_stats

        known = ds._cached_stats(hash_ok=False)  # a pass over this very file already ran: reuse it
        if known is not None:
            dataset_stats.refuse_if_nonfinite(known, label)
            ds._stats = known
    return ds


