"""The studio's application state, Qt-free, with change signals the widgets subscribe to."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

from ..core.corruptions import kinds_for
from ..io import atomic
from .engine import BrowseTable, CorruptionChoice, Engine, ModelInfo, SolveRequest, SolveResult, SolverChoice
from .signals import Signal

SESSION_FORMAT = "deqstudio-session"
SESSION_VERSION = 1


class LoadError(ValueError):
    """A file could not be opened; the message is for the user and names the problem."""


class Session:
    """What is loaded and every setting. Setters emit signals; ``request()`` snapshots a solve."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.checkpoint = None
        self.dataset = None
        self.info: ModelInfo | None = None
        self.sample: int = 0
        self.split: str = "test"
        self.corruptions: dict[str, CorruptionChoice] = {}
        self.solver = SolverChoice()
        self.step: int = -1  # -1 = the last recorded step
        self.result: SolveResult | None = None
        self.table: BrowseTable | None = None
        self._generation = 0
        self.loaded = Signal()  # (info)
        self.sample_changed = Signal()  # (index)
        self.corruption_changed = Signal()  # (modality, choice)
        self.solver_changed = Signal()  # (choice)
        self.result_changed = Signal()  # (result)
        self.step_changed = Signal()  # (step)
        self.table_changed = Signal()  # (table)
        self.message = Signal()  # (text, is_error)

    # -- loading ----------------------------------------------------------------------------------
    def prepare(self, checkpoint_path=None, dataset_path=None):
        """Read and check files without touching the session (safe on a worker thread).

        Returns ``(checkpoint, dataset, engine)``; engine is None until both are known. Any problem is
        a LoadError naming it.
        """
        from ..io.checkpoint import CheckpointError, load_checkpoint
        from ..io.dataset import DatasetError, read_dataset
        from .engine import MismatchError

        checkpoint, dataset = self.checkpoint, self.dataset
        try:
            if checkpoint_path is not None:
                checkpoint = load_checkpoint(checkpoint_path)
            if dataset_path is not None:
                dataset = read_dataset(dataset_path)
            engine = None
            if checkpoint is not None and dataset is not None:
                engine = Engine(checkpoint, dataset, device=self.solver.device)
        except (CheckpointError, DatasetError, MismatchError) as exc:
            raise LoadError(str(exc)) from None
        except OSError as exc:
            raise LoadError(f"cannot read the file: {exc.strerror or exc}") from None
        return checkpoint, dataset, engine

    def install(self, checkpoint, dataset, engine) -> None:
        """Make prepared files current (UI thread) and announce them."""
        self.checkpoint, self.dataset = checkpoint, dataset
        if engine is None:
            return
        self.engine = engine
        self.info = engine.info()
        kept = {}
        for name, kind in zip(self.info.modality_names, self.info.modality_kinds):
            old = self.corruptions.get(name)
            kept[name] = old if old is not None and old.kind in kinds_for(kind) else CorruptionChoice()
        self.corruptions = kept
        if self.split not in dataset.splits:
            self.split = "test"
        split = dataset.split(self.split)
        if self.sample not in set(int(i) for i in split):
            self.sample = int(split[0])
        self.result = None
        self.table = None
        self.step = -1
        self.loaded.emit(self.info)

    def open(self, checkpoint_path=None, dataset_path=None) -> None:
        """Open a checkpoint and/or a dataset; on any problem raise LoadError and keep what was open."""
        self.install(*self.prepare(checkpoint_path, dataset_path))

    @property
    def ready(self) -> bool:
        return self.engine is not None

    # -- settings ---------------------------------------------------------------------------------
    def set_sample(self, index: int) -> None:
        if self.dataset is None:
            return
        if not 0 <= int(index) < len(self.dataset):
            raise ValueError(f"sample {index} is outside 0..{len(self.dataset) - 1}")
        if int(index) != self.sample:
            self.sample = int(index)
            self.step = -1
            self.sample_changed.emit(self.sample)

    def set_corruption(self, modality: str, choice: CorruptionChoice) -> None:
        if self.info is None or modality not in self.info.modality_names:
            raise ValueError(f"no modality {modality!r} in the loaded model")
        kind = self.info.modality_kinds[self.info.modality_names.index(modality)]
        if choice.kind not in kinds_for(kind):
            raise ValueError(f"corruption {choice.kind!r} does not apply to the {kind} modality {modality!r}")
        if self.corruptions.get(modality) != choice:
            self.corruptions[modality] = choice
            self.corruption_changed.emit(modality, choice)

    def reset_corruptions(self) -> None:
        for name in list(self.corruptions):
            self.set_corruption(name, replace(self.corruptions[name], severity=0.0))

    @staticmethod
    def _check_solver(choice: SolverChoice) -> None:
        from ..core.solvers import available_solvers

        if choice.solver not in available_solvers():
            raise ValueError(f"unknown solver {choice.solver!r}")
        if (isinstance(choice.max_iter, bool) or not isinstance(choice.max_iter, int) or choice.max_iter < 1
                or isinstance(choice.tol, bool) or not isinstance(choice.tol, (int, float))
                or not (math.isfinite(choice.tol) and choice.tol > 0)):
            raise ValueError(f"max_iter must be a whole number of at least 1 and tol a positive finite number "
                             f"(got max_iter={choice.max_iter!r}, tol={choice.tol!r})")
        if choice.stop_mode not in ("rel", "abs"):
            raise ValueError(f"unknown stop mode {choice.stop_mode!r}")

    def set_solver(self, choice: SolverChoice) -> None:
        self._check_solver(choice)
        if choice != self.solver:
            self.solver = choice
            self.solver_changed.emit(choice)

    def set_step(self, step: int) -> None:
        if step != self.step:
            self.step = step
            self.step_changed.emit(step)

    # -- solving ----------------------------------------------------------------------------------
    def engine_solve(self, request: SolveRequest) -> SolveResult:
        """Run on the worker thread: solve with whichever engine is current."""
        engine = self.engine
        if engine is None:
            raise LoadError("nothing is loaded")
        return engine.solve(request)

    def request(self) -> SolveRequest:
        self._generation += 1
        return SolveRequest(
            generation=self._generation, sample=self.sample,
            corruptions=tuple(sorted(self.corruptions.items())), solver=self.solver,
        )

    def accept(self, result: SolveResult) -> None:
        self.result = result
        if result.notice:
            self.message.emit(result.notice, False)
        steps = max(result.corrupted.nstep, result.clean.nstep)
        if self.step >= steps:
            self.step = -1
        self.result_changed.emit(result)

    def accept_table(self, table: BrowseTable) -> None:
        self.table = table
        self.table_changed.emit(table)

    # -- session files ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "checkpoint": str(Path(self.checkpoint.path).resolve()) if self.checkpoint is not None and self.checkpoint.path else None,
            "dataset": str(Path(self.dataset.path).resolve()) if self.dataset is not None and self.dataset.path else None,
            "sample": self.sample,
            "split": self.split,
            "corruptions": {m: asdict(c) for m, c in self.corruptions.items()},
            "solver": asdict(self.solver),
            "step": self.step,
        }

    def save(self, path) -> Path:
        path = Path(path)
        return atomic.write_text(path, json.dumps(self.to_dict(), indent=2))

    def load(self, path) -> None:
        """Restore a saved session; a bad file is a LoadError and changes nothing."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LoadError(f"{path.name}: not a readable session file ({exc.__class__.__name__})") from None
        if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
            raise LoadError(f"{path.name}: not a DEQ Studio session file")
        if data.get("version") != SESSION_VERSION:
            raise LoadError(f"{path.name}: session version {data.get('version')!r} is not supported")
        try:
            solver = SolverChoice(**data.get("solver", {}))
            self._check_solver(solver)
            corruptions = {str(m): CorruptionChoice(**c) for m, c in dict(data.get("corruptions", {})).items()}
            for c in corruptions.values():
                if not 0 <= float(c.severity) <= 5:
                    raise ValueError(f"severity {c.severity!r} is outside 0..5")
            sample = int(data.get("sample", 0))
            step = int(data.get("step", -1))
        except (TypeError, ValueError, AttributeError) as exc:
            raise LoadError(f"{path.name}: invalid settings ({exc})") from None
        def resolve(value):
            if not value:
                return None
            if not isinstance(value, str):
                raise LoadError(f"{path.name}: file paths must be strings, got {value!r}")
            p = Path(value).expanduser()
            return p if p.is_absolute() else (path.parent / p).resolve()  # relative to the session file

        self.open(resolve(data.get("checkpoint")), resolve(data.get("dataset")))
        self.set_solver(solver)
        for m, c in corruptions.items():
            if m in self.corruptions:
                try:
                    self.set_corruption(m, c)
                except ValueError as exc:
                    self.message.emit(f"{path.name}: {exc}; left clean", True)
        if self.dataset is not None and 0 <= sample < len(self.dataset):
            self.set_sample(sample)
        else:
            self.message.emit(f"{path.name}: sample {sample} is not in the dataset; showing sample {self.sample}", True)
        self.set_step(step)


def available_devices() -> tuple[str, ...]:
    """CPU, plus CUDA when a GPU is present (imports torch)."""
    import torch

    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
