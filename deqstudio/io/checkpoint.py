"""Checkpoints: a model's config, weights and provenance, loaded without ever running code.

Layout (``torch.save`` of a dict of plain data and tensors)::

    {"format": "deqstudio-checkpoint", "version": 3,
     "config": ModelConfig.to_dict(), "state_dict": {...},
     "dependency": {"logit_magnitude": {modality: float}, "loss_increase": {...}, "definitions": {...}},
     "metrics": {...}, "dataset": {...}, "training": {...}, "imported": {...}}

The input normalisation lives in the state dict (``input_mean_i``, ``input_std_i``). Version 1 files also
carried an unread copy of it under "normalisation"; they still load. Version 3 added "imported": where an
imported official model came from (source file, its sha256, detected prefix, variant, head; empty for
models DEQ Studio trained) and the config fields task, encoder, normalise_inputs and relu_after_norm
(absent from older files, which load with their defaults).

Loading uses ``torch.load(..., weights_only=True)`` only: a pickle that asks for any object other
than tensors and plain containers is refused before anything in it runs.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.config import ModelConfig
from ..errors import CheckpointError
from . import atomic, guard
from .guard import file_sha256
from ..core.model import FusionModel

FORMAT = "deqstudio-checkpoint"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_BYTES = 2 * 1024**3
_MAX_PARAMETERS = _MAX_BYTES // 4  # a config that needs more float32 values than the largest file could hold
_MAX_DEPTH = 32  # nesting of the plain-data metadata
_MAX_ENTRIES = 200_000  # values in the metadata counted as written out: a part shared N times counts N times
_MAX_EXPANSION = 16  # an archive member may declare at most this many times the archive's size
_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model and what the file records about it."""

    path: Path | None
    sha256: str | None
    config: ModelConfig
    model: FusionModel
    metrics: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    dependency: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    imported: dict = field(default_factory=dict)
    _adapter: object = field(default=None, repr=False, compare=False)

    @property
    def adapter(self):
        """The model behind the ``ModelAdapter`` interface (one per checkpoint, sharing its model)."""
        if self._adapter is None:
            from ..core.adapter import ModelSource
            from ..core.native import NativeAdapter

            if self.imported:
                source = imported_source(self)
            else:
                source = ModelSource("native", str(self.path or ""), self.sha256 or "",
                                     f"{self.config.fusion} model (DEQ Studio checkpoint)")
            self._adapter = NativeAdapter(self.model, dependency=self.dependency, source=source)
            if self.imported:
                self._adapter.name = str(self.imported.get("name") or "DEQFusion (imported)")
        return self._adapter


def imported_source(checkpoint: "Checkpoint"):
    """The ``ModelSource`` of a checkpoint converted from an official model: "imported from <file>"."""
    from ..core.adapter import FEATURE_INPUTS_NOTE, ModelSource

    record = checkpoint.imported
    source_file = str(record.get("source_file", "") or "")
    details = {k: v for k, v in record.items() if isinstance(v, (str, int, float, bool, list))}
    if record.get("inputs") == "features":
        details["input_note"] = FEATURE_INPUTS_NOTE
    name = Path(source_file).name if source_file else "an official checkpoint"
    return ModelSource("imported", str(checkpoint.path or ""), checkpoint.sha256 or "", f"imported from {name}",
                       details=details)


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
    imported: dict | None = None,
) -> Path:
    """Write atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "dependency": _plain(dependency or {}),
        "metrics": _plain(metrics or {}),
        "dataset": _plain(dataset or {}),
        "training": _plain(training or {}),
        "imported": _plain(imported or {}),
    }
    # serialised in memory first: torch.save failing mid-write (a full disk) raises RuntimeError and
    # would leave a half-written archive; written from memory, any failure is one WriteError (an OSError)
    buf = io.BytesIO()
    torch.save(payload, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_bytes(path, buf.getvalue())


def _brief(value: Any) -> str:
    """A short description of a value from the file: never the repr of a structure (which can explode)."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    if value is None or isinstance(value, (bool, float, str)) or (isinstance(value, int) and value.bit_length() < 64):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return f"a {type(value).__name__}"


def _fail(path: Path, problem: str) -> CheckpointError:
    # one line, of a readable length, whatever values from the file the problem quotes
    problem = " ".join(problem.split())
    return CheckpointError(f"{path.name}: {problem if len(problem) <= 400 else problem[:397] + '...'}")


def _check_archive(path: Path, fh, size: int) -> None:
    """The zip's members, before torch reads any: no member may declare far more bytes than the file."""
    try:
        with zipfile.ZipFile(fh) as z:
            members = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError):
        raise _fail(path, "the archive is truncated or corrupt") from None
    declared = sum(m.file_size for m in members)
    if declared > _MAX_EXPANSION * size + (1 << 20):
        raise _fail(path, f"its archive members declare {declared:,} bytes in a file of {size:,} (a decompression "
                          "bomb); refused before reading")


