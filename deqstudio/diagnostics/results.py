"""Writing analysis results: CSV tables and HDF5 groups of named numpy arrays, atomically."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..io import atomic


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else repr(float(value))
    if isinstance(value, (np.integer, np.bool_)):
        return str(value.item())
    return str(value)


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    """A CSV file; floats keep full precision (repr) so the numbers round-trip; NaN is an empty cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return atomic.write_text(path, buf.getvalue())


def write_hdf5(path: str | os.PathLike, group: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, object]) -> Path:
    """One HDF5 file holding ``group`` with the arrays as datasets and ``attrs`` as its attributes."""
    import h5py

    with atomic.atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        g = h5.create_group(group)
        for key, value in attrs.items():
            g.attrs[key] = _attr(value)
        for key, value in arrays.items():
            arr = np.asarray(value)
            if arr.dtype.kind in "US":
                g.create_dataset(key, data=arr.astype(h5py.string_dtype()))
            else:
                g.create_dataset(key, data=arr)
    return Path(path)


def _attr(value):
    if isinstance(value, (list, tuple)):
        return np.asarray([str(v) for v in value], dtype=object).astype("S") if value else np.zeros(0, "S1")
    if value is None:
        return ""
    return value


def read_hdf5(path: str | os.PathLike, group: str) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """The arrays and attributes written by ``write_hdf5`` (strings decoded)."""
    import h5py

    with h5py.File(path, "r") as h5:
        g = h5[group]
        arrays = {}
        for key, dset in g.items():
            arr = dset[()]
            if arr.dtype.kind in "OS":
                arr = np.asarray([v.decode() if isinstance(v, bytes) else v for v in arr.ravel()]).reshape(arr.shape)
            arrays[key] = arr
        attrs = {}
        for key, value in g.attrs.items():
            if isinstance(value, np.ndarray) and value.dtype.kind == "S":
                value = [v.decode() for v in value]
            elif isinstance(value, bytes):
                value = value.decode()
            attrs[key] = value
    return arrays, attrs
