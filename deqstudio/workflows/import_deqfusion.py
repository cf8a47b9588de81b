"""``deqstudio import deqfusion``: an official DEQ fusion checkpoint converted into a DEQ Studio checkpoint.

The source is read without running it (``io.restricted_pickle``): a state dict, a wrapped one (``{"state_dict":
…}``, ``{"model": …}``, ``[state_dict, optimizer, epoch]``) or a whole pickled model. ``plan_import`` finds the
fusion block and what surrounds it (``deqfusion_layout``), matches it to a dataset, and says what it detected
(``ImportPlan.summary``) before anything is written; ``write_import`` converts the weights into DEQ Studio's
block (conv1/conv2 stacked over branches, GroupNorm affines concatenated, the fused branch's gn3 as the fused
norm, the mixing scalars or ones and zero) and writes a checkpoint that records where it came from.

The dataset holds either the features the fusion received (``scripts/dump_features.py`` writes them; the
model then feeds them in as they are and "corruptions act on imported features") or, for the BRCA and MM-IMDB
experiments whose encoders DEQ Studio knows, the raw inputs those encoders read.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..core.config import ModalitySpec, ModelConfig
from ..core.kinds import TASKS
from ..core.model import FusionModel
from ..errors import CheckpointError, UsageError, printable
from ..io.checkpoint import save_checkpoint
from ..io.dataset import Dataset
from ..io.foreign import Candidate, read_foreign
from ..io.restricted_pickle import TensorRef
from .deqfusion_layout import MMDL_CLASS, MMIMDB_CLASS, Block, Layout, block_prefixes, choose_prefix, detect_layout
from .deqfusion_layout import find_head, read_block

VARIANTS = ("root", "mmimdb")
INPUTS = ("features", "raw")
MAX_ITER = 105  # the official experiments' forward threshold (f_thres)
ENCODER_NAMES = {"mmdynamic": "the BRCA experiment's MMDynamic encoders", "maxout": "the MM-IMDB experiment's "
                 "MaxOut MLP encoders"}


@dataclass(frozen=True)
class ImportOptions:
    """What the user may say; None: detect it (and refuse, naming the option, when it is ambiguous)."""

    modalities: tuple[str, ...] | None = None  # dataset modalities in the block's branch order
    head_key: str | None = None
    prefix: str | None = None
    variant: str | None = None  # "root" or "mmimdb"
    task: str | None = None  # "multiclass" or "multilabel": must agree with the dataset's labels
    inputs: str | None = None  # "features" or "raw"

    def __post_init__(self) -> None:
        for name, allowed in (("variant", VARIANTS), ("task", TASKS), ("inputs", INPUTS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise UsageError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")


@dataclass
class ImportPlan:
    """What was detected in the source, matched to the dataset; ``summary`` says it in words."""

    source: Path
    sha256: str
    container: str
    described: str
    block: Block
    layout: Layout
    variant: str
    variant_reason: str
    head: str
    task: str
    modality_order: tuple[str, ...]
    inputs: str  # "features" or "raw"
    dataset: Dataset
    config: ModelConfig
    state: dict = field(repr=False, default_factory=dict)

    @property
    def encoders(self) -> str:
        return self.config.encoder if self.inputs == "raw" else "none"

    def summary(self) -> list[str]:
        b, p = self.block, printable
        mixing = (f"learned scalars ({b.prefix}weights.0..{b.modalities - 1}, {b.prefix}bias)" if b.mixing
                  else "plain sum (no mixing scalars in the file)")
        order = ", ".join(f"branch {i} ← {p(n)} ({self.dataset.modalities[n].dim})"
                          for i, n in enumerate(self.modality_order))
        norm = "ReLU after the fused GroupNorm" if self.variant == "mmimdb" else "GroupNorm after ReLU"
        task = "multilabel (a sigmoid per label)" if self.task == "multilabel" else "multiclass (softmax)"
        inputs = (f"raw inputs through {ENCODER_NAMES[self.config.encoder]}" if self.inputs == "raw"
                  else "the fusion's input features, fed as they are (corruptions act on imported features)")
        if self.container == "the file":
            held = "a state dict"
        elif self.container.startswith("the pickled model"):
            held = self.container
        else:
            held = f"the state dict at {self.container} in {self.described}"
        return [
            f"source: {p(self.source.name)}: {p(held)}, read without running anything in it",
            f"block: under {p(b.prefix) or '(no prefix)'!r}: {b.modalities} modality branches and the fused "
            f"branch, width {b.width}",
            f"mixing: {mixing}",
            f"variant: {self.variant} ({norm}; {p(self.variant_reason)})",
            f"head: {p(self.head)} ({self.config.num_classes} classes, {task})",
            f"modality order: {order}",
            f"inputs: {inputs}",
        ]

    def record(self, command: str = "") -> dict:
        """The checkpoint's "imported" record: where the model came from and what was detected in it."""
        b = self.block
        return {
            "name": f"DEQFusion (imported, {self.variant})",
            "source_file": str(self.source.resolve()), "source_sha256": self.sha256, "container": self.container,
            "prefix": b.prefix, "branches": b.modalities, "width": b.width, "variant": self.variant,
            "variant_reason": self.variant_reason, "mixing": "learned" if b.mixing else "plain sum",
            "head": self.head, "num_classes": self.config.num_classes, "task": self.task,
            "modality_order": list(self.modality_order), "layout": self.layout.name, "inputs": self.inputs,
            "encoders": self.encoders, "features_dataset": {"name": self.dataset.name, "sha256": self.dataset.sha256,
                                                            "path": str(self.dataset.path or "")},
            "importer": f"deqstudio {__version__}", "command": command,
        }


