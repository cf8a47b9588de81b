"""The values the studio passes between its threads and views: plain, immutable where they are requests.

``SolveRequest`` is built on the UI thread and solved on the worker; ``SolveResult`` (two ``RunView``s, clean
and corrupted) comes back; ``BrowseTable`` is a split's samples table; ``ModelInfo`` is what a view needs to
know about the open model. All numpy or plain Python: the GUI never touches torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.adapter import Capabilities
from ..core.corruptions import Corruption
from ..core.equilibrium.report import EquilibriumReport
from ..core.solvers.settings import SolverSettings


@dataclass(frozen=True)
class SolveRequest:
    """What to solve: a sample, each modality's corruption, the solver settings and the device."""

    generation: int
    sample: int
    corruptions: tuple[tuple[str, Corruption], ...]
    solver: SolverSettings
    device: str = "cpu"

    def active_corruptions(self) -> dict[str, Corruption]:
        return {m: c for m, c in self.corruptions if c.active}

    def corruption_specs(self) -> list[str]:
        """The active corruptions as ``MOD=KIND:SEVERITY[@SEED]``."""
        return [c.text(m) for m, c in self.corruptions if c.active]


@dataclass
class RunView:
    """One solve of one sample, as arrays over solver steps (K = steps recorded; step k is the iterate z_k).

    A quantity the model does not provide is None (per modality) or an empty array (per step).
    """

    rel: np.ndarray  # (K,)
    abs: np.ndarray  # (K,)
    block_rel: np.ndarray  # (K, blocks)
    probabilities: np.ndarray  # (K, C); for models without a solver K = 1 (their one pass)
    gates: np.ndarray  # (K, M) mean gate value per modality
    gate_share: np.ndarray  # (K, M)
    nstep: int
    converged: bool
    reason: str
    best_step: int
    prediction: int
    final_probabilities: np.ndarray  # (C,)
    z_star: np.ndarray  # (D,) joint state, empty without a solver
    block_slices: list[tuple[int, int]]
    sigma_hat: np.ndarray | None  # (M,)
    weights: np.ndarray | None  # (M,)
    pe: np.ndarray | None  # (M,)
    energy: np.ndarray | None  # (M,)
    wall_ms: float
    predicted: tuple[int, ...] = ()  # the predicted classes: (prediction,), or a multilabel model's label set

    @property
    def final_rel(self) -> float:
        """The relative residual of the returned state (the best step's); NaN without a solver."""
        return float(self.rel[self.best_step]) if len(self.rel) else float("nan")


@dataclass
class SolveResult:
    request: SolveRequest
    label: int
    clean: RunView
    corrupted: RunView
    shift: np.ndarray  # (blocks,) ‖z*_corrupted − z*_clean‖ per block
    images: dict[str, tuple[np.ndarray, np.ndarray]]  # modality → (before, after) (H, W)
    severities: dict[str, float]
    device: str
    seconds: float
    notice: str = ""
    fusion: str = ""  # the model's name
    modality_names: tuple[str, ...] = ()
    block_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    dependency: dict = field(default_factory=dict)
    corruption_labels: dict = field(default_factory=dict)
    capabilities: Capabilities = field(default_factory=Capabilities)
    clean_from_cache: bool = False  # the clean run was an earlier request's, reused
    task: str = "multiclass"
    label_set: tuple[int, ...] = ()  # a multilabel sample's true labels (``label`` is then -1)
    input_note: str = ""  # e.g. "corruptions act on imported features"

    @property
    def from_cache(self) -> bool:
        """Nothing was solved for this result: it is an earlier clean run, reused."""
        return self.clean_from_cache and self.corrupted is self.clean

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    @property
    def true_labels(self) -> tuple[int, ...]:
        """The true classes: (label,), or a multilabel sample's label set."""
        return self.label_set if self.multilabel else (self.label,)

    def names(self, indices) -> str:
        """Class names joined by ", " ("none" for an empty label set)."""
        names = [self.class_names[i] if 0 <= i < len(self.class_names) else str(i) for i in indices]
        return ", ".join(names) if names else "none"

    def label_text(self) -> str:
        return self.names(self.true_labels)

    def prediction_text(self, run: RunView) -> str:
        return self.names(run.predicted if self.multilabel else (run.prediction,))

    def truth_summary(self) -> str:
        """"true class X", or "true labels a, b" for a multilabel sample."""
        return f"true {'labels' if self.multilabel else 'class'} {self.label_text()}"

    def prediction_summary(self, run: RunView) -> str:
        """"X (p = 0.912)", or a multilabel run's "a, b (F1 = 0.67)"."""
        if self.multilabel:
            return f"{self.prediction_text(run)} (F1 = {self.sample_f1(run):.2f})"
        return f"{self.prediction_text(run)} (p = {run.final_probabilities[run.prediction]:.3f})"

    def sample_f1(self, run: RunView) -> float | None:
        """A multilabel run's F1 of its predicted label set against the true one (None for multiclass)."""
        if not self.multilabel:
            return None
        true, got = set(self.label_set), set(run.predicted)
        total = len(true) + len(got)
        return 1.0 if total == 0 else 2 * len(true & got) / total


@dataclass
class BrowseTable:
    """A split's samples: label, prediction, steps, final residual, converged (clean inputs).

    Multilabel: ``labels`` and ``predictions`` are (N, C) label sets of 0/1, ``correct`` an exact match and
    ``f1`` each sample's F1; ``metrics`` holds the split's scores (accuracy, or micro/macro F1).
    """

    indices: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    correct: np.ndarray
    steps: np.ndarray
    final_rel: np.ndarray
    converged: np.ndarray
    task: str = "multiclass"
    f1: np.ndarray | None = None
    metrics: dict = field(default_factory=dict)


@dataclass
class ModelInfo:
    """What a view needs to know about the open model, without torch."""

    fusion: str  # the model's name
    modality_names: tuple[str, ...]
    modality_kinds: tuple[str, ...]
    image_shapes: tuple
    class_names: tuple[str, ...]
    block_names: tuple[str, ...]
    capabilities: Capabilities = field(default_factory=Capabilities)
    task: str = "multiclass"
    source: str = ""  # where it came from, in words
    dependency: dict[str, float] = field(default_factory=dict)
    dependency_loss: dict[str, float] = field(default_factory=dict)
    solver_defaults: SolverSettings | None = None
    input_note: str = ""  # "corruptions act on imported features" for a model fed its fusion's features

    @property
    def is_deq(self) -> bool:
        """Whether it has a fixed point that DEQ Studio's solvers find (per-step traces)."""
        return self.capabilities.solver

    @property
    def is_udml(self) -> bool:
        """Whether it predicts noise and weights its modalities (σ̂, w, PE)."""
        return self.capabilities.noise


@dataclass(frozen=True)
class EquilibriumRequest:
    """Analyse the equilibria of a solved result (asked after the solve; a newer solve makes it stale)."""

    generation: int  # the solve's
    result: SolveResult


@dataclass
class EquilibriumResult:
    """The equilibrium reports of one solved sample: its clean run, and its corrupted run (the clean report
    itself when nothing is corrupted). Both None for a model without a fixed point."""

    generation: int  # the solve's whose runs were analysed
    sample: int
    clean: EquilibriumReport | None
    corrupted: EquilibriumReport | None
    seconds: float = 0.0

    @property
    def available(self) -> bool:
        return self.corrupted is not None
