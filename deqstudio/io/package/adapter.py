"""``PackageAdapter``: a DEQ package's ONNX programs behind the ``ModelAdapter`` interface.

DEQ Studio's own solvers solve the package's ``f``: each evaluation is one onnxruntime call on the active rows,
so per-step traces, per-block residuals (2-D blocks flattened), compaction and playback work as for native
models. ``head`` gives the logits (softmax or per-label sigmoid by the contract's task), ``gates``,
``unimodal`` and ``noise`` what the studio shows when the package has them, ``encode`` (when present) turns
raw inputs into the features ``f`` reads, so corruptions act on the raw inputs.

Jacobian-vector products of ``f`` (for equilibrium analyses) come from the package's ``jvp`` program when it
has one, by central finite differences otherwise: ``ProgramMap.jvp`` and ``ProgramMap.jvp_method``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from ...core.adapter import (
    FINITE_DIFFERENCE, AdapterBase, BlockInfo, Capabilities, FixedPointProblem, ModalityInfo, ModelRun, ModelSource,
)
from ...core.solvers import BlockLayout, solve
from ...core.solvers.settings import SolverSettings
from .contract import Contract
from .programs import Program

JVP_PROGRAM = "jvp program"
JVP_FINITE_DIFFERENCES = "finite differences"
_FD_STEP = 1e-3  # relative step of the central difference, about float32's eps^(1/3)


class ProgramMap:
    """``z ↦ f(z, x…)`` through onnxruntime, for the rows of one batch; restrictable to a subset (a BatchMap)."""

    def __init__(self, f: Program, features: tuple[np.ndarray, ...], layout: BlockLayout,
                 jvp_program: Program | None = None) -> None:
        self.program = f
        self.features = features
        self.layout = layout
        self.jvp_program = jvp_program
        self.jvp_method = JVP_PROGRAM if jvp_program is not None else JVP_FINITE_DIFFERENCES

    def _run(self, program: Program, *states: torch.Tensor, tail: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        like = states[0]
        host = [s.detach().to("cpu", torch.float32).numpy() for s in states[:1]]
        extra = [t.detach().to("cpu", torch.float32).numpy() for t in tail]
        out = program([*host, *self.features, *extra])[0]
        return torch.from_numpy(out).to(device=like.device, dtype=like.dtype)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self._run(self.program, z)

    def select(self, index: torch.Tensor) -> "ProgramMap":
        rows = index.detach().cpu().numpy()
        return ProgramMap(self.program, tuple(x[rows] for x in self.features), self.layout, self.jvp_program)

    def jvp(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``J_f(z) · v`` per row: the package's jvp program, or a central finite difference of ``f``."""
        if self.jvp_program is not None:
            return self._run(self.jvp_program, z, tail=(v,))
        v_norm = v.norm(dim=1, keepdim=True)
        h = _FD_STEP * (1 + z.norm(dim=1, keepdim=True)) / torch.where(v_norm > 0, v_norm, torch.ones_like(v_norm))
        return (self(z + h * v) - self(z - h * v)) / (2 * h)