def _candidate(source: Path, prefix: str | None) -> tuple[Candidate, str, str]:
    found = read_foreign(source)
    with_block = [c for c in found.candidates if block_prefixes(c.tensors)]
    if prefix is not None and len(with_block) > 1:
        wanted = prefix if prefix == "" or prefix.endswith(".") else prefix + "."
        with_block = [c for c in with_block if wanted in block_prefixes(c.tensors)] or with_block
    if not with_block:
        what = f"{len(found.candidates)} state dict(s)" if found.candidates else "no tensors"
        raise CheckpointError(f"{printable(source.name)}: no DEQ fusion block in it ({printable(found.root)} with "
                              f"{what}; no key ends in 'func_.branches.0.conv1.weight')")
    if len(with_block) > 1:
        places = ", ".join(printable(c.where) for c in with_block[:3])
        raise UsageError(f"{printable(source.name)}: {len(with_block)} state dicts in it hold a fusion block ({places}); "
                         "save the one to import on its own")
    return with_block[0], found.sha256, found.root


def _variant(options: ImportOptions, candidate: Candidate, block: Block, layout: Layout) -> tuple[str, str]:
    if options.variant is not None:
        return options.variant, "as --variant says"
    module = candidate.classes.get(block.prefix, "")
    if module == MMIMDB_CLASS or candidate.classes.get("") == MMDL_CLASS:
        return "mmimdb", f"the pickled module's class is {module or MMDL_CLASS}"
    if layout.name == "mmimdb":
        return "mmimdb", "the MM-IMDB experiment's layout (encoders.*.op*, head.fc)"
    return "root", ("the root DEQ_fusion.py's and BRCA's fused branch; pass --variant mmimdb for the MM-IMDB "
                    "experiment's")


def _modalities(options: ImportOptions, dataset: Dataset, block: Block) -> tuple[str, ...]:
    names = tuple(options.modalities) if options.modalities else dataset.modality_names
    missing = [n for n in names if n not in dataset.modalities]
    if missing:
        raise UsageError(f"--modalities: the dataset has no modality {printable(missing[0])!r} (it has "
                         f"{', '.join(printable(n) for n in dataset.modality_names)})")
    if len(set(names)) != len(names):
        raise UsageError("--modalities names a modality twice")
    if len(names) != block.modalities:
        raise UsageError(f"the block fuses {block.modalities} modalities; {'--modalities names' if options.modalities else 'the dataset has'} "
                         f"{len(names)} ({', '.join(printable(n) for n in names)}): pass --modalities with "
                         f"{block.modalities} names in the block's branch order")
    return names


def _inputs(options: ImportOptions, dataset: Dataset, names, block: Block, layout: Layout) -> str:
    dims = tuple(dataset.modalities[n].dim for n in names)
    fits_features = all(d == block.width for d in dims)
    fits_raw = layout.encoders != "none" and not layout.encoder_problem and dims == layout.encoder_inputs
    if options.inputs == "features" or (options.inputs is None and fits_features and not fits_raw):
        if not fits_features:
            bad = next(n for n, d in zip(names, dims) if d != block.width)
            raise UsageError(f"modality {printable(bad)!r} has {dataset.modalities[bad].dim} values, the block reads "
                             f"features of {block.width}")
        return "features"
    if options.inputs == "raw" or (options.inputs is None and fits_raw and not fits_features):
        if layout.encoders == "none":
            raise UsageError("--inputs raw: DEQ Studio knows no encoders for this model (only the BRCA and MM-IMDB "
                             "experiments'); dump its features with scripts/dump_features.py")
        if layout.encoder_problem:
            raise UsageError(f"the official encoders cannot be imported: {layout.encoder_problem}")
        if not fits_raw:
            raise UsageError(f"the dataset's sizes {dims} are not the encoders' inputs {layout.encoder_inputs} "
                             "(pass --modalities in the block's branch order)")
        return "raw"
    if fits_features and fits_raw:
        raise UsageError("the dataset's sizes fit both the fusion's features and the official encoders' inputs: "
                         "pass --inputs features or --inputs raw")
    known = f" or the official encoders' inputs {layout.encoder_inputs}" if layout.encoder_inputs else ""
    raise UsageError(f"the dataset's modalities ({', '.join(f'{printable(n)} {d}' for n, d in zip(names, dims))}) "
                     f"fit neither the block's {block.width}-value features{known}: pass --modalities in the "
                     "block's branch order, or dump the features with scripts/dump_features.py")


