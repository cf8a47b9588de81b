"""``deqstudio import mogonet``: the MOGONET / MM-Dynamics CSV folder the BRCA experiment reads, as a dataset file.

The layout: ``{v}_tr.csv`` and ``{v}_te.csv`` per view v = 1, 2, … (one sample per line, comma-separated
numbers, no header), ``labels_tr.csv`` and ``labels_te.csv`` (one class index per line, written as floats),
optionally ``{v}_featname.csv`` (one feature name per line) and a README naming the classes ("0: Normal-like").
Views 1, 2, 3 are mRNA expression, DNA methylation and miRNA expression in MOGONET's datasets, named
``mrna``, ``dna``, ``mirna`` here as in the BRCA experiment's code.

By default the features are min-max scaled with the training rows' minimum and maximum, as the official BRCA
code does before training (``(x - min) / (max - min + 1e-10)``), so the dataset holds what that model received.
The official split has train and test only; a validation split is drawn from train, stratified by class, with
a seed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import DatasetError, UsageError, printable
from ..io.dataset import Dataset, Modality, write_dataset

VIEW_NAMES = ("mrna", "dna", "mirna")
EPS = 1e-10  # the official code's guard in the min-max scaling
_CLASS_LINE = re.compile(r"^\s*(\d+)\s*:\s*(.+?)\s*$")
MAX_CSV = 2 * 1024**3


def _read_csv(path: Path) -> np.ndarray:
    """(rows, columns) float64 from a comma-separated file of numbers; a bad file is one line naming it."""
    label = printable(path.name)
    if not path.is_file():
        raise DatasetError(f"{label}: missing from {printable(str(path.parent))}")
    if path.stat().st_size > MAX_CSV:
        raise DatasetError(f"{label}: larger than {MAX_CSV // 1024**3} GiB")
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append([float(v) for v in line.split(",")])
            except ValueError:
                raise DatasetError(f"{label}: line {number} holds something other than comma-separated "
                                   "numbers") from None
            if len(rows[-1]) != len(rows[0]):
                raise DatasetError(f"{label}: line {number} has {len(rows[-1])} values, line 1 has {len(rows[0])}")
    if not rows:
        raise DatasetError(f"{label}: empty")
    data = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(data).all():
        raise DatasetError(f"{label}: holds non-finite values (NaN or Inf)")
    return data


def _labels(path: Path) -> np.ndarray:
    raw = _read_csv(path)
    if raw.shape[1] != 1:
        raise DatasetError(f"{printable(path.name)}: one class index per line expected, found {raw.shape[1]} values")
    raw = raw[:, 0]
    if (raw < 0).any() or (raw != np.round(raw)).any():
        raise DatasetError(f"{printable(path.name)}: class indices must be whole numbers >= 0")
    return raw.astype(np.int64)


def _class_names(folder: Path, count: int, given) -> tuple[str, ...]:
    if given:
        names = tuple(given)
        if len(names) != count:
            raise UsageError(f"--class-names gives {len(names)} names; the labels have {count} classes")
        return names
    found = {}
    for readme in sorted(folder.glob("README*")):
        for line in readme.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _CLASS_LINE.match(line)
            if match:
                found.setdefault(int(match.group(1)), printable(match.group(2))[:80])
    if set(found) >= set(range(count)):
        return tuple(found[i] for i in range(count))
    return tuple(f"class {i}" for i in range(count))


def _views(folder: Path) -> list[int]:
    views = []
    while (folder / f"{len(views) + 1}_tr.csv").exists():
        views.append(len(views) + 1)
    if not views:
        raise DatasetError(f"{printable(str(folder))}: no 1_tr.csv (the MOGONET layout: {{v}}_tr.csv, {{v}}_te.csv, "
                           "labels_tr.csv, labels_te.csv)")
    return views


def _val_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(fraction * len(idx)))
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def read_mogonet(folder: str | os.PathLike, *, val_fraction: float = 0.2, seed: int = 0, class_names=None,
                 scale: bool = True, name: str | None = None) -> Dataset:
    """The folder as a ``Dataset`` (train rows first, then test); any problem is one ``DeqStudioError`` line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{printable(str(folder))}: not a folder")
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"--val-fraction must lie strictly between 0 and 1, got {val_fraction}")
    y_tr, y_te = _labels(folder / "labels_tr.csv"), _labels(folder / "labels_te.csv")
    modalities = {}
    for v in _views(folder):
        tr, te = _read_csv(folder / f"{v}_tr.csv"), _read_csv(folder / f"{v}_te.csv")
        for part, data, labels in (("tr", tr, y_tr), ("te", te, y_te)):
            if data.shape[0] != len(labels):
                raise DatasetError(f"{v}_{part}.csv has {data.shape[0]} rows, labels_{part}.csv {len(labels)}")
        if te.shape[1] != tr.shape[1]:
            raise DatasetError(f"{v}_te.csv has {te.shape[1]} columns, {v}_tr.csv {tr.shape[1]}")
        featnames = folder / f"{v}_featname.csv"
        if featnames.is_file():
            count = sum(1 for line in featnames.read_text(encoding="utf-8", errors="replace").splitlines()
                        if line.strip())
            if count != tr.shape[1]:
                raise DatasetError(f"{v}_featname.csv names {count} features, {v}_tr.csv has {tr.shape[1]} columns")
        if scale:  # as the official code: the training rows' minimum and maximum, applied to both parts
            low = tr.min(axis=0, keepdims=True)
            high = (tr - low).max(axis=0, keepdims=True) + EPS
            tr, te = (tr - low) / high, (te - low) / high
        view = VIEW_NAMES[v - 1] if v <= len(VIEW_NAMES) else f"view{v}"
        modalities[view] = Modality(view, "vector", np.concatenate([tr, te]).astype(np.float32))
    labels = np.concatenate([y_tr, y_te])
    count = int(labels.max()) + 1
    if count < 2:
        raise DatasetError("the labels name a single class; a classifier needs at least 2")
    train, val = _val_split(y_tr, val_fraction, seed)
    if len(val) == 0 or len(train) == 0:
        raise UsageError(f"--val-fraction {val_fraction} leaves {'no validation' if len(val) == 0 else 'no training'} "
                         f"samples of the {len(y_tr)} training rows")
    test = np.arange(len(y_tr), len(labels), dtype=np.int64)
    how = "min-max scaled with the training rows' minimum and maximum (as the official BRCA code)" if scale \
        else "as in the CSV files (not scaled)"
    return Dataset(
        name=name or folder.name, modalities=modalities, labels=labels, class_names=_class_names(folder, count, class_names),
        splits={"train": train.astype(np.int64), "val": val.astype(np.int64), "test": test},
        description=f"MOGONET CSV layout, {how}; validation split drawn from train (fraction {val_fraction:g}, "
                    f"seed {seed}, stratified)",
        source=str(folder.resolve()),
    )


def import_mogonet(folder, out, **options) -> tuple[Dataset, Path]:
    """Read the folder and write the dataset file atomically."""
    ds = read_mogonet(folder, **options)
    return ds, write_dataset(ds, out)
