"""What an equilibrium analysis found for one sample, as plain numpy values (no torch: views and files read it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _number(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


@dataclass
class LinearSolve:
    """How a linear fixed point was solved: the solver, its steps, whether it met the tolerance, any fallback."""

    solver: str
    steps: int
    converged: bool
    residual: float
    fallback: str = ""  # "direct": the iterative solve failed and the dense system was solved instead

    def to_json(self) -> dict:
        return {"solver": self.solver, "steps": self.steps, "converged": self.converged,
                "residual": _number(self.residual), "fallback": self.fallback or None}


@dataclass
class StartsOutcome:
    """What solving one sample again from several starts found."""

    count: int  # starts solved: zeros, the reference, and the random ones
    converged: int  # how many of them met the tolerance
    max_distance: float  # largest ‖z_i − z_j‖ / ‖z*‖ over pairs of converged starts (NaN: fewer than two)
    threshold: float  # the agreement threshold: 10 × the solver's tolerance
    labels: tuple[str, ...] = ()  # what each start was: "zeros", "reference", "random 0", ...
    distances: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (count,) ‖z_i − z*‖ / ‖z*‖

    @property
    def agree(self) -> bool | None:
        """True: one equilibrium; False: more than one; None: fewer than two starts converged (unknown)."""
        if self.converged < 2 or not np.isfinite(self.max_distance):
            return None
        return bool(self.max_distance < self.threshold)

    def to_json(self) -> dict:
        return {"count": self.count, "converged": self.converged, "max_distance": _number(self.max_distance),
                "threshold": self.threshold, "agree": self.agree}


@dataclass
class EquilibriumReport:
    """Stability, coupling, sensitivity, linear response and multiple starts at one sample's equilibrium z*.

    spectral_radius: ρ(J), J = ∂f/∂z at z*; ≥ 1 means plain iteration cannot converge there.
    contraction_observed: the residual's shrink factor per step over the solve's last steps (None: too few).
    coupling: (blocks, blocks) ‖∂f_a/∂z_b‖₂, rows a the updated block, columns b the influencing one.
    labels: the class indices whose probability was differentiated (the prediction; for a multilabel model
        each label predicted present, or the likeliest when none is).
    sensitivity: (labels, modalities) ‖∂p_label/∂x_m‖₂ over the modality's raw input features.
    predicted_shift / actual_shift: (blocks,) ‖δz_block‖ of the linear response (I − J)⁻¹ ∂f/∂x Δx and of the
        solved shift z* − z*_clean; None for a clean input.
    """

    block_names: tuple[str, ...]
    modality_names: tuple[str, ...]
    derivatives: str
    spectral_radius: float
    spectral_method: str
    spectral_steps: int
    contraction_observed: float | None
    coupling: np.ndarray
    labels: tuple[int, ...]
    sensitivity: np.ndarray
    adjoint: list[LinearSolve]
    starts: StartsOutcome
    predicted_shift: np.ndarray | None = None
    actual_shift: np.ndarray | None = None
    predicted_total: float = float("nan")
    actual_total: float = float("nan")
    response: list[LinearSolve] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)  # stage → seconds

    @property
    def unstable(self) -> bool:
        return bool(np.isfinite(self.spectral_radius) and self.spectral_radius >= 1.0)

    @property
    def sensitivity_total(self) -> np.ndarray:
        """(modalities,) the sensitivity over every differentiated label (root sum of squares)."""
        return np.sqrt((np.asarray(self.sensitivity, dtype=np.float64) ** 2).sum(axis=0))

    @property
    def sensitivity_share(self) -> np.ndarray:
        """(modalities,) each modality's part of the total sensitivity (NaN when there is none)."""
        s = self.sensitivity_total
        total = s.sum()
        return s / total if total > 0 and np.isfinite(total) else np.full_like(s, np.nan)

    @property
    def shift_ratio(self) -> float | None:
        """‖actual shift‖ / ‖linear prediction‖ over the whole state: 1 for a linear response."""
        if self.predicted_shift is None or not (self.predicted_total > 0):
            return None
        return _number(self.actual_total / self.predicted_total)

    def to_json(self, class_names=()) -> dict:
        blocks, mods = self.block_names, self.modality_names

        def per(names, values):
            return None if values is None else {n: _number(v) for n, v in zip(names, values)}

        def label(i):
            return class_names[i] if i < len(class_names) else str(i)

        return {
            "spectral_radius": _number(self.spectral_radius),
            "unstable": self.unstable,
            "spectral_method": self.spectral_method,
            "contraction_observed": _number(self.contraction_observed),
            "coupling": {a: {b: _number(self.coupling[i, j]) for j, b in enumerate(blocks)}
                         for i, a in enumerate(blocks)},
            "sensitivity": per(mods, self.sensitivity_total),
            "sensitivity_share": per(mods, self.sensitivity_share),
            "sensitivity_labels": [label(i) for i in self.labels],
            "sensitivity_per_label": {label(i): per(mods, row) for i, row in zip(self.labels, self.sensitivity)},
            "predicted_shift": per(blocks, self.predicted_shift),
            "actual_shift": per(blocks, self.actual_shift),
            "shift_ratio": self.shift_ratio,
            "inits": self.starts.to_json(),
            "derivatives": self.derivatives,
            "adjoint": [s.to_json() for s in self.adjoint],
            "seconds": round(self.seconds, 4),
        }