def plan_import(source: str | os.PathLike, dataset: Dataset, options: ImportOptions | None = None) -> ImportPlan:
    """Read ``source`` without running it and work out the import; any problem is one ``DeqStudioError`` line."""
    options = options or ImportOptions()
    source = Path(source)
    candidate, sha256, described = _candidate(source, options.prefix)
    shapes = {k: tuple(v.shape) for k, v in candidate.tensors.items()}
    prefix = choose_prefix(shapes, options.prefix)
    block = read_block(shapes, prefix)
    layout = detect_layout(shapes, block)
    variant, reason = _variant(options, candidate, block, layout)
    task = options.task or dataset.task
    if task != dataset.task:
        raise UsageError(f"--task {task}: the dataset's labels are {dataset.task} "
                         f"({'label sets, (N, C)' if dataset.task == 'multilabel' else 'one class per sample'})")
    names = _modalities(options, dataset, block)
    inputs = _inputs(options, dataset, names, block, layout)
    head, classes = find_head(shapes, block, layout, options.head_key, dataset.num_classes)
    if classes != dataset.num_classes:
        raise UsageError(f"the head {printable(head)!r} has {classes} classes, the dataset {dataset.num_classes} "
                         f"({printable(dataset.name)}): pass the dataset it was trained on, or --head-key")
    encoder = layout.encoders if inputs == "raw" else "identity"
    specs = tuple(ModalitySpec(n, dataset.modalities[n].dim, "vector",
                               encoder_hidden=layout.encoder_hidden[i] if encoder == "maxout" else None)
                  for i, n in enumerate(names))
    try:
        config = ModelConfig(modalities=specs, num_classes=classes, fusion="deq", hidden=block.width,
                             encoder=encoder, normalise_inputs=False, relu_after_norm=variant == "mmimdb",
                             task=task, class_names=dataset.class_names, max_iter=MAX_ITER, jac_weight=0.0)
    except ValueError as exc:
        raise UsageError(f"cannot describe this model: {exc}") from None
    plan = ImportPlan(source, sha256, candidate.where, described, block, layout, variant, reason, head, task, names,
                      inputs, dataset, config)
    plan.state = _state_dict(plan, candidate)
    return plan


def _tensor(candidate: Candidate, key: str) -> torch.Tensor:
    value = candidate.tensors[key]
    t = value.tensor() if isinstance(value, TensorRef) else value.detach().cpu().clone()
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{printable(key)!r} holds NaN or Inf values")
        return t.to(torch.float32)
    if not key.endswith("num_batches_tracked"):  # the one integer a module keeps (BatchNorm's counter)
        raise CheckpointError(f"{printable(key)!r} has dtype {str(t.dtype).replace('torch.', '')}; floating-point "
                              "weights are needed")
    return t


