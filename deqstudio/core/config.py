"""``ModelConfig``: everything needed to rebuild a model; stored in every checkpoint."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .bounds import MAX_ITER, SOLVER_OPTION_FIELDS, TOL, bounded_int, bounded_real, solver_option
from .bounds import shown as _shown
from .kinds import ABLATIONS, BACKWARD_MODES, DEQ_FUSIONS, ENCODERS, FUSIONS, GROUPS, MODALITY_KINDS, TASKS
from .solvers.registry import DEFAULT_SOLVER, SOLVER_NAMES, option_defaults

STOP_MODES = ("rel", "abs")

# The allowed range of every numeric field, checked whenever a config is built (and so on every
# checkpoint load): a value outside it would only fail later, as a solve that never ends or an
# allocation that cannot succeed. Integers: lowest..highest; reals: [lowest, highest].
INT_FIELDS = {
    "num_classes": (2, 100_000),
    "hidden": (GROUPS, 16_384),
    "encoder_hidden": (1, 16_384),
    "unrolled_steps": (1, 1_000),
    "max_iter": MAX_ITER,
    "backward_max_iter": MAX_ITER,
    "phantom_steps": (1, 1_000),
    "jac_vectors": (1, 1_000),
}
REAL_FIELDS = {
    "dropout": (0.0, 0.99),
    "tol": TOL,
    "backward_tol": TOL,
    "phantom_tau": (1e-3, 1.0),
    "jac_weight": (0.0, 1e6),
}
MAX_MODALITIES = 64
MAX_INPUT_DIM = 2**24
MAX_NAME = 256


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality: its name, kind, flattened feature count and display shape.

    ``encoder_hidden``: the first hidden width of an imported MaxOut encoder (None for every other encoder).
    """

    name: str
    input_dim: int
    kind: str = "vector"
    image_shape: tuple[int, int] | None = None
    encoder_hidden: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name == "fused" or len(self.name) > MAX_NAME:
            raise ValueError(f"modality name must be a non-empty string other than 'fused', of at most {MAX_NAME} "
                             f"characters, got {_shown(self.name)}")
        if isinstance(self.input_dim, bool) or not isinstance(self.input_dim, int) or self.input_dim < 1:
            raise ValueError(f"modality {self.name!r}: input_dim must be a positive integer, got {self.input_dim!r}")
        if self.input_dim > MAX_INPUT_DIM:
            raise ValueError(f"modality {self.name!r}: input_dim must be an integer in 1..{MAX_INPUT_DIM:,}, "
                             f"got {self.input_dim!r}")
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"modality {self.name!r}: kind must be one of {MODALITY_KINDS}, got {self.kind!r}")
        if self.kind == "image":
            if self.image_shape is None or len(self.image_shape) != 2:
                raise ValueError(f"image modality {self.name!r} needs image_shape (H, W)")
            if not all(_is_count(v) for v in self.image_shape):
                raise ValueError(f"image modality {self.name!r}: image_shape must be two positive integers, "
                                 f"got {tuple(self.image_shape)!r}")
            h, w = (int(v) for v in self.image_shape)
            if h * w != self.input_dim:
                raise ValueError(f"image modality {self.name!r}: image_shape {h}x{w} does not hold {self.input_dim} features")
            object.__setattr__(self, "image_shape", (h, w))
        if self.encoder_hidden is not None:
            object.__setattr__(self, "encoder_hidden",
                               bounded_int(f"modality {self.name!r}: encoder_hidden", self.encoder_hidden, 1, 16_384))


