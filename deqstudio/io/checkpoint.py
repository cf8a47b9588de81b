"""Checkpoints: a model's config, weights and provenance, loaded without ever running code.

Layout (``torch.save`` of a dict of plain data and tensors)::

    {"format": "deqstudio-checkpoint", "version": 1,
     "config": ModelConfig.to_dict(), "state_dict": {...},
     "normalisation": {"mean": {modality: tensor}, "std": {modality: tensor}},
     "dependency": {"logit_magnitude": {modality: float}, "loss_increase": {...}, "definitions": {...}},
     "metrics": {...}, "dataset": {...}, "training": {...}}

Loading uses ``torch.load(..., weights_only=True)`` only: a pickle that asks for any object other
than tensors and plain containers is refused before anything in it runs.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.config import ModelConfig
from . import atomic
from ..core.model import FusionModel

FORMAT = "deqstudio-checkpoint"
VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_BYTES = 2 * 1024**3
_MAX_PARAMETERS = _MAX_BYTES // 4  # a config that needs more float32 values than the largest file could hold
_MAX_DEPTH = 32  # nesting of the plain-data metadata
_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CONFIG_INTS = ("num_classes", "hidden", "encoder_hidden", "unrolled_steps", "max_iter", "backward_max_iter",
                "phantom_steps", "jac_vectors")
_CONFIG_REALS = ("dropout", "tol", "backward_tol", "phantom_tau", "jac_weight")
_CONFIG_STRS = ("fusion", "ablation", "solver", "stop_mode", "backward")


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint; the message names the file and the problem."""


