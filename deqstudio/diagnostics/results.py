"""Writing analysis results: CSV tables and HDF5 groups of named numpy arrays, atomically.

Files are built in memory and written in one atomic step (HDF5 included: h5py writes to a BytesIO,
so a full disk can never interrupt libhdf5 halfway through a file). A table given a ``sidecar``
record is written together with ``<file>.provenance.json`` as one unit (``atomic.write_files``):
both or neither, never a table beside the provenance of another run.
"""

from __future__ import annotations

import csv
import io
import json
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


SIDECAR_SUFFIX = ".provenance.json"


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def json_bytes(record: Mapping) -> bytes:
    return (json.dumps(record, indent=2, default=str) + "\n").encode("utf-8")


def write_with_sidecar(path: str | os.PathLike, data: bytes, sidecar: Mapping | None = None) -> Path:
    """``data`` at ``path``, and with a sidecar record both files as one unit."""
    if sidecar is None:
        return atomic.write_bytes(path, data)
    atomic.write_files({Path(path): data, sidecar_path(path): json_bytes(sidecar)})
    return Path(path)


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return buf.getvalue().encode("utf-8")


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence],
              sidecar: Mapping | None = None) -> Path:
    """A CSV file; floats keep full precision (repr) so the numbers round-trip; NaN is an empty cell."""
    return write_with_sidecar(path, csv_bytes(header, rows), sidecar)


def hdf5_bytes(build) -> bytes:
    """The bytes of an HDF5 file that ``build(h5)`` fills, made in memory (nothing touches the disk)."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        build(h5)
    return buf.getvalue()


def write_hdf5(path: str | os.PathLike, group: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, object],
               sidecar: Mapping | None = None) -> Path:
    """One HDF5 file holding ``group`` with the arrays as datasets and ``attrs`` as its attributes."""
    import h5py

    def build(h5) -> None:
        g = h5.create_group(group)
        for key, value in attrs.items():
            g.attrs[key] = _attr(value)
        for key, value in arrays.items():
            arr = np.asarray(value)
            if arr.dtype.kind in "US":
                g.create_dataset(key, data=arr.astype(h5py.string_dtype()))
            else:
                g.create_dataset(key, data=arr)

    return write_with_sidecar(path, hdf5_bytes(build), sidecar)


def _attr(value):
    if isinstance(value, (list, tuple)):
        return np.asarray([str(v) for v in value], dtype=object).astype("S") if value else np.zeros(0, "S1")
    if value is None:
        return ""
    return value


def read_hdf5(path: str | os.PathLike, group: str) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """The arrays and attributes written by ``write_hdf5`` (strings decoded)."""
    import h5py

    atomic.recover(path)  # a commit interrupted by a kill is completed before reading
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