def _read_payload(path: Path) -> dict:
    try:
        fh = guard.open_regular(path)
    except ValueError as exc:
        raise _fail(path, f"{'is a folder, not a checkpoint file' if 'folder' in str(exc) else exc}") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise _fail(path, "the file is empty (0 bytes)")
        if size > _MAX_BYTES:
            raise _fail(path, f"the file is {size / 1024**3:.1f} GiB, larger than any checkpoint this app writes")
        if fh.read(4) != _ZIP_MAGIC:
            raise _fail(path, "not a DEQ Studio checkpoint (not a torch zip archive)")
        fh.seek(0)
        if not zipfile.is_zipfile(fh):
            raise _fail(path, "the archive is truncated or corrupt")
        fh.seek(0)
        _check_archive(path, fh, size)
        fh.seek(0)
        return _unpickle(path, fh)


def _unpickle(path: Path, fh) -> dict:
    try:
        payload = torch.load(fh, map_location="cpu", weights_only=True)
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
    if (not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values())
            or not all(isinstance(k, str) for k in state)):
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
        if got.layout != torch.strided or got.is_quantized or got.device.type != "cpu":
            raise _fail(path, f"tensor {name!r} is not a plain dense tensor ({got.layout}, {got.device.type})")
        stored = got.untyped_storage().nbytes() // max(1, got.element_size())
        if got.numel() > stored:  # a broadcast (stride-0) view: a tiny file declaring enormous weights
            raise _fail(path, f"tensor {name!r} of shape {tuple(got.shape)} has {got.numel()} values but stores "
                              f"only {stored} (a broadcast view, not real weights)")
        # by construction: the stored type must be the one the model holds (a complex or integer tensor
        # where float32 belongs is refused, not converted, so no value escapes the finiteness check)
        if got.dtype != tensor.dtype:
            raise _fail(path, f"tensor {name!r} has dtype {str(got.dtype).replace('torch.', '')}, its config needs "
                              f"{str(tensor.dtype).replace('torch.', '')}")
        if not bool(torch.isfinite(got).all()):
            raise _fail(path, f"tensor {name!r} holds NaN or Inf values")


class _NotPlain(Exception):
    pass


def _plain_problem(value: Any, where: str) -> str | None:
    """Where metadata holds something other than plain data (numbers, strings, lists, dicts), or None.

    Each container is walked once (a pickle can share one list many times over, nested: walked
    naively that is exponential); its size as written out is counted, so a structure that would
    explode when printed or saved as JSON is refused, as are containers that hold themselves,
    nesting deeper than _MAX_DEPTH and integers too large for a float.
    """
    seen: dict[int, tuple[int, int]] = {}  # id -> (entries written out, nesting height)
    active: set[int] = set()

    def check_number(v, where):
        if isinstance(v, int) and not isinstance(v, bool):
            try:
                float(v)
            except OverflowError:
                raise _NotPlain(f"{where} is an integer too large for a float ({v.bit_length()} bits)") from None

    def walk(v, where: str, depth: int) -> tuple[int, int]:
        if v is None or isinstance(v, (bool, float, str)):
            return 1, 0
        if isinstance(v, int):
            check_number(v, where)
            return 1, 0
        if not isinstance(v, (dict, list, tuple)):
            raise _NotPlain(f"{where} is a {type(v).__name__}")
        key = id(v)
        if key in active:
            raise _NotPlain(f"{where} contains itself")
        if key not in seen:
            if depth > _MAX_DEPTH:
                raise _NotPlain(f"{where} is nested more than {_MAX_DEPTH} levels deep")
            active.add(key)
            total, height = 1, 0
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, item in items:
                if isinstance(v, dict):
                    if not isinstance(k, (str, int, float, bool)) and k is not None:
                        raise _NotPlain(f"{where} has a {type(k).__name__} key")
                    check_number(k, f"{where} key")
                    label = f"{where}.{guard.printable(k)[:40]}"
                else:
                    label = f"{where}[{k}]"
                size, h = walk(item, label, depth + 1)
                total, height = total + size, max(height, h + 1)
                if total > _MAX_ENTRIES:
                    raise _NotPlain(f"{where} expands to more than {_MAX_ENTRIES:,} values when written out "
                                    "(parts of it are shared many times over)")
            active.discard(key)
            seen[key] = (total, height)
        total, height = seen[key]
        if depth + height > _MAX_DEPTH:
            raise _NotPlain(f"{where} is nested more than {_MAX_DEPTH} levels deep")
        return total, height

    try:
        walk(value, where, 0)
    except _NotPlain as exc:
        return str(exc)
    except RecursionError:
        return f"{where} is nested too deeply"
    return None


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
        raise _fail(path, f"not a DEQ Studio checkpoint (format is {_brief(fmt)}, expected {FORMAT!r})")
    version = payload.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise _fail(path, f"checkpoint version {_brief(version)} is not supported (this app reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))})")
    for key in ("config", "state_dict"):
        if key not in payload:
            raise _fail(path, f"missing {key!r}")
    problem = _plain_problem(payload["config"], "config")
    if problem:  # before ModelConfig sees it: a tensor field would make its checks raise RuntimeError
        raise _fail(path, f"invalid model config: it must hold plain data, but {problem}")
    try:
        config = ModelConfig.from_dict(payload["config"])  # checks every field's type and range
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
    for key in ("metrics", "dataset", "dependency", "training", "imported"):
        value = payload.get(key, {})
        _check_metadata(path, key, value)
        extra[key] = value
    return Checkpoint(path=path, sha256=file_sha256(path), config=config, model=model, **extra)

