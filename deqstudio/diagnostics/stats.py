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
