"""The one interface everything above ``core`` uses to reach a model: ``ModelAdapter``.

An adapter says what the model needs from a dataset (modalities, sizes, kinds, image shapes), what it
predicts (class names, task), how its fixed-point state is laid out (blocks, which one is fused), what it can
tell (``Capabilities``), how it is solved by default, how large each modality's features are (the scale of
Gaussian corruptions), where it came from and what trusting it means; and it runs: ``adapter(inputs,
settings, playback)`` returns a ``ModelRun`` of numpy arrays with the solver's trace.

A diagnostic a model lacks is ``None`` in its ``ModelRun`` and is shown as ``NOT_PROVIDED`` (plots, tables)
or ``null`` (JSON) — never an error.

DEQ Studio's own checkpoints come through ``deqstudio.core.native.NativeAdapter``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from collections.abc import Callable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is only needed by adapters and analyses that build fixed-point problems
    import torch

    from .solvers.batch_map import BatchMap, BlockLayout
    from .solvers.settings import SolverSettings
    from .solvers.trace import SolverTrace

from .kinds import MODALITY_KINDS, TASKS  # noqa: F401 (part of the adapter vocabulary)
FUSED = "fused"
NOT_PROVIDED = "not provided by this model"
# said wherever corruptions are set or recorded for a model whose dataset holds the fusion's input features
# (an imported model without its encoders): the sliders perturb those features, not the raw data
FEATURE_INPUTS_NOTE = "corruptions act on imported features"


@dataclass(frozen=True)
class ModalityInfo:
    """One input a model reads: its name in the dataset, its flattened feature count, kind and image shape."""

    name: str
    size: int
    kind: str = "vector"
    image_shape: tuple[int, int] | None = None


@dataclass(frozen=True)
class BlockInfo:
    """One block of the fixed-point state: name, flattened size, and its shape when it is not a vector."""

    name: str
    size: int
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a model can tell besides its prediction.

    solver: a fixed point found by DEQ Studio's solvers (per-step traces, residuals, equilibrium analyses).
    gates: per-step gate values and each modality's share of the fused update.
    unimodal: per-modality logits (the energy score).
    noise: UDML's predicted noise σ̂, fusion weights w and the PE baseline.
    dependency: a stored dependency α per modality.
    """

    solver: bool = False
    gates: bool = False
    unimodal: bool = False
    noise: bool = False
    dependency: bool = False


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from, and the trust opening it asks for."""

    kind: str  # "native", "imported", "package", "plugin"
    path: str = ""
    sha256: str = ""
    description: str = ""
    trust: str = "nothing from the file runs: weights are read as data"
    details: Mapping = field(default_factory=dict)


@dataclass
class ModelRun:
    """One evaluation of a batch. Arrays are (B, ...); a quantity the model does not provide is None.

    probabilities: class probabilities (softmax for multiclass, per-label sigmoid for multilabel), (B, C).
    logits: (B, C).
    trace: the solver's trace (per-step extras ``probabilities``, ``gates``, ``gate_share`` with playback).
    z_star: the equilibrium state, (B, D).
    sigma_hat, weights, pe, energy: per modality, (B, M).
    """

    probabilities: np.ndarray
    logits: np.ndarray
    trace: "SolverTrace | None" = None
    z_star: np.ndarray | None = None
    sigma_hat: np.ndarray | None = None
    weights: np.ndarray | None = None
    pe: np.ndarray | None = None
    energy: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.probabilities.shape[0])

    def rows(self, index) -> "ModelRun":
        """The run of some rows (an index array or a slice); the trace is cut to them too."""
        def pick(a):
            return None if a is None else a[index]

        trace = None
        if self.trace is not None:
            rows = np.arange(len(self))[index]
            trace = self.trace.rows(np.atleast_1d(rows))
        return replace(self, probabilities=self.probabilities[index], logits=self.logits[index], trace=trace,
                       z_star=pick(self.z_star), sigma_hat=pick(self.sigma_hat), weights=pick(self.weights),
                       pe=pick(self.pe), energy=pick(self.energy))


AUTOGRAD, FINITE_DIFFERENCE = "autograd", "finite-difference"
DERIVATIVES = (AUTOGRAD, FINITE_DIFFERENCE)  # how an equilibrium analysis differentiates a problem's maps


@dataclass
class FixedPointProblem:
    """A batch's fixed-point map and what reads its state: for solver races and equilibrium analyses.

    The equilibrium analyses (``deqstudio.core.equilibrium``) also need the map as a function of the raw
    inputs, to differentiate the prediction with respect to each modality as stored in the dataset:
    ``map_with_inputs(z, xs)`` (rows independent, ``xs`` one (b, size) tensor per modality) and the
    ``inputs`` the problem was built from. ``derivatives`` says how they may be differentiated:
    ``"autograd"`` (``f``, ``map_with_inputs`` and ``head`` are differentiable torch functions) or
    ``"finite-difference"`` (they can only be evaluated: an analysis then takes central differences).

    A map that autograd cannot differentiate (a DEQ package's, run by onnxruntime) offers ``f.jvp(z, v)`` and
    names its method in ``f.jvp_method`` ("jvp program" or "finite differences"); without them, use autograd.
    """

    f: "BatchMap"  # (b, D) -> (b, D), restrictable to a subset of the batch
    z0: "torch.Tensor"  # (B, D) starting states
    layout: "BlockLayout"
    head: Callable[["torch.Tensor"], "torch.Tensor"]  # (b, D) states -> (b, C) logits
    inputs: "Sequence[torch.Tensor] | None" = None  # (B, size) raw inputs per modality; None: not provided
    map_with_inputs: "Callable[[torch.Tensor, Sequence[torch.Tensor]], torch.Tensor] | None" = None
    task: str = "multiclass"  # how logits become probabilities (softmax, or a sigmoid per label)
    derivatives: str = AUTOGRAD

    def __post_init__(self) -> None:
        if self.derivatives not in DERIVATIVES:
            raise ValueError(f"unknown derivatives {self.derivatives!r}; choose one of {', '.join(DERIVATIVES)}")

    def probabilities(self, z: "torch.Tensor") -> "torch.Tensor":
        """Class probabilities (softmax) or per-label probabilities (sigmoid, multilabel) read out of states z."""
        import torch

        logits = self.head(z)
        return torch.sigmoid(logits) if self.task == "multilabel" else torch.softmax(logits, dim=-1)


@runtime_checkable
class ModelAdapter(Protocol):
    """What the studio, the headless commands, the analyses and the report know about a model."""

    name: str  # a short label: "deq-udml", "DEQFusion (imported)", a package's name
    modalities: tuple[ModalityInfo, ...]
    class_names: tuple[str, ...]
    task: str  # one of TASKS
    blocks: tuple[BlockInfo, ...]  # the fixed-point state's layout; empty without a solver
    fused_block: str | None
    capabilities: Capabilities
    solver_defaults: "SolverSettings | None"
    feature_scales: tuple[np.ndarray | None, ...]  # per modality: the std Gaussian corruption is scaled by
    dependency: Mapping[str, float]  # α per modality; empty when not provided
    source: ModelSource
    device: str

    def __call__(self, inputs: Sequence[np.ndarray], settings: "SolverSettings | None" = None,
                 playback: bool = False) -> ModelRun: ...

    def fixed_point_problem(self, inputs: Sequence[np.ndarray]) -> FixedPointProblem: ...

    def to(self, device: str) -> "ModelAdapter": ...

    def copy(self) -> "ModelAdapter": ...


class AdapterBase:
    """Derived facts every adapter shares; adapters set the protocol's attributes and inherit these."""

    modalities: tuple[ModalityInfo, ...] = ()
    class_names: tuple[str, ...] = ()
    blocks: tuple[BlockInfo, ...] = ()
    capabilities: Capabilities = Capabilities()
    task: str = "multiclass"

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_note(self) -> str:
        """What the inputs are when it matters to a reader (``FEATURE_INPUTS_NOTE``), or ""."""
        source = getattr(self, "source", None)
        return str(source.details.get("input_note", "")) if source is not None else ""

    @property
    def has_solver(self) -> bool:
        return self.capabilities.solver

    def modality(self, name: str) -> ModalityInfo:
        for m in self.modalities:
            if m.name == name:
                return m
        raise ValueError(f"the model has no modality {name!r}; it has {', '.join(self.modality_names)}")

    def probabilities_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """Softmax over classes (multiclass) or a sigmoid per label (multilabel), in float64."""
        z = np.asarray(logits, dtype=np.float64)
        if self.task == "multilabel":
            with np.errstate(over="ignore"):
                return 1.0 / (1.0 + np.exp(-z))
        z = z - np.max(z, axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
