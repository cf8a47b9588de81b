"""``NativeAdapter``: a DEQ Studio ``FusionModel`` behind the ``ModelAdapter`` interface."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from . import udml
from .adapter import FUSED, AdapterBase, BlockInfo, Capabilities, FixedPointProblem, ModalityInfo, ModelRun, ModelSource
from .model import FusionModel
from .solvers.settings import SolverSettings

# ablations whose fused update does not go through the gate: their gate values mean nothing
_GATELESS = ("no-gate", "no-ffuse")


class NativeAdapter(AdapterBase):
    """Runs a ``FusionModel`` (inputs: raw features, standardised by the model's own statistics)."""

    def __init__(self, model: FusionModel, *, dependency: Mapping | None = None,
                 source: ModelSource | None = None) -> None:
        c = model.config
        self.model = model.eval()
        self.config = c
        self.unrolled_steps = c.unrolled_steps  # what the solver race iterates as "unrolled"
        self.name = c.fusion if c.ablation == "full" else f"{c.fusion} ({c.ablation})"
        self.modalities = tuple(ModalityInfo(m.name, m.input_dim, m.kind, m.image_shape) for m in c.modalities)
        self.class_names = c.class_names or tuple(f"class {i}" for i in range(c.num_classes))
        self.task = c.task
        self.dependency_tables = dict(dependency or {})
        self.dependency = dict(self.dependency_tables.get("logit_magnitude", {}))
        if c.is_deq:
            layout = model.fusion.layout
            self.blocks = tuple(BlockInfo(n, int(s)) for n, s in zip(layout.names, layout.sizes))
            self.fused_block = FUSED
            self.solver_defaults = c.solver_settings
        else:
            self.blocks, self.fused_block, self.solver_defaults = (), None, None
        self.capabilities = Capabilities(
            solver=c.is_deq, gates=c.is_deq and c.ablation not in _GATELESS,
            unimodal=model.has_unimodal, noise=c.is_udml, dependency=bool(self.dependency))
        # a model that standardises its inputs scales Gaussian corruptions by the stored stds; one fed as it
        # was trained (an imported model) by the std of the dataset's training split (None: the evaluator's)
        self.feature_scales = (tuple(s.detach().cpu().numpy().astype(np.float32) for s in model.normalisation()[1])
                               if c.normalise_inputs else (None,) * len(c.modalities))
        self.source = source or ModelSource("native", description=f"{c.fusion} model (DEQ Studio checkpoint)")

    # -- placement --------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return str(next(self.model.parameters()).device)

    def to(self, device: str) -> "NativeAdapter":
        self.model.to(device)
        return self

    def copy(self) -> "NativeAdapter":
        clone = copy.copy(self)
        clone.model = copy.deepcopy(self.model)
        return clone

    # -- running ----------------------------------------------------------------------------------
    def _tensors(self, inputs: Sequence) -> list[torch.Tensor]:
        """The inputs as tensors on the model's device, in its precision (float32, or float64 for references)."""
        p = next(self.model.parameters())
        return [torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x).to(
            device=p.device, dtype=p.dtype) for x in inputs]

    @torch.no_grad()
    def encode_modalities(self, inputs: Sequence, which: Sequence[int] | None = None) -> list:
        """Each modality's encoding of a batch (opaque; ``which``: only those modalities, None elsewhere): what
        ``__call__(..., encodings=)`` takes, so a caller that corrupts one modality re-encodes only that one."""
        xs = self._tensors(inputs)
        return [self.model.encode_modality(i, x) if which is None or i in which else None for i, x in enumerate(xs)]

    @torch.no_grad()
    def __call__(self, inputs: Sequence, settings: SolverSettings | None = None, playback: bool = False,
                 encodings: Sequence | None = None) -> ModelRun:
        """The model on a batch; ``encodings`` (from ``encode_modalities``, None entries encoded here) are used as
        they are: the same values as encoding those inputs again."""
        out = self.model(self._tensors(inputs), settings=settings if self.config.is_deq else None, playback=playback,
                         given=encodings)
        logits = out.logits.float()
        probs = self.model.probabilities(logits)

        def host(t):
            return None if t is None else t.detach().cpu().numpy()

        pe = energy = None
        if out.logvar is not None:
            pe = torch.stack([udml.pe_score(lv) for lv in out.logvar], dim=1)
        if out.unimodal_logits is not None:
            energy = torch.stack([udml.energy_score(lg) for lg in out.unimodal_logits], dim=1)
        trace = out.trace
        if trace is not None and trace.states is not None:
            trace.states = None  # the per-step states were needed for the extras only
        return ModelRun(
            probabilities=host(probs), logits=host(logits), trace=trace,
            z_star=None if out.z_star is None else host(out.z_star).astype(np.float64),
            sigma_hat=host(out.sigma_hat), weights=host(out.weights), pe=host(pe), energy=host(energy),
        )

    def _injection(self, xs: Sequence[torch.Tensor], detach: bool = True, encodings: Sequence | None = None) -> torch.Tensor:
        """Raw inputs → the fusion block's packed injection (encoders, UDML weights; ``encodings`` as in ``__call__``)."""
        model = self.model
        features, _, logvars, _ = model.encode_with_unimodal(xs, given=encodings)
        if self.config.is_udml:
            _, weights = model.udml_weights(logvars, detach=detach)
            features = udml.apply_residual_weights(features, weights)
        return model.fusion.block.inject(features)

    def fixed_point_problem(self, inputs: Sequence, encodings: Sequence | None = None) -> FixedPointProblem:
        """The batch's fixed-point map; ``encodings`` (from ``encode_modalities``) spare re-encoding those inputs."""
        model = self.model
        if not self.config.is_deq:
            raise ValueError(f"a {self.config.fusion} model has no fixed point to solve")
        xs = self._tensors(inputs)
        with torch.no_grad():
            injection = self._injection(xs, encodings=encodings)
        fusion = model.fusion
        return FixedPointProblem(
            f=fusion.fixed_point_map(injection), z0=torch.zeros_like(injection), layout=fusion.layout,
            head=lambda z: model.head(fusion.block.fused(z)), inputs=xs, task=self.task,
            map_with_inputs=lambda z, raw: fusion.block(z, self._injection(raw, detach=False)))
