"""What a torch file from elsewhere holds, read without running it: the state dicts in it.

``read_foreign`` reads a state dict, a wrapped one (``{"state_dict": …}``, ``{"model": …}``, ``[state_dict,
optimizer, epoch]``) or a whole pickled model through ``io.restricted_pickle`` (files in torch's legacy pre-zip
format through ``torch.load(weights_only=True)``), and lists every mapping of names to tensors in it, and every
pickled ``nn.Module`` flattened as ``Module.state_dict`` would (with the class path of each module), as
``Candidate`` state dicts.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError, one_line, printable
from . import guard, restricted_pickle
from .restricted_pickle import Placeholder, TensorRef

MAX_FILE = 8 * 1024**3
MAX_NODES = 500_000  # objects visited while looking for state dicts
MAX_DEPTH = 64


@dataclass
class Candidate:
    """A state dict found in a file: where, its tensors (lazy), and the class path of each module in it."""

    where: str  # "the file", "['state_dict']", "[0]", "the pickled model (training_structures.X.MMDL)"
    tensors: dict  # name -> TensorRef (or torch.Tensor, for files read by torch itself)
    classes: dict = field(default_factory=dict)  # module prefix ("" for the root, "fuse." ...) -> class path


@dataclass
class ForeignFile:
    """What a torch file holds, read without running it."""

    path: Path
    sha256: str
    candidates: list[Candidate]
    named_classes: tuple[str, ...]  # every global the file names that did not resolve (placeholders)
    root: str  # what the file's top-level object is, in words


def _module_tensors(ph: Placeholder, prefix: str, tensors: dict, classes: dict, depth: int) -> None:
    state = ph.module_state
    classes[prefix] = ph.class_path
    if depth > MAX_DEPTH:
        return
    for name, value in state["_parameters"].items():
        if isinstance(value, TensorRef):
            tensors[f"{prefix}{name}"] = value
    skipped = state.get("_non_persistent_buffers_set") or ()
    buffers = state.get("_buffers")
    for name, value in (buffers.items() if isinstance(buffers, dict) else ()):
        if isinstance(value, TensorRef) and name not in skipped:
            tensors[f"{prefix}{name}"] = value
    for name, child in state["_modules"].items():
        if isinstance(child, Placeholder) and child.module_state is not None:
            _module_tensors(child, f"{prefix}{name}.", tensors, classes, depth + 1)


def candidates(root) -> list[Candidate]:
    """Every state dict the object holds: name→tensor mappings and flattened pickled modules, breadth first."""
    import torch

    found: list[Candidate] = []
    seen: set[int] = set()
    queue = deque([(root, "the file", 0)])
    visited = 0
    while queue:
        obj, where, depth = queue.popleft()
        visited += 1
        if visited > MAX_NODES or depth > MAX_DEPTH or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Placeholder):
            if obj.module_state is not None:
                tensors, classes = {}, {}
                _module_tensors(obj, "", tensors, classes, 0)
                label = "the pickled model" if where == "the file" else where
                found.append(Candidate(f"{label} ({obj.class_path})", tensors, classes))
                continue
            state = obj.__dict__["state"]
            children = [state] if state is not None else []
            children += list(obj.__dict__["args"]) + list(obj.__dict__["items"].values())
            queue.extend((c, f"{where} ({obj.class_path})", depth + 1) for c in children)
        elif isinstance(obj, dict):
            tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, (TensorRef, torch.Tensor))}
            if tensors:
                found.append(Candidate(where, tensors))
            for k, v in obj.items():
                if not isinstance(v, (TensorRef, torch.Tensor)):
                    key = printable(k)[:40] if isinstance(k, str) else type(k).__name__
                    queue.append((v, f"['{key}']" if where == "the file" else f"{where}['{key}']", depth + 1))
        elif isinstance(obj, (list, tuple)):
            queue.extend((v, f"[{i}]" if where == "the file" else f"{where}[{i}]", depth + 1) for i, v in enumerate(obj))
    return found


def _describe(root) -> str:
    if isinstance(root, Placeholder):
        return f"a pickled object of class {root.class_path}"
    return f"a {type(root).__name__}"


def read_foreign(path: str | os.PathLike) -> ForeignFile:
    """Read a torch file without running anything in it; raises ``CheckpointError`` with one line."""
    path = Path(path)
    name = printable(path.name)
    try:
        fh = guard.open_regular(path)
    except ValueError as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise CheckpointError(f"{name}: the file is empty (0 bytes)")
        if size > MAX_FILE:
            raise CheckpointError(f"{name}: the file is {size / 1024**3:.1f} GiB, larger than this importer reads")
        data = fh.read()
    if not data.startswith(b"PK\x03\x04"):
        return _read_legacy(path, data)
    try:
        root, named = restricted_pickle.load(path, data)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError, ValueError, TypeError, IndexError,
            AttributeError, OverflowError, RecursionError, MemoryError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{name}: refused: its pickle cannot be read as tensors and plain data "
                              f"({one_line(exc, 160) or type(exc).__name__}); nothing in it was run") from None
    except Exception as exc:  # noqa: BLE001 — any other failure on a hostile file is still a one-line refusal
        raise CheckpointError(f"{name}: refused: unreadable ({type(exc).__name__}); nothing in it was run") from None
    return ForeignFile(path, guard.file_sha256(path), candidates(root), named, _describe(root))


def _read_legacy(path: Path, data: bytes) -> ForeignFile:
    """A file in torch's pre-1.6 format: read by ``torch.load(weights_only=True)`` (plain state dicts only)."""
    import torch

    name = printable(path.name)
    try:
        root = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{name}: refused: a legacy (pre-zip) torch file holding objects other than tensors "
                              "and plain data; re-save its state_dict with a current torch; nothing in it was "
                              "run") from None
    except Exception as exc:  # noqa: BLE001 — not a torch file, truncated, ...: one line
        raise CheckpointError(f"{name}: not a torch file or truncated ({type(exc).__name__})") from None
    return ForeignFile(path, guard.file_sha256(path), candidates(root), (), _describe(root))
