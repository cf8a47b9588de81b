"""Multinomial logistic regression (L2, LBFGS) — the linear reference a fusion model must beat."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _standardise(train: torch.Tensor, *others: torch.Tensor):
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(x - mean) / std for x in (train, *others)]


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float = 1e-3, max_iter: int = 200):
    """Weights (D+1, C) minimising mean CE + l2·‖W‖²/2 on float64 inputs."""
    x = x.double()
    w = torch.zeros(x.shape[1] + 1, num_classes, dtype=torch.float64, requires_grad=True)
    xb = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xb @ w, y) + 0.5 * l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def _accuracy(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    xb = torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
    return float(((xb @ w).argmax(1) == y).double().mean())


def logistic_regression_accuracy(train_x, train_y, val_x, val_y, test_x, test_y, num_classes: int,
                                 l2_grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0)) -> dict:
    """Test accuracy of the L2 strength chosen on validation, on standardised features."""
    train_x, val_x, test_x = _standardise(train_x.double(), val_x.double(), test_x.double())
    best = None
    for l2 in l2_grid:
        w = fit_logistic(train_x, train_y, num_classes, l2=l2)
        val = _accuracy(w, val_x, val_y)
        if best is None or val > best[0]:
            best = (val, l2, w)
    val, l2, w = best
    return {"val_accuracy": val, "test_accuracy": _accuracy(w, test_x, test_y), "l2": l2}
