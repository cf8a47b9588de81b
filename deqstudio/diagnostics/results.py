"""Writing analysis results: CSV tables and HDF5 groups of named numpy arrays, atomically.

Files are built in memory and written in one atomic step (``io.hdf5``). A table given a ``sidecar``
record is written together with ``<file>.provenance.json`` as one unit (``atomic.write_with_sidecar``):
both or neither, never a table beside the provenance of another run.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from collections.abc import Mapping, Sequence

import numpy as np

from ..io import hdf5
from ..io.atomic import write_with_sidecar


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else repr(float(value))
    if isinstance(value, (np.integer, np.bool_)):
        return str(value.item())
    return str(value)


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


def write_hdf5(path: str | os.PathLike, group: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, object],
               sidecar: Mapping | None = None) -> Path:
    """One HDF5 file holding ``group`` with the arrays as datasets and ``attrs`` as its attributes."""

    def build(h5) -> None:
        g = h5.create_group(group)
        hdf5.set_attrs(g, attrs)
        for key, value in arrays.items():
            arr = np.asarray(value)
            g.create_dataset(key, data=hdf5.string_dataset(arr) if arr.dtype.kind in "US" else arr)

    return hdf5.write(path, build, sidecar)


def read_hdf5(path: str | os.PathLike, group: str) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """The arrays and attributes written by ``write_hdf5`` (strings decoded)."""
    with hdf5.open_for_reading(path) as h5:
        g = h5[group]
        arrays = {key: hdf5.read_strings(d) if d.dtype.kind in "OS" else d[()] for key, d in g.items()}
        attrs = hdf5.get_attrs(g)
    return arrays, attrs
