"""The samples table of a split, filled progressively: every row exists at once, its computed columns arrive in
chunks (``TableFiller`` runs them between solves). Qt-free, numpy only.

Two sets of columns: ``clean`` (the split's clean inputs under the current solver settings) and ``now`` (under the
current corruption; None while nothing is corrupted). Each set knows what it was computed for (``key``); a chunk
computed for another key is dropped. Memory is a few numeric arrays of the split's length: no object per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..diagnostics.stats import f1_scores


@dataclass
class Columns:
    """One state of the model over the split: -1 / NaN / False where a row is not computed yet (``done``)."""

    key: tuple
    predictions: np.ndarray  # int64 (N,); a multilabel model's label sets (N, C) of 0/1
    steps: np.ndarray  # int64
    final_rel: np.ndarray  # float64: the residual of the returned state (the best step), as everywhere
    converged: np.ndarray  # bool
    done: np.ndarray  # bool
    f1: np.ndarray  # float64: a multilabel model's F1 per sample (its predicted set against its labels); NaN else

    @classmethod
    def empty(cls, n: int, key: tuple, label_shape: tuple = ()) -> Columns:
        return cls(key, np.full((n, *label_shape), -1, np.int64), np.full(n, -1, np.int64), np.full(n, np.nan),
                   np.zeros(n, bool), np.zeros(n, bool), np.full(n, np.nan))

    @property
    def computed(self) -> int:
        return int(np.count_nonzero(self.done))

    def put(self, rows: np.ndarray, chunk: dict) -> None:
        self.predictions[rows] = chunk["predictions"]
        self.steps[rows] = chunk["steps"]
        self.final_rel[rows] = chunk["final_rel"]
        self.converged[rows] = chunk["converged"]
        if chunk.get("f1") is not None:
            self.f1[rows] = chunk["f1"]
        self.done[rows] = True


class SampleTable:
    """A split's samples: index and label at once, computed columns as chunks arrive.

    ``predictions``, ``correct``, ``steps``, ``final_rel`` and ``converged`` read the clean columns (what the older
    whole-split table offered); ``shown`` is the set the plots follow (``now`` under a corruption, else ``clean``).
    """

    def __init__(self, split: str, indices: np.ndarray, labels: np.ndarray, solver_key: tuple,
                 corruption_key: tuple = ()) -> None:
        self.split = split
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)  # (N,), or (N, C) label sets for a multilabel model
        self.task = "multilabel" if self.labels.ndim == 2 else "multiclass"
        self.clean = Columns.empty(len(self.indices), solver_key, self.labels.shape[1:])
        self.now: Columns | None = None
        self.corruption_label = ""
        self.set_corruption(corruption_key, "")

    def __len__(self) -> int:
        return len(self.indices)

    # -- the whole-split view (clean) -------------------------------------------------------------------------
    predictions = property(lambda self: self.clean.predictions)
    steps = property(lambda self: self.clean.steps)
    final_rel = property(lambda self: self.clean.final_rel)
    converged = property(lambda self: self.clean.converged)
    f1 = property(lambda self: self.clean.f1)
    correct = property(lambda self: self.is_correct(self.clean))

    def is_correct(self, cols: Columns) -> np.ndarray:
        """Per row: computed and predicted right (multilabel: the predicted set is the true set)."""
        same = cols.predictions == self.labels
        return cols.done & (same.all(axis=1) if same.ndim == 2 else same)

    @property
    def shown(self) -> Columns:
        """The columns of what the plots show: under the current corruption, or clean."""
        return self.now if self.now is not None else self.clean

    @property
    def computed(self) -> int:
        """Rows whose every needed column is computed."""
        done = self.clean.done if self.now is None else self.clean.done & self.now.done
        return int(np.count_nonzero(done))

    @property
    def complete(self) -> bool:
        return self.computed == len(self)

    def row_of(self, sample: int) -> int | None:
        """The row of dataset sample ``sample``, or None when it is not in this split."""
        rows = np.flatnonzero(self.indices == int(sample))
        return int(rows[0]) if len(rows) else None

    # -- staleness ---------------------------------------------------------------------------------------------
    def set_corruption(self, key: tuple, label: str) -> None:
        """The corruption changed: the ``now`` columns start over (none while nothing is corrupted)."""
        self.corruption_label = label
        if not key:
            self.now = None
        elif self.now is None or self.now.key != key:
            self.now = Columns.empty(len(self), key, self.labels.shape[1:])

    def wanted(self) -> np.ndarray:
        """Rows with a needed column not computed yet."""
        done = self.clean.done if self.now is None else self.clean.done & self.now.done
        return ~done

    def next_rows(self, size: int, first: np.ndarray | None = None) -> np.ndarray:
        """Up to ``size`` rows to compute next: those of ``first`` (e.g. the rows on screen) that are wanted, then
        the first wanted rows in order."""
        wanted = self.wanted()
        picked = np.zeros(0, np.int64)
        if first is not None and len(first):
            first = np.asarray(first, np.int64)
            picked = first[wanted[first]][:size]
        if len(picked) < size:
            rest = np.flatnonzero(wanted)
            rest = rest[~np.isin(rest, picked)][: size - len(picked)]
            picked = np.concatenate([picked, rest])
        return picked

    def keys(self) -> tuple[tuple, tuple | None]:
        return self.clean.key, None if self.now is None else self.now.key

    def apply(self, rows: np.ndarray, keys: tuple, clean: dict | None, now: dict | None) -> bool:
        """Store a chunk computed for ``keys``; False (nothing stored) when the table moved on meanwhile."""
        solver_key, corruption_key = keys
        stored = False
        if clean is not None and self.clean.key == solver_key:
            self.clean.put(rows, clean)
            stored = True
        if now is not None and self.now is not None and self.now.key == corruption_key:
            self.now.put(rows, now)
            stored = True
        return stored

    def summary(self) -> dict:
        """Accuracy (multilabel: micro and macro F1), converged fraction and median steps over the computed rows
        of the shown columns."""
        cols = self.shown
        done = cols.done
        n = int(np.count_nonzero(done))
        if not n:
            return {"computed": 0}
        scores = (f1_scores(self.labels[done], cols.predictions[done]) if self.task == "multilabel"
                  else {"accuracy": float(self.is_correct(cols)[done].mean())})
        return {"computed": n, **scores, "converged": float(cols.converged[done].mean()),
                "median_steps": float(np.median(cols.steps[done]))}
