"""Session files: the studio's settings as versioned JSON, read without trusting anything in them.

Version 2 (written)::

    {"format": "deqstudio-session", "version": 2,
     "checkpoint": "/abs/model.pt", "dataset": "/abs/data.h5", "sample": 1602, "split": "test", "step": 4,
     "corruptions": {"pix": {"kind": "gaussian", "severity": 4.0, "seed": 0}, ...},
     "solver": {"solver": "broyden", "max_iter": 40, "tol": 1e-05, "stop_mode": "rel", "options": {"m": 30}},
     "device": "cpu"}

Version 1 (read) kept every solver's options flat beside the rest (``m``, ``lam``, ``tau``) and the device
inside ``solver``. Relative paths are read relative to the session file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.bounds import bounded_int, solver_option
from ..core.corruptions import Corruption
from ..core.device import check_device_name
from ..core.solvers.settings import SolverSettings
from ..errors import SessionFileError, printable
from . import atomic, guard

FORMAT = "deqstudio-session"
VERSION = 2
READABLE_VERSIONS = (1, 2)
MAX_BYTES = 1024**2  # a session this app writes is a few hundred bytes
_FLAT_OPTIONS = ("m", "lam", "tau")  # version 1's solver options


@dataclass(frozen=True)
class SavedSession:
    """A session file's settings, each checked."""

    checkpoint: Path | None = None
    dataset: Path | None = None
    solver: SolverSettings = field(default_factory=SolverSettings)
    device: str = "cpu"
    corruptions: dict = field(default_factory=dict)  # modality -> Corruption
    sample: int = 0
    split: str = "test"
    step: int = -1
    label: str = ""  # the file's name, for messages

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "dataset": str(self.dataset) if self.dataset else None,
            "sample": self.sample, "split": self.split, "step": self.step,
            "corruptions": {m: {"kind": c.kind, "severity": c.severity, "seed": c.seed}
                            for m, c in self.corruptions.items()},
            "solver": self.solver.to_dict(), "device": self.device,
        }


def write_session(path: str | os.PathLike, saved: SavedSession) -> Path:
    return atomic.write_text(path, json.dumps(saved.to_dict(), indent=2) + "\n")


def _refuse_constant(name: str):
    raise ValueError(f"it holds {name}, which no session setting takes")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"it holds the number {text[:20]}, beyond the range of a float")
    return value


def _read_json(path: Path, label: str) -> object:
    """The JSON in a session file: a regular file of at most MAX_BYTES; no NaN or Infinity."""
    try:
        fh = guard.open_regular(path)
    except ValueError as exc:
        raise SessionFileError(f"{label}: {exc}") from None
    try:
        with fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SessionFileError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise SessionFileError(f"{label}: too large for a session file (more than {MAX_BYTES // 1024} KiB)")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise SessionFileError(f"{label}: not a readable session file (nested too deeply)") from None
    except UnicodeDecodeError:
        raise SessionFileError(f"{label}: not a readable session file (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise SessionFileError(f"{label}: not a readable session file ({exc.__class__.__name__})") from None
    except ValueError as exc:
        raise SessionFileError(f"{label}: not a readable session file ({exc})") from None


def _object(data: dict, key: str, names) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{key!r} must be an object, got {type(value).__name__}")
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ValueError(f"{key!r} has unknown setting {printable(unknown[0])[:40]!r}")
    return value


def _solver(data: dict, version: int) -> tuple[SolverSettings, str]:
    if version == 1:
        flat = _object(data, "solver", {"solver", "max_iter", "tol", "stop_mode", "device", *_FLAT_OPTIONS})
        for name in _FLAT_OPTIONS:  # every option version 1 stored is checked, the chosen solver's kept
            if name in flat:
                solver_option(name, flat[name])
        device = flat.get("device", "cpu")
    else:
        flat = _object(data, "solver", {"solver", "max_iter", "tol", "stop_mode", "options"})
        device = data.get("device", "cpu")
    if "solver" in flat and not isinstance(flat["solver"], str):
        raise ValueError(f"unknown solver {printable(repr(flat['solver']))[:40]}")
    check_device_name(device)
    return SolverSettings.from_dict(flat), device


def _corruptions(data: dict) -> dict:
    raw = data.get("corruptions", {})
    if not isinstance(raw, dict):
        raise ValueError(f"'corruptions' must be an object, got {type(raw).__name__}")
    out = {}
    for modality, value in raw.items():
        where = f"corruption of {printable(modality)[:40]!r}"
        fields = _object({"c": value}, "c", {"kind", "severity", "seed"})
        seed = fields.get("seed", 0)
        if isinstance(seed, int) and not isinstance(seed, bool):
            bounded_int(f"{where}: seed", seed, 0, 2**32 - 1)
        try:
            out[str(modality)] = Corruption.from_dict(fields)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return out


def read_session(path: str | os.PathLike) -> SavedSession:
    """Read and check a session file without changing anything; any problem is a ``SessionFileError``.

    The file must be a regular file (a FIFO or a device is refused at once, never read), of sane size, plain
    JSON without NaN or Infinity, with every setting of its type and range; the files it names must be regular
    files too. Nothing here imports torch.
    """
    path = Path(path)
    label = printable(path.name)
    data = _read_json(path, label)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SessionFileError(f"{label}: not a DEQ Studio session file")
    version = data.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        shown = repr(version) if isinstance(version, (int, float, str, type(None))) else type(version).__name__
        raise SessionFileError(f"{label}: session version {shown[:40]} is not supported")
    try:
        solver, device = _solver(data, version)
        corruptions = _corruptions(data)
        sample = bounded_int("sample", data.get("sample", 0), 0, 2**62)
        step = bounded_int("step", data.get("step", -1), -1, 10_000)
        split = data.get("split", "test")
        if not isinstance(split, str) or not split or len(split) > 64:
            raise ValueError(f"split must be a split's name, got {printable(repr(split))[:40]}")
    except (TypeError, ValueError, AttributeError) as exc:
        raise SessionFileError(f"{label}: invalid settings ({exc})") from None

    def named_file(key: str) -> Path | None:
        value = data.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise SessionFileError(f"{label}: the {key} path must be a string, got {type(value).__name__}")
        try:
            p = Path(value).expanduser()
            p = p if p.is_absolute() else (path.parent / p)  # relative to the session file
            if not (key == "checkpoint" and p.is_dir()):  # a DEQ package may be a folder
                guard.regular_file(p)
        except (ValueError, RuntimeError) as exc:
            raise SessionFileError(f"{label}: its {key} {printable(value)[:200]}: {exc}") from None
        return p

    return SavedSession(named_file("checkpoint"), named_file("dataset"), solver, device, corruptions, sample,
                        split, step, label)
