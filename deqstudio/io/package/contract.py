"""``contract.json``: what a DEQ package declares, read and checked as plain data (no torch, no onnx here).

A package is a folder or a ``.zip`` holding ``contract.json`` and ONNX programs::

    {"format": "deqstudio-package", "version": 1, "name": "...", "description": "...",
     "task": "multiclass" | "multilabel", "class_names": [...],
     "modalities": [{"name": "pix", "size": 240, "kind": "image", "image_shape": [16, 15]}, ...],
     "features": [{"name": "x", "size": 64}, ...],          # what encode outputs (only with encode)
     "blocks": [{"name": "z1", "size": 16}, {"name": "attn", "size": 2500, "shape": [50, 50]}, ...],
     "fused_block": "fused",
     "solver": {"solver": ..., "max_iter": 50, "tol": 1e-4, "stop_mode": "rel", "options": {}},
     "dependency": {"pix": 1.3, ...},                       # optional: α per modality
     "programs": {"f": {"file": "f.onnx", "inputs": ["z", "x"], "outputs": ["z_next"]}, ...},
     "metrics": {...}, "dataset": {...}}                    # optional plain data, shown by inspect

Each program's inputs and outputs are the ONNX names, in the order of its signature (``ROLES``); the order
gives each name its size: the state ``z`` is the sum of the blocks, ``x…`` are the features (the encode
outputs, or the raw modalities when there is no encode), ``v`` is a tangent of the state's size. Every
program has a dynamic batch dimension first and one feature dimension.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from collections.abc import Mapping

from ...core.bounds import bounded_int
from ...core.kinds import MODALITY_KINDS, TASKS
from ...errors import printable

FORMAT = "deqstudio-package"
VERSION = 1
CONTRACT = "contract.json"
MAX_CONTRACT_BYTES = 1 << 20
MAX_SIZE = 1 << 26  # features in one input or state: far above any model, far below an allocation failure
REQUIRED = ("f", "head")
OPTIONAL = ("encode", "gates", "unimodal", "noise", "jvp")
PROGRAMS = REQUIRED + OPTIONAL
# What each program reads and returns, by position: "z" the state, "x" every feature, "raw" every modality,
# "v" a tangent of the state; outputs "z", "C" (classes), "M" (one value per modality), "x" every feature,
# "C*M" one (B, C) output per modality. A list of output forms means any one of them.
ROLES = {
    "f": (("z", "x"), [("z",)]),
    "head": (("z",), [("C",)]),
    "encode": (("raw",), [("x",)]),
    "gates": (("z", "x"), [("M",), ("M", "M")]),
    "unimodal": (("x",), [("C*M",)]),
    "noise": (("x",), [("M", "M"), ("M", "M", "M")]),
    "jvp": (("z", "x", "v"), [("z",)]),
}
OUTPUT_MEANINGS = {
    "gates": ("gates", "gate_share"),
    "noise": ("sigma_hat", "weights", "pe"),
}


class ContractError(ValueError):
    """A contract that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Field:
    """A named, flattened input or state block: its size and, for 2-D blocks, its shape."""

    name: str
    size: int
    kind: str = "vector"
    image_shape: tuple[int, int] | None = None
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ProgramSpec:
    name: str
    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_sizes: tuple[int, ...]
    output_sizes: tuple[int, ...]


@dataclass(frozen=True)
class Contract:
    name: str
    description: str
    task: str
    class_names: tuple[str, ...]
    modalities: tuple[Field, ...]
    features: tuple[Field, ...]
    blocks: tuple[Field, ...]
    fused_block: str | None
    solver: dict
    dependency: dict
    programs: dict[str, ProgramSpec]
    metrics: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def state_size(self) -> int:
        return sum(b.size for b in self.blocks)