@dataclass
class Checkpoint:
    path: Path | None
    sha256: str | None
    config: ModelConfig
    model: FusionModel
    metrics: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    dependency: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _plain(value: Any) -> Any:
    """Numbers, strings, lists and dicts only (tensors to lists) — what weights_only accepts."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if value is None:
        return value
    for plain in (bool, int, float, str):  # subclasses such as TorchVersion become the plain type
        if isinstance(value, plain):
            return plain(value)
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


def save_checkpoint(
    path: str | os.PathLike,
    model: FusionModel,
    *,
    metrics: dict | None = None,
    dataset: dict | None = None,
    dependency: dict | None = None,
    training: dict | None = None,
) -> Path:
    """Write atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    means, stds = model.normalisation()
    names = model.modality_names
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "normalisation": {
            "mean": {n: m.detach().cpu().clone() for n, m in zip(names, means)},
            "std": {n: s.detach().cpu().clone() for n, s in zip(names, stds)},
        },
        "dependency": _plain(dependency or {}),
        "metrics": _plain(metrics or {}),
        "dataset": _plain(dataset or {}),
        "training": _plain(training or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _fail(path: Path, problem: str) -> CheckpointError:
    # one line, of a readable length, whatever values from the file the problem quotes
    problem = " ".join(problem.split())
    return CheckpointError(f"{path.name}: {problem if len(problem) <= 400 else problem[:397] + '...'}")


def _read_payload(path: Path) -> dict:
    if not path.exists():
        raise _fail(path, "no such file")
    if path.is_dir():
        raise _fail(path, "is a folder, not a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise _fail(path, "the file is empty (0 bytes)")
    if size > _MAX_BYTES:
        raise _fail(path, f"the file is {size / 1024**3:.1f} GiB, larger than any checkpoint this app writes")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != _ZIP_MAGIC:
        raise _fail(path, "not a DEQ Studio checkpoint (not a torch zip archive)")
    if not zipfile.is_zipfile(path):
        raise _fail(path, "the archive is truncated or corrupt")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = _ANSI.sub("", str(exc))
        found = _GLOBAL.search(text)
        lines = text.strip().splitlines()
        what = f"it asks for {found.group(1)}" if found else (lines[0][:160] if lines else "unsupported object")
        raise _fail(path, f"refused: it holds objects other than tensors and plain data ({what}); "
                          "nothing in it was run") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise _fail(path, f"the archive is truncated or corrupt ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 — any other failure of a hostile file is still a refusal
        raise _fail(path, f"cannot be read as a checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise _fail(path, f"not a DEQ Studio checkpoint (holds a {type(payload).__name__}, not a dict)")
    return payload


def _check_state_dict(path: Path, model: FusionModel, state: Any) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _fail(path, "'state_dict' must map names to tensors")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise _fail(path, f"weights missing for its config: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        raise _fail(path, f"weights its config does not have: {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    for name, tensor in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(tensor.shape):
            raise _fail(path, f"tensor {name!r} has shape {tuple(got.shape)}, its config needs {tuple(tensor.shape)}")
        if got.layout != torch.strided or got.is_quantized:
            raise _fail(path, f"tensor {name!r} is not a plain dense tensor ({got.layout})")
        stored = got.untyped_storage().nbytes() // max(1, got.element_size())
        if got.numel() > stored:  # a broadcast (stride-0) view: a tiny file declaring enormous weights
            raise _fail(path, f"tensor {name!r} of shape {tuple(got.shape)} has {got.numel()} values but stores "
                              f"only {stored} (a broadcast view, not real weights)")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise _fail(path, f"tensor {name!r} holds NaN or Inf values")


def _check_config(config: ModelConfig) -> None:
    """Field types ModelConfig leaves unchecked: numbers where numbers belong (inspect formats them)."""
    for name in _CONFIG_INTS:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    for name in _CONFIG_REALS:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    for name in _CONFIG_STRS:
        if not isinstance(getattr(config, name), str):
            raise ValueError(f"{name} must be a string, got {getattr(config, name)!r}")
    if not isinstance(config.solver_options, dict):
        raise ValueError(f"solver_options must be a dict, got {type(config.solver_options).__name__}")


def _plain_problem(value: Any, where: str, depth: int = 0) -> str | None:
    """Where metadata holds something other than plain data (numbers, strings, lists, dicts), or None."""
    if depth > _MAX_DEPTH:
        return f"{where} is nested more than {_MAX_DEPTH} levels deep"
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return f"{where} has a {type(key).__name__} key"
            problem = _plain_problem(item, f"{where}.{key}", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = _plain_problem(item, f"{where}[{i}]", depth + 1)
            if problem:
                return problem
        return None
    return f"{where} is a {type(value).__name__}"


def _check_metadata(path: Path, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise _fail(path, f"{key!r} must be a dict")
    problem = _plain_problem(value, key)
    if problem:
        raise _fail(path, f"{key!r} must hold plain data (numbers, strings, lists, dicts): {problem}")
    if key == "dependency":
        for score in ("logit_magnitude", "loss_increase"):
            table = value.get(score)
            if table is None:
                continue
            if not isinstance(table, dict) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in table.values()):
                raise _fail(path, f"'dependency' {score} must map modality names to numbers")


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read, validate and rebuild the model (in eval mode); raises ``CheckpointError``."""
    path = Path(path)
    payload = _read_payload(path)
    fmt = payload.get("format")
    if not isinstance(fmt, str) or fmt != FORMAT:  # isinstance first: a tensor here must not be compared
        raise _fail(path, f"not a DEQ Studio checkpoint (format is {fmt!r}, expected {FORMAT!r})")
    version = payload.get("version")
    if type(version) is not int or version != VERSION:
        raise _fail(path, f"checkpoint version {version!r} is not supported (this app reads version {VERSION})")
    for key in ("config", "state_dict"):
        if key not in payload:
            raise _fail(path, f"missing {key!r}")
    problem = _plain_problem(payload["config"], "config")
    if problem:  # before ModelConfig sees it: a tensor field would make its checks raise RuntimeError
        raise _fail(path, f"invalid model config: it must hold plain data, but {problem}")
    try:
        config = ModelConfig.from_dict(payload["config"])
        _check_config(config)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _fail(path, f"invalid model config: {exc}") from None
    # The config's shapes come from a model on the meta device (nothing allocated), so a config
    # declaring an enormous model is refused before any memory is taken for it.
    try:
        with torch.device("meta"):
            skeleton = FusionModel(config)
    except Exception as exc:  # noqa: BLE001 — whatever a hostile config makes the constructor raise
        raise _fail(path, f"invalid model config: cannot build its model ({type(exc).__name__}: "
                          f"{(str(exc).splitlines() or [''])[0][:160]})") from None
    size = sum(t.numel() for t in skeleton.state_dict().values())
    if size > _MAX_PARAMETERS:
        raise _fail(path, f"its config describes a model of {size:,} parameters, more than any checkpoint file holds")
    _check_state_dict(path, skeleton, payload["state_dict"])
    try:
        model = FusionModel(config)
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, ValueError, TypeError, MemoryError) as exc:
        raise _fail(path, f"the weights do not fit its model ({type(exc).__name__}: "
                          f"{(str(exc).splitlines() or [''])[0][:160]})") from None
    model.eval()
    extra = {}
    for key in ("metrics", "dataset", "dependency", "training"):
        value = payload.get(key, {})
        _check_metadata(path, key, value)
        extra[key] = value
    return Checkpoint(path=path, sha256=file_sha256(path), config=config, model=model, **extra)

