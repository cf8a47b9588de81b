"""Finding the dataset a checkpoint records (its ``dataset`` metadata: name and sha256) among candidate files.

A candidate matches when its name attribute equals the recorded name and, when the checkpoint records a sha256,
its content hashes to it (only files whose name matches are hashed; a file whose statistics cache records its sha256
for its current size and time is not hashed again, ``io.dataset_stats``). Nothing here opens more than a file's
attributes unless the name matches; a file that cannot be read is simply not a match.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from . import guard
from .dataset import FORMAT
from .inspect import HDF5_MAGIC

DATASET_SUFFIXES = (".h5", ".hdf5")


def dataset_name(path: str | os.PathLike) -> str | None:
    """The ``name`` attribute of a DEQ Studio dataset file, or None when it is not one (or cannot be read)."""
    try:
        with guard.open_regular(path) as fh:
            if fh.read(8) != HDF5_MAGIC:
                return None
        import h5py

        from .dataset_reader import _attr_str

        with h5py.File(path, "r") as h5:
            if _attr_str(h5.attrs, "format") != FORMAT:
                return None
            return _attr_str(h5.attrs, "name")
    except (OSError, ValueError, TypeError, KeyError):
        return None


def matches(path: Path, name: str, sha256: str) -> bool:
    if not name and not sha256:
        return False
    if name and dataset_name(path) != name:
        return False
    if sha256:
        from .dataset_stats import known_sha256

        try:  # a big file whose statistics are cached is not hashed again (the record keeps its sha256)
            return (known_sha256(path) or guard.file_sha256(path)) == sha256
        except (OSError, ValueError):
            return False
    return True


def find_dataset(record: dict, candidates: Iterable[tuple[Path, str]]) -> tuple[Path, str] | None:
    """The first ``(path, where)`` of ``candidates`` that is the recorded dataset, or None."""
    name = record.get("name") if isinstance(record.get("name"), str) else ""
    sha = record.get("sha256") if isinstance(record.get("sha256"), str) else ""
    seen: set[Path] = set()
    for path, where in candidates:
        try:
            path = Path(path).resolve()
        except (OSError, RuntimeError):
            continue
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        if matches(path, name, sha):
            return path, where
    return None


def datasets_in(folder: Path) -> list[Path]:
    """The dataset-looking files of a folder (by suffix), sorted; none when it cannot be listed."""
    try:
        return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in DATASET_SUFFIXES)
    except OSError:
        return []