class PackageAdapter(AdapterBase):
    """A checked package: its contract and one onnxruntime session per program."""

    def __init__(self, contract: Contract, programs: dict[str, Program], source: ModelSource) -> None:
        c = contract
        self.contract = c
        self.programs = programs
        self.name = c.name
        self.modalities = tuple(ModalityInfo(m.name, m.size, m.kind, m.image_shape) for m in c.modalities)
        self.class_names = c.class_names
        self.task = c.task
        self.blocks = tuple(BlockInfo(b.name, b.size, b.shape) for b in c.blocks)
        self.layout = BlockLayout(tuple(b.name for b in c.blocks), tuple(b.size for b in c.blocks))
        self.fused_block = c.fused_block
        self.solver_defaults = SolverSettings.from_dict(c.solver)
        self.feature_scales = (None,) * len(self.modalities)  # the evaluator uses the training split's std
        self.dependency = dict(c.dependency)
        self.dependency_tables = {"logit_magnitude": dict(c.dependency)} if c.dependency else {}
        self.capabilities = Capabilities(solver=True, gates="gates" in programs, unimodal="unimodal" in programs,
                                         noise="noise" in programs, dependency=bool(c.dependency))
        self.jvp_method = JVP_PROGRAM if "jvp" in programs else JVP_FINITE_DIFFERENCES
        self.source = source
        self._device = "cpu"

    # -- placement --------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self._device

    def to(self, device: str) -> "PackageAdapter":
        """Run on the CPU, or on CUDA through onnxruntime's CUDA provider (RuntimeError when it has none)."""
        device = str(device)
        if device == self._device:
            return self
        providers = providers_for(device)
        sessions = {name: program.make_session(providers) for name, program in self.programs.items()}
        for name, session in sessions.items():  # all or nothing: a failure leaves every program where it ran
            self.programs[name].session = session
        self._device = device
        return self

    def copy(self) -> "PackageAdapter":
        clone = copy.copy(self)  # onnxruntime sessions are safe to run from several threads: shared until moved
        clone.programs = {name: copy.copy(program) for name, program in self.programs.items()}
        return clone

    # -- running ----------------------------------------------------------------------------------
    def _raw(self, inputs: Sequence) -> list[np.ndarray]:
        if len(inputs) != len(self.modalities):
            raise ValueError(f"expected {len(self.modalities)} modality inputs, got {len(inputs)}")
        out = []
        for spec, x in zip(self.modalities, inputs):
            x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            x = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)
            if x.shape[1] != spec.size:
                raise ValueError(f"modality {spec.name!r}: expected {spec.size} features, got {x.shape[1]}")
            out.append(x)
        return out

    def features(self, inputs: Sequence) -> tuple[np.ndarray, ...]:
        """What ``f`` reads besides the state: encode's outputs, or the raw inputs."""
        raw = self._raw(inputs)
        return tuple(self.programs["encode"](raw)) if "encode" in self.programs else tuple(raw)

    def _map(self, features) -> ProgramMap:
        return ProgramMap(self.programs["f"], features, self.layout, self.programs.get("jvp"))

    def _logits(self, z: np.ndarray) -> np.ndarray:
        return self.programs["head"]([z])[0]

    @torch.no_grad()
    def __call__(self, inputs: Sequence, settings: SolverSettings | None = None, playback: bool = False) -> ModelRun:
        features = self.features(inputs)
        batch = len(features[0]) if features else 0
        if batch == 0:
            c = len(self.class_names)
            return ModelRun(np.zeros((0, c)), np.zeros((0, c)))
        s = settings or self.solver_defaults
        z0 = torch.zeros(batch, self.layout.dim)
        extras = self._extras(features) if playback else None
        z_star, trace = solve(self._map(features), z0, solver=s.solver, max_iter=s.max_iter, tol=s.tol,
                              stop_mode=s.stop_mode, record_states=playback, extras=extras, **s.option_dict)
        trace.states = None
        z = z_star.numpy()
        logits = self._logits(z)
        sigma_hat = weights = pe = energy = None
        if "unimodal" in self.programs:
            per_modality = self.programs["unimodal"](list(features))
            energy = np.stack([-_logsumexp(lg) for lg in per_modality], axis=1)
        if "noise" in self.programs:
            noise = self.programs["noise"](list(features))
            sigma_hat, weights = noise[0], noise[1]
            pe = noise[2] if len(noise) > 2 else None
        return ModelRun(probabilities=self.probabilities_from_logits(logits), logits=logits, trace=trace,
                        z_star=z.astype(np.float64), sigma_hat=sigma_hat, weights=weights, pe=pe, energy=energy)

    def _extras(self, features):
        """Per-step probabilities (and gates) from the recorded iterates, as the native model's playback."""
        head, gates = self.programs["head"], self.programs.get("gates")

        def per_step(states: torch.Tensor) -> dict[str, torch.Tensor]:
            steps = states.shape[0] // len(features[0])
            z = states.numpy().astype(np.float32)
            finite = np.isfinite(z).all(axis=1)
            z = np.where(finite[:, None], z, 0.0).astype(np.float32)
            out = {"probabilities": self.probabilities_from_logits(head([z])[0])}
            if gates is not None:
                repeated = [np.repeat(x, steps, axis=0) for x in features]
                values = gates([z, *repeated])
                out["gates"] = values[0].astype(np.float64)
                out["gate_share"] = (values[1] if len(values) > 1 else _share(values[0])).astype(np.float64)
            return {k: torch.from_numpy(np.where(finite[:, None], v, np.nan)) for k, v in out.items()}

        return per_step

    @torch.no_grad()
    def fixed_point_problem(self, inputs: Sequence) -> FixedPointProblem:
        features = self.features(inputs)
        batch = len(features[0]) if features else 0

        def head(z: torch.Tensor) -> torch.Tensor:
            out = self._logits(z.detach().to("cpu", torch.float32).numpy())
            return torch.from_numpy(out).to(device=z.device, dtype=z.dtype)

        def map_with_inputs(z: torch.Tensor, xs: Sequence[torch.Tensor]) -> torch.Tensor:
            return self._map(self.features(xs))(z)  # the raw inputs through encode (when the package has it)

        raw = [torch.from_numpy(x) for x in self._raw(inputs)]
        # onnxruntime runs programs, autograd cannot differentiate them: the analyses take central differences
        # (or the package's own jvp program, which f.jvp uses)
        return FixedPointProblem(f=self._map(features), z0=torch.zeros(batch, self.layout.dim), layout=self.layout,
                                 head=head, inputs=raw, map_with_inputs=map_with_inputs, task=self.task,
                                 derivatives=FINITE_DIFFERENCE)


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


def _share(gates: np.ndarray) -> np.ndarray:
    """Each modality's share of the gates' absolute sum (NaN where they are all zero)."""
    mag = np.abs(np.asarray(gates, dtype=np.float64))
    total = mag.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, mag / total, np.nan)


def providers_for(device: str) -> list:
    """onnxruntime's execution providers for a device name (``cpu``, ``cuda``, ``cuda:N``)."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("this onnxruntime has no CUDA provider (the onnxruntime-gpu package adds it)")
        index = int(device.split(":")[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise ValueError(f"unknown device {device!r}")
