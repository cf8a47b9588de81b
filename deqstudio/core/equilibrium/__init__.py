"""Why an equilibrium holds or breaks: stability, block coupling, sensitivity, linear response, multiple starts.

For a sample's equilibrium z* = f(z*; x) with J = ∂f/∂z at z*:

- ρ(J), the spectral radius (Arnoldi on Jacobian-vector products; on the whole Jacobian for small states), beside
  the contraction the solve showed (``spectral``);
- ‖∂f_a/∂z_b‖₂ for every pair of blocks (``spectral.block_norms``);
- ‖∂p_ŷ/∂x_m‖ through the equilibrium by the implicit function theorem, one adjoint solve with DEQ Studio's
  solvers (``linear``);
- the linear response (I − J)⁻¹ ∂f/∂x Δx to a corruption beside the actual shift (``linear``);
- solves from zeros, the clean z* and seeded random states, and whether they agree (``starts``).

The derivatives come from a ``Linearisation`` (``operators``): autograd for models torch can differentiate,
central differences for models that can only be run. ``EquilibriumReport`` (``report``) holds the result as
numpy values; it imports without torch.
"""

from __future__ import annotations

__all__ = [
    "DENSE_MAX", "EquilibriumOptions", "EquilibriumReport", "LinearSolve", "Reference", "StartsOutcome",
    "analyse_equilibrium", "linear_shift", "linearise", "multiple_starts", "observed_contraction", "spectral_radii",
]

_LAZY = {
    "EquilibriumReport": "report", "LinearSolve": "report", "StartsOutcome": "report",
    "DENSE_MAX": "analysis", "EquilibriumOptions": "analysis", "Reference": "analysis",
    "analyse_equilibrium": "analysis", "linear_shift": "analysis", "spectral_radii": "analysis",
    "linearise": "operators", "multiple_starts": "starts", "observed_contraction": "spectral",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