def parse_contract(data: bytes) -> Contract:
    """The contract from the bytes of ``contract.json``; ContractError naming the first problem."""
    if len(data) > MAX_CONTRACT_BYTES:
        raise ContractError(f"{CONTRACT} is {len(data):,} bytes; a contract is at most {MAX_CONTRACT_BYTES:,}")
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ContractError(f"{CONTRACT} is not valid JSON ({printable(str(exc))[:120]})") from None
    if not isinstance(raw, dict):
        raise ContractError(f"{CONTRACT} must hold a JSON object")
    fmt, version = raw.get("format"), raw.get("version")
    if fmt != FORMAT:
        raise ContractError(f"{CONTRACT}: format is {_shown(fmt)}, expected {FORMAT!r}")
    if type(version) is not int or version != VERSION:
        raise ContractError(f"{CONTRACT}: version {_shown(version)} is not supported (this app reads version {VERSION})")
    task = raw.get("task", TASKS[0])
    if task not in TASKS:
        raise ContractError(f"task must be one of {', '.join(TASKS)}, got {_shown(task)}")
    class_names = _names(raw.get("class_names"), "class_names", unique=False)
    modalities = _fields(raw.get("modalities"), "modalities", modality=True)
    blocks = _fields(raw.get("blocks"), "blocks", block=True)
    programs_raw = raw.get("programs")
    if not isinstance(programs_raw, dict):
        raise ContractError("programs must map program names to {file, inputs, outputs}")
    unknown = sorted(set(programs_raw) - set(PROGRAMS))
    if unknown:
        raise ContractError(f"unknown program(s) {', '.join(map(_shown, unknown))}; programs are {', '.join(PROGRAMS)}")
    missing = [p for p in REQUIRED if p not in programs_raw]
    if missing:
        raise ContractError(f"the required program(s) {', '.join(missing)} are missing")
    has_encode = "encode" in programs_raw
    features = _fields(raw.get("features"), "features") if has_encode else modalities
    if not has_encode and raw.get("features") not in (None, []):
        raise ContractError("features are encode's outputs: a package without encode declares none")
    fused = raw.get("fused_block")
    if fused is not None and fused not in {b.name for b in blocks}:
        raise ContractError(f"fused_block {_shown(fused)} is not one of the blocks")
    sizes = {"z": sum(b.size for b in blocks), "v": sum(b.size for b in blocks), "C": len(class_names),
             "M": len(modalities)}
    programs = {name: _program(name, spec, sizes, features, modalities) for name, spec in programs_raw.items()}
    return Contract(
        name=_text(raw.get("name", "DEQ package"), "name"), description=_text(raw.get("description", ""), "description"),
        task=task, class_names=class_names, modalities=modalities, features=features, blocks=blocks,
        fused_block=fused, solver=_solver(raw.get("solver")), dependency=_dependency(raw.get("dependency"), modalities),
        programs=programs, metrics=_plain_dict(raw.get("metrics"), "metrics"),
        dataset=_plain_dict(raw.get("dataset"), "dataset"), raw=raw,
    )


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _shown(value) -> str:
    text = repr(value) if isinstance(value, (str, int, float, type(None))) else f"a {type(value).__name__}"
    return printable(text if len(text) <= 60 else text[:57] + "...")


def _text(value, where: str, limit: int = 2000) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ContractError(f"{where} must be a text of at most {limit} characters")
    return value


def _names(value, where: str, unique: bool = True) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > 100_000:
        raise ContractError(f"{where} must be a non-empty list")
    names = tuple(_text(v, f"{where}[{i}]", 200) for i, v in enumerate(value))
    if unique and len(set(names)) != len(names):
        raise ContractError(f"{where} has repeated names")
    return names


