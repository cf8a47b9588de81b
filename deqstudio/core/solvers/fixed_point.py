"""Plain (optionally damped) fixed-point iteration: ``z ← (1 − τ)·z + τ·f(z)``."""

from __future__ import annotations

import torch

from .recorder import Recorder


def fixed_point(rec: Recorder, z0: torch.Tensor, *, tau: float) -> None:
    z = z0
    while not rec.done:
        fz, keep = rec.evaluate(z)
        if keep is not None:
            z, fz = z[keep], fz[keep]
        z = fz if tau == 1.0 else torch.lerp(z, fz, tau)
