"""Writing and reading the HDF5 files DEQ Studio makes (traces, analysis results, datasets): one way each.

Strings are written one way: a str as UTF-8 text, a list of strings as an array of UTF-8 strings, a dict as
JSON text, None as "". Reading decodes them back whatever way an older file stored them (fixed-length
bytes included). Small files are built in memory and written in one atomic step (``write``): a full disk
can never interrupt libhdf5 halfway through a file.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from collections.abc import Callable, Mapping

import numpy as np

from ..errors import decode
from . import atomic


def _string_array(values) -> np.ndarray:
    import h5py

    return np.asarray([str(v) for v in values], dtype=h5py.string_dtype())


def attribute_value(value):
    """What an attribute holds for ``value`` (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (bool, int, float, np.number)) for v in value) and value:
            return np.asarray(value)
        return _string_array(value)
    return value


def set_attrs(obj, attrs: Mapping[str, object]) -> None:
    """Write ``attrs`` on an HDF5 file, group or dataset."""
    for key, value in attrs.items():
        obj.attrs[key] = attribute_value(value)


def decoded(value):
    """An attribute's value as Python: text as str, arrays of text as lists of str, numpy scalars as numbers."""
    if isinstance(value, (bytes, np.bytes_)):
        return decode(bytes(value))
    if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
        return [decode(v) if isinstance(v, (bytes, np.bytes_)) else str(v) for v in value.ravel()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def get_attrs(obj) -> dict:
    return {key: decoded(value) for key, value in obj.attrs.items()}


def string_dataset(values) -> np.ndarray:
    """An array of text for ``create_dataset`` (UTF-8 strings)."""
    return _string_array(np.asarray(values).ravel()).reshape(np.shape(values))


def read_strings(dset) -> np.ndarray:
    """A dataset of text as an array of str."""
    arr = dset[()]
    return np.asarray([decode(v) if isinstance(v, bytes) else str(v) for v in arr.ravel()]).reshape(arr.shape)


def hdf5_bytes(build: Callable) -> bytes:
    """The bytes of an HDF5 file that ``build(h5)`` fills, made in memory (nothing touches the disk)."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        build(h5)
    return buf.getvalue()


def write(path: str | os.PathLike, build: Callable, sidecar: Mapping | None = None) -> Path:
    """The HDF5 file ``build(h5)`` fills, written atomically (with its provenance sidecar as one unit)."""
    return atomic.write_with_sidecar(path, hdf5_bytes(build), sidecar)


def open_for_reading(path: str | os.PathLike):
    """An HDF5 file DEQ Studio wrote, open for reading (an interrupted commit is completed first)."""
    import h5py

    atomic.recover(path)
    return h5py.File(path, "r")