def _shape(value, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= 4:
        raise ContractError(f"{where} must be a list of 1 to 4 sizes")
    try:
        return tuple(bounded_int(f"{where}[{i}]", v, 1, MAX_SIZE) for i, v in enumerate(value))
    except ValueError as exc:
        raise ContractError(str(exc)) from None


def _fields(value, where: str, modality: bool = False, block: bool = False) -> tuple[Field, ...]:
    if not isinstance(value, list) or not value or len(value) > 1000:
        raise ContractError(f"{where} must be a non-empty list of objects with a name and a size")
    out = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise ContractError(f"{at} must be an object with a name and a size")
        name = _text(item.get("name"), f"{at}.name", 200)
        if not name:
            raise ContractError(f"{at}.name must not be empty")
        try:
            size = bounded_int(f"{at}.size", item.get("size"), 1, MAX_SIZE)
        except ValueError as exc:
            raise ContractError(str(exc)) from None
        kind, image_shape, shape = "vector", None, None
        if modality:
            kind = item.get("kind", "vector")
            if kind not in MODALITY_KINDS:
                raise ContractError(f"{at}.kind must be one of {', '.join(MODALITY_KINDS)}, got {_shown(kind)}")
            if kind == "image":
                image_shape = _shape(item.get("image_shape"), f"{at}.image_shape")
                if len(image_shape) != 2 or math.prod(image_shape) != size:
                    raise ContractError(f"{at}.image_shape must be [height, width] with height × width = size {size}")
        if block and item.get("shape") is not None:
            shape = _shape(item.get("shape"), f"{at}.shape")
            if math.prod(shape) != size:
                raise ContractError(f"{at}.shape {list(shape)} holds {math.prod(shape)} values, not its size {size}")
        out.append(Field(name, size, kind, image_shape, shape))
    if len({f.name for f in out}) != len(out):
        raise ContractError(f"{where} has repeated names")
    return tuple(out)


def _program(name: str, spec, sizes: dict, features, modalities) -> ProgramSpec:
    if not isinstance(spec, dict):
        raise ContractError(f"program {name} must be an object with file, inputs and outputs")
    file = _text(spec.get("file"), f"program {name}: file", 500)
    inputs = _names(spec.get("inputs"), f"program {name}: inputs")
    outputs = _names(spec.get("outputs"), f"program {name}: outputs")
    roles_in, output_forms = ROLES[name]
    input_sizes = []
    for role in roles_in:
        if role == "x":
            input_sizes += [f.size for f in features]
        elif role == "raw":
            input_sizes += [m.size for m in modalities]
        else:
            input_sizes.append(sizes[role])
    if len(inputs) != len(input_sizes):
        raise ContractError(f"program {name} reads {len(input_sizes)} inputs ({', '.join(roles_in)}), "
                            f"its contract lists {len(inputs)}")
    for form in output_forms:
        output_sizes = []
        for role in form:
            if role == "x":
                output_sizes += [f.size for f in features]
            elif role == "C*M":
                output_sizes += [sizes["C"]] * sizes["M"]
            else:
                output_sizes.append(sizes[role])
        if len(outputs) == len(output_sizes):
            break
    else:
        raise ContractError(f"program {name} returns {' or '.join(str(len(f)) for f in output_forms)} outputs, "
                            f"its contract lists {len(outputs)}")
    if set(inputs) & set(outputs):
        raise ContractError(f"program {name}: a name is both an input and an output")
    return ProgramSpec(name, file, inputs, outputs, tuple(input_sizes), tuple(output_sizes))


def _solver(value) -> dict:
    from ...core.solvers.settings import SolverSettings

    if value is None:
        return SolverSettings().to_dict()
    try:
        return SolverSettings.from_dict(value).to_dict()
    except (ValueError, TypeError) as exc:
        raise ContractError(f"solver: {exc}") from None


def _dependency(value, modalities) -> dict:
    if value is None:
        return {}
    names = {m.name for m in modalities}
    if not isinstance(value, dict) or not all(
            k in names and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for k, v in value.items()):
        raise ContractError("dependency must map modality names to finite numbers")
    return {k: float(v) for k, v in value.items()}


def _plain_dict(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ContractError(f"{where} must be an object")
    return dict(value)
