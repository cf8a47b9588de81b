"""Features read on demand: ``LazyRows``, a float32 (N, D) array over one HDF5 array, and the ``BlockCache`` it reads
through.

A big dataset file is never read whole. ``rows[indices]`` reads the requested rows only: the indices are sorted,
grouped by block (a block is a run of whole HDF5 chunks of rows, so no compressed chunk is inflated for one row and
again for its neighbour) and each block is read once, converted to float32 and checked; the result comes back in
the order of ``indices``. Recently read blocks stay in a least-recently-used cache bounded in bytes (shared by the
modalities of a file). A value that is NaN or Inf, or beyond the float32 range, in a requested row is a
``DatasetError`` naming the modality and the sample when that row is read.

One h5py file handle is shared by the modalities (h5py serialises calls; the cache takes its own lock). Pickling
keeps the path and reopens the file on the next read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import DatasetError

CACHE_BYTES = 16 * 1024**2  # decoded blocks kept per open file
BLOCK_BYTES = 256 * 1024  # a block holds whole chunks up to about this size (at least one chunk)
CONTIGUOUS_BLOCK_BYTES = 256 * 1024  # rows per block of an unchunked array


class BlockCache:
    """Decoded row blocks, least recently used dropped first, at most ``bound`` bytes in all."""

    def __init__(self, bound: int = CACHE_BYTES) -> None:
        self.bound = int(bound)
        self.nbytes = 0
        self._blocks: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            hit = self._blocks.get(key)
            if hit is not None:
                self._blocks.move_to_end(key)
            return hit

    def put(self, key, block: np.ndarray, bad: np.ndarray) -> None:
        size = block.nbytes + bad.nbytes
        if size > self.bound:
            return  # larger than the whole cache: used once, never kept
        with self._lock:
            if key in self._blocks:
                return
            self._blocks[key] = (block, bad)
            self.nbytes += size
            while self.nbytes > self.bound:
                _, (old, old_bad) = self._blocks.popitem(last=False)
                self.nbytes -= old.nbytes + old_bad.nbytes

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._blocks)


class LazyFile:
    """An HDF5 file opened for reading once, on first use (again after unpickling), with the cache of its rows."""

    def __init__(self, path: str | Path, label: str, cache_bytes: int = CACHE_BYTES) -> None:
        self.path = Path(path)
        self.label = label
        self.cache = BlockCache(cache_bytes)
        self._h5 = None
        self._lock = threading.Lock()

    def member(self, name: str):
        with self._lock:
            if self._h5 is None:
                import h5py

                try:
                    self._h5 = h5py.File(self.path, "r")
                except OSError as exc:
                    raise DatasetError(f"{self.label}: cannot be read any more ({exc.__class__.__name__}: "
                                       f"{str(exc).splitlines()[0][:120]})") from None
            return self._h5["modalities"][name]

    def close(self) -> None:
        with self._lock:
            if self._h5 is not None:
                self._h5.close()
                self._h5 = None
        self.cache.clear()

    def __getstate__(self) -> dict:
        return {"path": self.path, "label": self.label, "cache_bytes": self.cache.bound}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["label"], state["cache_bytes"])


def block_rows(chunks: tuple | None, row_bytes: int) -> int:
    """Rows per block: whole chunks of rows up to about ``BLOCK_BYTES`` (one chunk at least); for an unchunked
    array, about ``CONTIGUOUS_BLOCK_BYTES`` of rows."""
    row_bytes = max(1, row_bytes)
    if not chunks:
        return max(1, CONTIGUOUS_BLOCK_BYTES // row_bytes)
    chunk = max(1, int(chunks[0]))
    return chunk * max(1, BLOCK_BYTES // (chunk * row_bytes))


class LazyRows:
    """A modality's float32 (N, D) features in a file, read row by row on demand (see the module docstring).

    ``rows[i]`` is a (D,) row; ``rows[indices]`` / ``rows[a:b]`` / ``rows[mask]`` a (K, D) array in the order asked;
    ``np.asarray(rows)`` reads everything (for small files and tools only: the studio never does).
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, file: LazyFile, name: str, n: int, d: int, stored_dtype, chunks: tuple | None) -> None:
        self.file, self.name = file, name
        self.shape = (int(n), int(d))
        self.stored_dtype = np.dtype(stored_dtype)
        self.chunks = tuple(chunks) if chunks else None
        self.block = block_rows(self.chunks, int(d) * max(4, self.stored_dtype.itemsize))

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __repr__(self) -> str:
        return f"LazyRows({self.name!r}, shape={self.shape}, block={self.block} rows)"

    # -- reading ---------------------------------------------------------------------------------------------
    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start:stop`` straight from the file (no cache): float32 (K, D) and the positions of rows holding
        a non-finite value. A value beyond float32 is refused here."""
        d = self.shape[1]
        try:
            raw = np.asarray(self.file.member(self.name)[start:stop]).reshape(-1, d)
        except DatasetError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise DatasetError(f"{self.file.label}: unreadable HDF5 content in /modalities/{self.name} "
                               f"(rows {start}..{stop - 1}: {str(exc).splitlines()[0][:120]})") from None
        with np.errstate(over="ignore", invalid="ignore"):
            block = raw.astype(np.float32)
        finite = np.isfinite(block).all(axis=1)
        if raw.dtype.itemsize > 4 and not finite.all():
            beyond = np.isfinite(raw).all(axis=1) & ~finite
            if beyond.any():
                raise DatasetError(f"{self.file.label}: /modalities/{self.name} has values beyond the float32 range "
                                   f"(about 3.4e38) in sample {start + int(np.flatnonzero(beyond)[0])}")
        return block, np.flatnonzero(~finite)

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        key = (self.name, b)
        hit = self.file.cache.get(key)
        if hit is None:
            start = b * self.block
            hit = self.read(start, min(start + self.block, self.shape[0]))
            self.file.cache.put(key, *hit)
        return hit

    def take(self, indices) -> np.ndarray:
        """float32 (len(indices), D) rows in the order of ``indices`` (1-D integers, negatives counted from the end)."""
        n, d = self.shape
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"a boolean mask of {idx.shape} for {n} rows")
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise IndexError(f"rows are read by 1-D integer indices, got {idx.dtype} {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range 0..{n - 1}")
        idx = np.where(idx < 0, idx + n, idx)
        out = np.empty((len(idx), d), dtype=np.float32)
        if not len(idx):
            return out
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        blocks = sorted_idx // self.block
        cuts = np.flatnonzero(np.diff(blocks)) + 1
        for part, rows in zip(np.split(order, cuts), np.split(sorted_idx, cuts)):
            b = int(rows[0] // self.block)
            values, bad = self._block(b)
            local = rows - b * self.block
            if len(bad):
                hit = np.isin(local, bad)
                if hit.any():
                    raise DatasetError(f"{self.file.label}: modality {self.name!r} has non-finite values (NaN or Inf) "
                                       f"in sample {int(rows[np.flatnonzero(hit)[0]])}")
            out[part] = values[local]
        return out

    def __getitem__(self, key) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, tuple):
            rows, *rest = key
            picked = self[rows]
            return picked[tuple(rest)] if picked.ndim == 1 else picked[(slice(None), *rest)]
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([int(key)]))[0]
        if isinstance(key, slice):
            return self.take(np.arange(n)[key])
        return self.take(key)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.take(np.arange(self.shape[0]))
        return out if dtype is None else out.astype(dtype, copy=False)

    def blocks(self, rows: int):
        """``(start, float32 block, positions of non-finite rows)`` over the whole array in order, ``rows`` (rounded to
        whole blocks) at a time, read past the cache: a pass over the file does not evict what is being browsed."""
        n = self.shape[0]
        step = max(self.block, rows // self.block * self.block)
        for start in range(0, n, step):
            yield (start, *self.read(start, min(start + step, n)))