def _is_count(value) -> bool:
    """A positive whole number: an int, or an integral float as JSON round trips may give."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return value >= 1
    return isinstance(value, numbers.Real) and float(value).is_integer() and value >= 1


@dataclass(frozen=True)
class ModelConfig:
    """A fusion model, fully: encoders, fusion (with its solver and training options) and head.

    ``task``: "multiclass" (softmax over classes) or "multilabel" (a sigmoid per label). ``encoder``: one of
    ``ENCODERS`` ("native" for DEQ Studio's own models; the others describe imported official models, whose
    encoders feed the fusion directly, with no projection). ``normalise_inputs``: standardise each input with
    the stored statistics (False for imported models: features go in exactly as the official model received
    them). ``relu_after_norm``: the fused branch computes ReLU(GN(·)) instead of GN(ReLU(·)), as the MM-IMDB
    experiment's code does.
    """

    modalities: tuple[ModalitySpec, ...]
    num_classes: int
    fusion: str = "deq-udml"
    hidden: int = 64
    encoder_hidden: int = 128
    dropout: float = 0.1
    ablation: str = "full"
    unrolled_steps: int = 10
    solver: str = DEFAULT_SOLVER
    max_iter: int = 50
    tol: float = 1e-4
    stop_mode: str = "rel"
    solver_options: dict = field(default_factory=dict)
    backward: str = "implicit"
    backward_max_iter: int = 50
    backward_tol: float = 1e-6
    phantom_steps: int = 1
    phantom_tau: float = 1.0
    jac_weight: float = 0.0
    jac_vectors: int = 1
    class_names: tuple[str, ...] = ()
    task: str = "multiclass"
    encoder: str = "native"
    normalise_inputs: bool = True
    relu_after_norm: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.modalities, (tuple, list)) or len(self.modalities) > MAX_MODALITIES:
            raise ValueError(f"modalities must be a list of at most {MAX_MODALITIES} modalities")
        mods = tuple(m if isinstance(m, ModalitySpec) else ModalitySpec(**m) for m in self.modalities)
        object.__setattr__(self, "modalities", mods)
        for name, (low, high) in INT_FIELDS.items():
            object.__setattr__(self, name, bounded_int(name, getattr(self, name), low, high))
        for name, (low, high) in REAL_FIELDS.items():
            object.__setattr__(self, name, bounded_real(name, getattr(self, name), low, high))
        for name in ("fusion", "ablation", "solver", "stop_mode", "backward"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {_shown(getattr(self, name))}")
        if not isinstance(self.class_names, (tuple, list)) or len(self.class_names) > self.num_classes:
            raise ValueError(f"class_names must be a list of at most num_classes ({self.num_classes}) names")
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if not mods:
            raise ValueError("a model needs at least one modality")
        names = [m.name for m in mods]
        if len(set(names)) != len(names):
            raise ValueError(f"modality names must be unique, got {names}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}; choose one of {', '.join(FUSIONS)}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if self.hidden < GROUPS or self.hidden % GROUPS:
            raise ValueError(f"hidden must be a positive multiple of {GROUPS}, got {self.hidden}")
        if self.ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {self.ablation!r}; choose one of {', '.join(ABLATIONS)}")
        if self.ablation != "full" and self.fusion not in DEQ_FUSIONS:
            raise ValueError(f"ablation {self.ablation!r} applies to DEQ fusions only, not {self.fusion!r}")
        if self.backward not in BACKWARD_MODES:
            raise ValueError(f"unknown backward {self.backward!r}; choose one of {', '.join(BACKWARD_MODES)}")
        if self.solver not in SOLVER_NAMES:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {', '.join(SOLVER_NAMES)}")
        if self.stop_mode not in STOP_MODES:
            raise ValueError(f"unknown stop_mode {self.stop_mode!r}; choose one of {', '.join(STOP_MODES)}")
        if not isinstance(self.solver_options, dict):
            raise ValueError(f"solver_options must be a dict, got {type(self.solver_options).__name__}")
        allowed = option_defaults(self.solver)
        options = {}
        for key, value in self.solver_options.items():
            if key not in allowed:
                raise ValueError(f"solver_options: {_shown(key)} is not an option of solver {self.solver!r} "
                                 f"(it takes {', '.join(allowed) or 'none'})")
            if key in SOLVER_OPTION_FIELDS:
                options[key] = solver_option(key, value, f"solver_options.{key}")
            else:  # an option of a registered solver this table does not know: a modest finite number
                bounded_real(f"solver_options.{key}", value, -1e6, 1e6)
                options[key] = value
        object.__setattr__(self, "solver_options", options)
        self._check_import_fields(mods)

    def _check_import_fields(self, mods) -> None:
        for name in ("normalise_inputs", "relu_after_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {_shown(getattr(self, name))}")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {_shown(self.task)}; choose one of {', '.join(TASKS)}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {_shown(self.encoder)}; choose one of {', '.join(ENCODERS)}")
        if self.encoder == "native":
            return
        if self.fusion != "deq":
            raise ValueError(f"encoder {self.encoder!r} describes an imported DEQ fusion model; fusion must be 'deq', "
                             f"got {self.fusion!r}")
        for m in mods:
            if m.kind != "vector":
                raise ValueError(f"encoder {self.encoder!r} reads vector modalities only; {m.name!r} is an image")
            if self.encoder == "identity" and m.input_dim != self.hidden:
                raise ValueError(f"modality {m.name!r}: features of {m.input_dim} values do not fit a fusion of "
                                 f"width {self.hidden} (encoder 'identity' feeds them in as they are)")
            if self.encoder == "maxout" and m.encoder_hidden is None:
                raise ValueError(f"modality {m.name!r}: a maxout encoder needs encoder_hidden")

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    @property
    def is_deq(self) -> bool:
        return self.fusion in DEQ_FUSIONS

    @property
    def is_udml(self) -> bool:
        return self.fusion == "deq-udml"

    @property
    def solver_settings(self):
        """The forward solve's settings (``SolverSettings``), as stored in these fields."""
        from .solvers.settings import SolverSettings

        return SolverSettings(self.solver, self.max_iter, self.tol, self.stop_mode, dict(self.solver_options))

    @property
    def backward_settings(self):
        """How training differentiates through the fixed point (``BackwardSettings``)."""
        from .fusion.deq_fusion import BackwardSettings

        return BackwardSettings(self.backward, self.backward_max_iter, self.backward_tol, self.phantom_steps,
                                self.phantom_tau)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, dicts, numbers, strings): safe for ``weights_only`` loading and JSON."""
        d = asdict(self)
        d["modalities"] = [
            {**asdict(m), "image_shape": list(m.image_shape) if m.image_shape else None} for m in self.modalities
        ]
        d["class_names"] = list(self.class_names)
        d["solver_options"] = dict(self.solver_options)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config key(s): {', '.join(unknown)}")
        missing = sorted({"modalities", "num_classes"} - set(data))
        if missing:
            raise ValueError(f"model config lacks: {', '.join(missing)}")
        mods = []
        for m in data["modalities"]:
            if not isinstance(m, dict):
                raise ValueError("each modality in a model config must be a dict")
            shape = m.get("image_shape")
            mods.append(ModalitySpec(**{**m, "image_shape": tuple(shape) if shape else None}))
        try:
            return cls(**{**data, "modalities": tuple(mods), "class_names": tuple(data.get("class_names", ()))})
        except TypeError as exc:
            raise ValueError(f"invalid model config: {exc}") from None
