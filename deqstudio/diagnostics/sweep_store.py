"""A sweep's progress: each finished chunk saved as it finishes, so a killed sweep resumes from the last one.

A progress folder in the cache folder (``$XDG_CACHE_HOME/deqstudio/sweeps``, else ``~/.cache/deqstudio/sweeps``),
named by the sweep's identity and output file, holds ``identity.json`` (``format``, ``version`` and the identity:
the sweep's arguments as ``SweepSpec.to_dict()``, the model's and the dataset's files) and one HDF5 file per
finished chunk, ``chunk-000000.h5``, … (``sweep_chunks``' arrays, the attribute ``finished`` set). It is deleted
once the results are written.

Each file is built in memory (libhdf5 never writes on disk: see ``io.hdf5``) and moved into place by a rename,
so a kill leaves whole files or none. The folder is scratch, not results: files are not flushed to the disk
one by one; a reader checks each chunk file and evaluates again from the first one that is missing or does
not read back. A folder that records another sweep, or that cannot be read, is replaced (``SweepStore.open``
says why).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

FORMAT = "deqstudio-sweep-progress"
VERSION = 1


def file_identity(path: str | os.PathLike | None) -> dict | None:
    """What identifies a model or dataset file for resuming: its absolute path, size and modification time
    (a file rewritten in place changes both), and for a file under 64 MB (a checkpoint) its SHA-256."""
    if path is None:
        return None
    text = str(path)
    if text.startswith("plugin:"):
        return {"plugin": text}
    p = Path(path).resolve()
    st = p.stat()
    ident = {"path": str(p), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}
    if p.is_file() and st.st_size < 64 << 20:
        from ..io.guard import file_sha256

        ident["sha256"] = file_sha256(p)
    return ident


def sweep_identity(spec, checkpoint, dataset, baseline=None, device: str = "cpu") -> dict:
    """The identity a progress file records: the sweep's arguments, the model, the dataset (and a baseline).
    The device is not part of it (results agree across devices to rounding only, so it is recorded, and a
    change starts over)."""
    return {"spec": spec.to_dict(), "model": file_identity(checkpoint), "dataset": file_identity(dataset),
            "baseline": file_identity(baseline), "device": str(device)}


def identity_key(identity: Mapping) -> str:
    """A short stable name for an identity (the progress file's name in the cache folder)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def cache_folder() -> Path:
    """Where progress files of sweeps without ``--out`` live: ``$XDG_CACHE_HOME/deqstudio/sweeps``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deqstudio" / "sweeps"


def progress_path(out: str | os.PathLike | None, identity: Mapping) -> Path:
    """The sweep's progress folder in the cache folder, named by its identity and its output file (so two sweeps
    writing different files never share one, and the output's folder holds only the results)."""
    key = identity_key({**identity, "out": str(Path(out).resolve()) if out else None})
    return cache_folder() / f"{key}.partial"


class SweepStore:
    """The finished chunks of one sweep in its progress folder (see the module docstring)."""

    def __init__(self, path: Path, identity: Mapping, chunks: list[dict]):
        self.path, self.identity, self._chunks = path, dict(identity), chunks

    @classmethod
    def open(cls, path: str | os.PathLike, identity: Mapping, restart: bool = False) -> tuple["SweepStore", str]:
        """The store at ``path`` for this sweep, and a one-line note: resumed from it, or started over (another
        sweep's folder, an unreadable one, or ``restart``); empty when there was nothing there."""
        path = Path(path)
        wanted = json.loads(json.dumps(identity, sort_keys=True))
        note = ""
        if path.exists() and restart:
            note = f"starting over: the progress in {path.name} discarded"
        elif path.exists():
            try:
                recorded = _read_identity(path)
            except (OSError, ValueError, KeyError) as exc:
                note = f"{path.name} is not a readable sweep progress folder ({exc}); starting over"
            else:
                if recorded == wanted:
                    chunks = _read_chunks(path)
                    return cls(path, identity, chunks), (
                        f"resuming from {path.name}: {len(chunks)} chunk(s) already finished" if chunks else
                        f"resuming from {path.name}: no chunk finished yet")
                changed = [k for k in ("spec", "model", "dataset", "baseline", "device")
                           if recorded.get(k) != wanted.get(k)]
                note = (f"{path.name} records another sweep (different {', '.join(changed) or 'identity'}); "
                        "starting over")
        try:
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            path.mkdir(parents=True)
            _place(path / "identity.json",
                   json.dumps({"format": FORMAT, "version": VERSION, "identity": wanted}, indent=1).encode())
        except OSError as exc:
            raise OSError(f"cannot keep the sweep's progress in {path}: {exc.strerror or exc}") from None
        return cls(path, identity, []), note

    def finished(self) -> list[dict]:
        """The finished chunks, in chunk order (a contiguous run from chunk 0)."""
        return list(self._chunks)

    def append(self, chunk: Mapping[str, np.ndarray]) -> None:
        """Save a finished chunk (the next one in order)."""
        from ..io.hdf5 import hdf5_bytes

        index = int(chunk["index"])
        if index != len(self._chunks):
            raise ValueError(f"chunk {index} saved after {len(self._chunks)} finished chunk(s)")

        def build(h5) -> None:
            for key, value in chunk.items():
                h5.create_dataset(key, data=np.asarray(value))
            h5.attrs["finished"] = True

        try:
            _place(self.path / f"chunk-{index:06d}.h5", hdf5_bytes(build))
        except OSError as exc:
            raise OSError(f"cannot keep the sweep's progress in {self.path}: {exc.strerror or exc}") from None
        self._chunks.append({k: np.asarray(v) for k, v in chunk.items()})

    def remove(self) -> None:
        """Delete the progress folder (the sweep's results were written)."""
        shutil.rmtree(self.path, ignore_errors=True)


def _place(path: Path, data: bytes) -> None:
    """``data`` as the file ``path``: written beside it, then renamed over it (whole or not at all)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.rename(tmp, path)


def _read_identity(path: Path) -> dict:
    record = json.loads((path / "identity.json").read_text())
    if record.get("format") != FORMAT:
        raise ValueError(f"format {record.get('format')!r}, expected {FORMAT!r}")
    if record.get("version") != VERSION:
        raise ValueError(f"version {record.get('version')!r}, expected {VERSION}")
    return record["identity"]


def _read_chunks(path: Path) -> list[dict]:
    """The contiguous run of chunk files from chunk 0 that read back whole and finished."""
    import h5py

    chunks = []
    while (f := path / f"chunk-{len(chunks):06d}.h5").is_file():
        try:
            with h5py.File(f, "r") as h5:
                if not bool(h5.attrs.get("finished", False)):
                    break
                chunk = {key: d[()] for key, d in h5.items()}
        except (OSError, ValueError, KeyError):
            break
        if int(chunk.get("index", -1)) != len(chunks):
            break
        chunks.append(chunk)
    return chunks
