"""The rows of one split of one modality, read when a corruption draws them: ``SplitRows``, a shuffle's pool.

A ``shuffle`` corruption swaps in another sample's features, drawn from the training split. Nothing is read until a
draw asks for rows. From a file read on demand, a row costs its whole HDF5 chunk (tens of rows inflated for one),
and a batch's draws fall all over the split, so rows read once may be kept: with ``keep_bytes`` None (the default:
sweeps), or when the whole split of the modality fits in ``keep_bytes`` (the studio: 64 MiB), every split row of a
block that had to be read is kept, and each block is read at most once — at worst the memory of the split held
whole, as before, and only once a shuffle is used. A bigger split under a bound is read row by row through the
dataset's own bounded cache, keeping nothing. Rows of a dataset held in memory are simply indexed.
"""

from __future__ import annotations

import numpy as np


class SplitRows:
    def __init__(self, dataset, name: str, ids: np.ndarray, keep_bytes: int | None = None) -> None:
        self.dataset, self.name, self.ids = dataset, name, np.asarray(ids, dtype=np.int64)
        data = dataset.modalities[name].data
        self.block = getattr(data, "block", None)  # rows per block of a lazily read modality; None in memory
        whole = len(self.ids) * data.shape[1] * 4
        self.keeps = self.block is not None and (keep_bytes is None or whole <= keep_bytes)
        self._rows: np.ndarray | None = None  # (len(ids), D), filled as blocks are read (untouched pages cost nothing)
        self._have: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def kept_rows(self) -> int:
        return 0 if self._have is None else int(np.count_nonzero(self._have))

    def rows(self, positions) -> np.ndarray:
        """float32 (K, D) rows at ``positions`` of the split, in that order."""
        positions = np.asarray(positions, dtype=np.int64)
        if not self.keeps:
            return self.dataset.arrays([self.name], self.ids[positions])[0]
        if self._rows is None:
            self._rows = np.empty((len(self.ids), self.dataset.modalities[self.name].dim), dtype=np.float32)
            self._have = np.zeros(len(self.ids), dtype=bool)
        missing = positions[~self._have[positions]]
        if len(missing):  # every split row of the blocks these fall in: each block is inflated once
            blocks = self.ids // self.block
            load = np.flatnonzero(np.isin(blocks, np.unique(blocks[missing])) & ~self._have)
            self._rows[load] = self.dataset.arrays([self.name], self.ids[load])[0]
            self._have[load] = True
        return self._rows[positions]
