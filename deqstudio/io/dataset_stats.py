"""Statistics of a dataset that need a pass over its values, computed once and cached beside the file.

Per modality: the range and mean of all values, the count of samples holding a NaN or Inf (and the first), and the
per-feature std over the training split (the scale of Gaussian corruptions). A file read whole gets them from
memory; a big file read lazily gets them in one pass of blocks (``compute``), which also checks every value, and
keeps them in a small cache file so the next open does not read the values again:

- beside the dataset, ``.NAME.deqstudio-stats.npz`` (hidden), or, when that folder is read-only, in the user's cache
  folder (``$DEQSTUDIO_CACHE_DIR``, else the platform's: ``~/.cache/deqstudio`` on Linux) under ``stats/``;
- the record holds the file's sha256, size and modification time. It is used at once when size and time match;
  when only the time differs (a copy, a touch) the file is hashed and the record is used if the sha256 matches;
  anything else (another size, another sha256, an unreadable or foreign record) computes the statistics again.

The cache file is plain numpy (``np.load`` without pickles) and is checked like any input: a record that does not
fit the dataset is ignored.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import Cancelled, DatasetError, WriteError

RECORD_VERSION = 1
PASS_BYTES = 1024**2  # values read per step of the pass
META_BYTES = 4 * 1024**2  # a record's text part is far smaller: a larger one is not read


@dataclass(frozen=True)
class ModalityStats:
    minimum: float
    maximum: float
    mean: float
    train_std: np.ndarray  # float32 (D,): std over the training split, 1 where it is (nearly) 0
    nonfinite_samples: int = 0
    first_nonfinite: int = -1


@dataclass(frozen=True)
class DatasetStats:
    modalities: dict[str, ModalityStats]
    sha256: str = ""
    seconds: float = 0.0  # how long the pass took (0 when read from a cache)
    cached: bool = False  # read from the cache file

    def nonfinite_message(self, label: str) -> str | None:
        """The refusal of a file holding NaN or Inf, naming the first modality and sample; None when all is finite."""
        for name, m in self.modalities.items():
            if m.nonfinite_samples:
                return (f"{label}: modality {name!r} has non-finite values (NaN or Inf) in {m.nonfinite_samples} "
                        f"samples (the first: sample {m.first_nonfinite})")
        return None


def corruption_scale(std: np.ndarray) -> np.ndarray:
    return np.where(std > 1e-6, std, 1.0).astype(np.float32)


def in_memory(x: np.ndarray, train: np.ndarray) -> ModalityStats:
    """Statistics of an array held in memory (its values are known finite)."""
    return ModalityStats(float(x.min()), float(x.max()), float(x.mean(dtype=np.float64)),
                         corruption_scale(x[train].astype(np.float64).std(axis=0)))


class _Moments:
    """Count, mean and sum of squared deviations per feature, merged block by block (Chan et al.)."""

    def __init__(self, d: int) -> None:
        self.n, self.mean, self.m2 = 0, np.zeros(d), np.zeros(d)

    def add(self, x: np.ndarray) -> None:
        if not len(x):
            return
        x = x.astype(np.float64)
        k, mean = len(x), x.mean(axis=0)
        m2 = ((x - mean) ** 2).sum(axis=0)
        total = self.n + k
        delta = mean - self.mean
        self.mean = self.mean + delta * (k / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.n * k / total)
        self.n = total

    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.n, 1))


def compute(ds, progress: Callable[[float], None] | None = None, cancel: Callable[[], bool] | None = None
            ) -> DatasetStats:
    """One pass over every modality of a lazily read dataset, in blocks of about ``PASS_BYTES``."""
    t0 = time.perf_counter()
    train = np.zeros(len(ds), dtype=bool)
    train[ds.split("train")] = True
    total = sum(m.data.size for m in ds.modalities.values()) or 1
    done = 0
    out = {}
    for name, m in ds.modalities.items():
        d = m.dim
        low, high, acc, bad, first = np.inf, -np.inf, 0.0, 0, -1
        moments = _Moments(d)
        for start, block, nonfinite in m.data.blocks(max(1, PASS_BYTES // (4 * d))):
            if cancel is not None and cancel():
                raise Cancelled()
            rows = len(block)
            keep = train[start : start + rows]
            if len(nonfinite):
                bad += len(nonfinite)
                first = first if first >= 0 else start + int(nonfinite[0])
                block, keep = np.delete(block, nonfinite, axis=0), np.delete(keep, nonfinite)
            if len(block):
                low, high = min(low, float(block.min())), max(high, float(block.max()))
                acc += float(block.sum(dtype=np.float64))
                moments.add(block[keep])
            done += rows * d
            if progress is not None:
                progress(done / total)
        finite = len(m.data) - bad
        out[name] = ModalityStats(low, high, acc / max(finite * d, 1), corruption_scale(moments.std()), bad, first)
    return DatasetStats(out, seconds=time.perf_counter() - t0)


# -- the cache file ------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    override = os.environ.get("DEQSTUDIO_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("deqstudio", appauthor=False))


def cache_paths(path: Path) -> tuple[Path, Path]:
    """Where a file's record is kept: beside it, and (for read-only folders) in the user's cache folder."""
    path = Path(path)
    beside = path.with_name(f".{path.name}.deqstudio-stats.npz")
    key = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return beside, cache_dir() / "stats" / f"{key}.npz"


def _record_bytes(stats: DatasetStats, info: os.stat_result) -> bytes:
    meta = {"version": RECORD_VERSION, "sha256": stats.sha256, "size": info.st_size, "mtime_ns": info.st_mtime_ns,
            "modalities": [{"name": n, "min": m.minimum, "max": m.maximum, "mean": m.mean,
                            "nonfinite_samples": m.nonfinite_samples, "first_nonfinite": m.first_nonfinite}
                           for n, m in stats.modalities.items()]}
    arrays = {f"std_{i}": m.train_std for i, m in enumerate(stats.modalities.values())}
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    return buf.getvalue()


def store(path: Path, stats: DatasetStats, info: os.stat_result) -> Path | None:
    """Write the record beside the file, else in the cache folder; None when neither can be written."""
    from . import atomic

    data = _record_bytes(stats, info)
    for target in cache_paths(path):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            return atomic.write_bytes(target, data)
        except (OSError, WriteError):
            continue
    return None


def _read_record(target: Path, dims: dict[str, int]) -> tuple[dict, DatasetStats] | None:
    """The record at ``target`` if it is one and fits modalities of these ``dims``; None otherwise."""
    try:
        with np.load(target, allow_pickle=False) as z:
            sizes = {i.filename: i.file_size for i in z.zip.infolist()}  # nothing larger than a record is inflated
            if sizes.get("meta.npy", 0) > META_BYTES or any(
                    sizes.get(f"std_{i}.npy", 0) > 4 * d + 1024 for i, d in enumerate(dims.values())):
                return None
            meta = json.loads(str(z["meta"][()]))
            stds = [np.asarray(z[f"std_{i}"], dtype=np.float32) for i in range(len(dims))]
        if meta.get("version") != RECORD_VERSION or [m["name"] for m in meta["modalities"]] != list(dims):
            return None
        mods = {}
        for m, std in zip(meta["modalities"], stds):
            if std.shape != (dims[m["name"]],) or not np.isfinite(std).all():
                return None
            mods[m["name"]] = ModalityStats(float(m["min"]), float(m["max"]), float(m["mean"]), std,
                                            int(m["nonfinite_samples"]), int(m["first_nonfinite"]))
        return meta, DatasetStats(mods, sha256=str(meta["sha256"]), cached=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, EOFError, zipfile.BadZipFile):
        return None


def cached(path: Path, dims: dict[str, int], sha256: Callable[[], str] | None = None) -> DatasetStats | None:
    """The cached statistics of the file at ``path`` if a record of this very content exists (see the module
    docstring); ``sha256()`` is called only when size matches and the time does not (None: such a record is not used).
    """
    try:
        info = os.stat(path)
    except OSError:
        return None
    for target in cache_paths(path):
        found = _read_record(target, dims) if target.is_file() else None
        if found is None:
            continue
        meta, stats = found
        if meta.get("size") != info.st_size:
            continue
        if meta.get("mtime_ns") == info.st_mtime_ns:
            return stats
        if sha256 is not None and stats.sha256 and sha256() == stats.sha256:
            store(path, stats, info)  # the same content with a new time: remember the time
            return stats
    return None


def known_sha256(path: Path) -> str | None:
    """The sha256 a record holds for the file at ``path`` when size and time still match (no hashing); else None."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    for target in cache_paths(path):
        if not target.is_file():
            continue
        try:
            with np.load(target, allow_pickle=False) as z:
                if z.zip.getinfo("meta.npy").file_size > META_BYTES:
                    continue
                meta = json.loads(str(z["meta"][()]))
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
            continue
        if (isinstance(meta, dict) and meta.get("version") == RECORD_VERSION and meta.get("size") == info.st_size
                and meta.get("mtime_ns") == info.st_mtime_ns and isinstance(meta.get("sha256"), str)
                and len(meta["sha256"]) == 64):
            return meta["sha256"]
    return None


def refuse_if_nonfinite(stats: DatasetStats | None, label: str) -> None:
    message = stats.nonfinite_message(label) if stats is not None else None
    if message:
        raise DatasetError(message)
