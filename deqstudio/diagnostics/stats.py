"""Small statistics the analyses report: Spearman's rank correlation and the area under a severity curve."""

from __future__ import annotations

import numpy as np


def spearman(a, b) -> float:
    """Spearman's rank correlation with average ranks for ties; NaN when either side is constant."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths, got {len(a)} and {len(b)}")
    keep = np.isfinite(a) & np.isfinite(b)
    ra, rb = _ranks(a[keep]), _ranks(b[keep])
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]


def area_under_curve(levels, accuracy) -> float:
    """Mean accuracy over the severity range (trapezoid rule, normalised by the range)."""
    levels, accuracy = np.asarray(levels, float), np.asarray(accuracy, float)
    if len(levels) < 2 or not np.all(np.isfinite(accuracy)):
        return float("nan")
    return float(np.trapezoid(accuracy, levels) / (levels[-1] - levels[0]))


# -- multilabel ---------------------------------------------------------------------------------------
THRESHOLD = 0.5  # a label is predicted when its sigmoid probability exceeds this


def label_sets(probabilities) -> np.ndarray:
    """(N, C) 0/1 predicted label sets from per-label probabilities."""
    return (np.asarray(probabilities, dtype=np.float64) > THRESHOLD).astype(np.int64)


def sample_f1(labels, predicted) -> np.ndarray:
    """Per sample, the F1 of its predicted label set against its true one (1 when both are empty)."""
    y, p = np.asarray(labels, dtype=bool), np.asarray(predicted, dtype=bool)
    both = (y & p).sum(axis=-1).astype(np.float64)
    total = (y.sum(axis=-1) + p.sum(axis=-1)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * both / np.where(total > 0, total, 1), 1.0)


def f1_scores(labels, predicted) -> dict[str, float]:
    """Micro and macro F1 over label sets (N, C), as the MM-IMDB experiments report them.

    Micro: one F1 of every (sample, label) decision pooled. Macro: the mean over labels of each label's F1,
    a label never true nor predicted counting 0 (scikit-learn's ``zero_division=0``). NaN for no samples.
    """
    y, p = np.asarray(labels, dtype=bool), np.asarray(predicted, dtype=bool)
    if y.shape[0] == 0:
        return {"micro_f1": float("nan"), "macro_f1": float("nan")}
    tp = (y & p).sum(axis=0).astype(np.float64)
    fp = (~y & p).sum(axis=0).astype(np.float64)
    fn = (y & ~p).sum(axis=0).astype(np.float64)
    micro_den = 2 * tp.sum() + fp.sum() + fn.sum()
    per_label = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return {"micro_f1": float(2 * tp.sum() / micro_den) if micro_den > 0 else 0.0,
            "macro_f1": float(per_label.mean())}