def _state_dict(plan: ImportPlan, candidate: Candidate) -> dict[str, torch.Tensor]:
    """The file's weights under DEQ Studio's names; every other entry keeps its model's value (no normalisation)."""
    b, n = plan.block, plan.block.modalities
    with torch.device("meta"):
        target = FusionModel(plan.config).state_dict()

    def get(key):
        return _tensor(candidate, key)

    def stack(part):
        return torch.stack([get(b.key(i, part)) for i in range(n)])

    def cat(part):
        return torch.cat([get(b.key(i, part)) for i in range(n)])

    ours = {
        "fusion.block.w1": stack("conv1.weight"), "fusion.block.b1": stack("conv1.bias"),
        "fusion.block.w2": stack("conv2.weight"), "fusion.block.b2": stack("conv2.bias"),
        "fusion.block.gate.weight": get(b.key(n, "gate.weight")), "fusion.block.gate.bias": get(b.key(n, "gate.bias")),
        "fusion.block.fuse.weight": get(b.key(n, "fuse.weight")), "fusion.block.fuse.bias": get(b.key(n, "fuse.bias")),
        "fusion.block.fuse_norm.weight": get(b.key(n, "gn3.weight")),
        "fusion.block.fuse_norm.bias": get(b.key(n, "gn3.bias")),
        "fusion.block.mix_weights": (torch.cat([get(f"{b.prefix}weights.{i}") for i in range(n)]) if b.mixing
                                     else torch.ones(n)),
        "fusion.block.mix_bias": get(f"{b.prefix}bias") if b.mixing else torch.zeros(1),
        "head.weight": get(f"{plan.head}.weight"),
        "head.bias": get(f"{plan.head}.bias") if f"{plan.head}.bias" in candidate.tensors
        else torch.zeros(plan.config.num_classes),
    }
    for k in (1, 2, 3):
        ours[f"fusion.block.gn{k}_weight"] = cat(f"gn{k}.weight")
        ours[f"fusion.block.gn{k}_bias"] = cat(f"gn{k}.bias")
    if plan.inputs == "raw":
        ours.update({key: get(theirs) for key, theirs in plan.layout.mapping.items()})
    state = {}
    for key, want in target.items():
        if key not in ours:  # only the input statistics, which an imported model does not apply
            if not key.startswith(("input_mean_", "input_std_")):
                raise CheckpointError(f"nothing in the file maps to {key} (an importer fault; please report it)")
            state[key] = torch.zeros(want.shape) if key.startswith("input_mean_") else torch.ones(want.shape)
            continue
        got = ours[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{key}: the file's weights have shape {tuple(got.shape)}, the model needs "
                                  f"{tuple(want.shape)}")
        if got.dtype != want.dtype:
            if got.is_floating_point() != want.is_floating_point():
                raise CheckpointError(f"a weight for {key} has dtype {str(got.dtype).replace('torch.', '')}; "
                                      "floating-point weights are needed")
            got = got.to(want.dtype)
        state[key] = got
    return state


def command_line(source, features, out, options: ImportOptions) -> str:
    parts = ["deqstudio", "import", "deqfusion", str(source), "--features", str(features), "--out", str(out)]
    for flag, value in (("--modalities", ",".join(options.modalities or ())), ("--head-key", options.head_key),
                        ("--prefix", options.prefix), ("--variant", options.variant), ("--task", options.task),
                        ("--inputs", options.inputs)):
        if value:
            parts += [flag, value]
    return " ".join(shlex.quote(p) for p in parts)


def evaluate_split(model: FusionModel, dataset: Dataset, split: str = "test",
                   progress: Callable[[float], None] | None = None) -> dict:
    """The imported model's scores on a split: accuracy, or micro/macro F1 (multilabel), and its solver's steps."""
    from ..core.evaluate import concat_runs
    from ..core.native import NativeAdapter
    from ..diagnostics.evaluation import BatchOutcome, Evaluator

    evaluator = Evaluator(NativeAdapter(model), dataset)
    ids = dataset.split(split)
    runs, step = [], 256
    for start in range(0, len(ids), step):
        runs.append(evaluator.run(ids[start : start + step]).run)
        if progress is not None:
            progress(min(1.0, (start + step) / len(ids)))
    outcome = BatchOutcome(ids, dataset.labels[ids].astype(np.int64), concat_runs(runs), True, model.config.task)
    metrics = {f"{split}_{k}": v for k, v in outcome.metrics().items()}
    metrics[f"{split}_mean_steps"] = float(outcome.steps.mean())
    metrics[f"{split}_converged_fraction"] = float(outcome.converged.mean())
    return metrics


def write_import(plan: ImportPlan, out: str | os.PathLike, *, evaluate: bool = True, command: str = "",
                 progress: Callable[[float], None] | None = None) -> Path:
    """Write the converted checkpoint (atomically); ``evaluate`` records its test-split scores."""
    out = Path(out)
    if out.exists() and out.resolve() == plan.source.resolve():
        raise UsageError(f"--out {printable(str(out))} is the source file; write the converted checkpoint elsewhere")
    model = FusionModel(plan.config)
    model.load_state_dict(plan.state, strict=True)
    model.eval()
    metrics = evaluate_split(model, plan.dataset, progress=progress) if evaluate else {}
    if not out.parent.is_dir():
        raise UsageError(f"--out {printable(str(out))}: folder {printable(str(out.parent))} does not exist")
    return save_checkpoint(out, model, metrics=metrics, dataset=plan.dataset.identity(),
                           imported=plan.record(command))


def import_deqfusion(source, features, out, options: ImportOptions | None = None, *, evaluate: bool = True,
                     progress=None) -> tuple[ImportPlan, Path]:
    """Plan and write in one step (the command line's path); the dataset is read from ``features``."""
    from ..io.dataset import read_dataset

    options = options or ImportOptions()
    plan = plan_import(source, read_dataset(features), options)
    return plan, write_import(plan, out, evaluate=evaluate, command=command_line(source, features, out, options),
                              progress=progress)
