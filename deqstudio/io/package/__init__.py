"""DEQ packages: a folder or ``.zip`` with ``contract.json`` and ONNX programs, opened without running Python.

``open_package(path)`` reads the contract (``contract.py``), each program through the package's own file
reader (``archive.py``: nothing outside the package is read, nothing is extracted), checks every program
(``programs.py``: standard operator domains, external data inside, names and sizes, a finite trial run) and
returns a ``ModelPackage`` whose ``adapter`` (``adapter.py``) runs them with onnxruntime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.adapter import ModelSource
from ...errors import CheckpointError, one_line
from .archive import ArchiveError, open_files, zip_has_contract
from .contract import CONTRACT, FORMAT, PROGRAMS, VERSION, Contract, ContractError, parse_contract
from .programs import TRIAL_BATCH, ProgramError, load_program

__all__ = ["CONTRACT", "FORMAT", "VERSION", "ModelPackage", "is_package", "open_package"]

TRUST = ("nothing from the package runs as Python: its ONNX programs run in onnxruntime, standard operators only, "
         "reading nothing outside the package")


@dataclass
class ModelPackage:
    """An opened package: what a checkpoint offers the studio (path, hash, adapter, metadata)."""

    path: Path
    sha256: str
    contract: Contract
    adapter: object
    metrics: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)


def is_package(path: str | os.PathLike) -> bool:
    """A folder holding ``contract.json``, or a zip file with it at its top (or in its one top folder)."""
    p = Path(path)
    try:
        if p.is_dir():
            return (p / CONTRACT).is_file()
        return p.is_file() and zip_has_contract(p)
    except OSError:
        return False


def open_package(path: str | os.PathLike) -> ModelPackage:
    """Read, check and trial-run every program (on the CPU; ``adapter.to`` moves it); CheckpointError naming the
    package and the problem."""
    from .adapter import PackageAdapter, providers_for

    path = Path(path)
    label = path.name or str(path)
    if path.is_dir() and not (path / CONTRACT).is_file():
        raise CheckpointError(f"{label}: is a folder without {CONTRACT}: neither a DEQ package nor a checkpoint file")
    try:
        files = open_files(path)
    except (ArchiveError, OSError) as exc:
        raise CheckpointError(f"{label}: {exc}") from None
    try:
        contract = parse_contract(files.read(CONTRACT))
        providers = providers_for("cpu")
        programs = {name: load_program(contract.programs[name], files, providers)
                    for name in PROGRAMS if name in contract.programs}
        _trial(contract, programs)
        sha256 = files.sha256()
    except (ContractError, ArchiveError, ProgramError) as exc:
        raise CheckpointError(f"{label}: {exc}") from None
    except ImportError as exc:
        raise CheckpointError(f"{label}: opening a DEQ package needs onnx and onnxruntime ({one_line(exc)})") from None
    except OSError as exc:
        raise CheckpointError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    finally:
        files.close()
    source = ModelSource(
        "package", str(path), sha256, f"{contract.name} (DEQ package, ONNX)", TRUST,
        details={"format": FORMAT, "version": VERSION, "programs": sorted(programs),
                 "jvp": "jvp program" if "jvp" in programs else "finite differences"},
    )
    adapter = PackageAdapter(contract, programs, source)
    return ModelPackage(path, sha256, contract, adapter, dict(contract.metrics), dict(contract.dataset))


def _trial(contract: Contract, programs: dict) -> None:
    """Every program once, on a batch of zero inputs (the state programs at f's first iterate from zero): finite
    outputs of the declared shapes, or a refusal."""
    b = TRIAL_BATCH
    zeros = [np.zeros((b, m.size), np.float32) for m in contract.modalities]
    features = programs["encode"].trial(zeros) if "encode" in programs else zeros
    z0 = np.zeros((b, contract.state_size), np.float32)
    z = programs["f"].trial([z0, *features])[0]  # the first iterate: a state such as the solver's (at the zero
    programs["head"].trial([z])                  # start some quantities, a gate's share, are undefined)
    if "gates" in programs:
        programs["gates"].trial([z, *features])
    for name in ("unimodal", "noise"):
        if name in programs:
            programs[name].trial(list(features))
    if "jvp" in programs:
        v = np.full_like(z, 1.0 / np.sqrt(z.shape[1]))
        programs["jvp"].trial([z, *features, v])
