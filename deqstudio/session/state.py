"""The studio's application state, Qt-free, with change signals the widgets subscribe to."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..core.bounds import MAX_ITER, TOL, bounded_int, bounded_real, solver_option
from ..core.corruptions import CORRUPTIONS, kinds_for
from ..io import atomic, guard
from .engine import BrowseTable, CorruptionChoice, Engine, ModelInfo, SolveRequest, SolveResult, SolverChoice
from .signals import Signal

SESSION_FORMAT = "deqstudio-session"
SESSION_VERSION = 1
MAX_SESSION_BYTES = 1024**2  # a session this app writes is a few hundred bytes
MAX_SEED = 2**32 - 1


class LoadError(ValueError):
    """A file could not be opened; the message is for the user and names the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(guard.printable(message))


def _refuse_constant(name: str):
    raise ValueError(f"it holds {name}, which no session setting takes")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"it holds the number {text[:20]}, beyond the range of a float")
    return value


def _read_json(path: Path) -> object:
    """The JSON in a session file: a regular file of at most MAX_SESSION_BYTES; no NaN or Infinity."""
    label = guard.printable(path.name)
    try:
        fh = guard.open_regular(path)
    except ValueError as exc:
        raise LoadError(f"{label}: {exc}") from None
    try:
        with fh:
            raw = fh.read(MAX_SESSION_BYTES + 1)
    except OSError as exc:
        raise LoadError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_SESSION_BYTES:
        raise LoadError(f"{label}: too large for a session file (more than {MAX_SESSION_BYTES // 1024} KiB)")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise LoadError(f"{label}: not a readable session file (nested too deeply)") from None
    except UnicodeDecodeError:
        raise LoadError(f"{label}: not a readable session file (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise LoadError(f"{label}: not a readable session file ({exc.__class__.__name__})") from None
    except ValueError as exc:
        raise LoadError(f"{label}: not a readable session file ({exc})") from None


def _settings(data: dict, key: str, names) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{key!r} must be an object, got {type(value).__name__}")
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ValueError(f"{key!r} has unknown setting {guard.printable(unknown[0])[:40]!r}")
    return value


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
    def _check_solver(choice: SolverChoice, known_solver: bool = True) -> None:
        """Every solver setting of the right type and within its range (as a checkpoint's config is).

        ``known_solver=False`` skips looking the solver's name up (which imports torch).
        """
        if known_solver:
            from ..core.solvers import available_solvers

            solvers = available_solvers()
        if not isinstance(choice.solver, str) or (known_solver and choice.solver not in solvers):
            raise ValueError(f"unknown solver {guard.printable(repr(choice.solver))[:40]}")
        if (isinstance(choice.max_iter, bool) or not isinstance(choice.max_iter, int) or choice.max_iter < 1
                or isinstance(choice.tol, bool) or not isinstance(choice.tol, (int, float))
                or not (math.isfinite(choice.tol) and choice.tol > 0)):
            raise ValueError(f"max_iter must be a whole number of at least 1 and tol a positive finite number "
                             f"(got max_iter={choice.max_iter!r}, tol={choice.tol!r})")
        bounded_int("max_iter", choice.max_iter, *MAX_ITER)
        bounded_real("tol", choice.tol, *TOL)
        for name in ("m", "lam", "tau"):
            solver_option(name, getattr(choice, name))
        if not isinstance(choice.stop_mode, str) or choice.stop_mode not in ("rel", "abs"):
            raise ValueError(f"unknown stop mode {guard.printable(repr(choice.stop_mode))[:40]}")
        if not isinstance(choice.device, str) or not (choice.device in ("cpu", "cuda") or (
                choice.device.startswith("cuda:") and choice.device[5:].isdigit() and len(choice.device) < 9)):
            raise ValueError(f"unknown device {guard.printable(repr(choice.device))[:40]}; expected cpu or cuda")

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
        """Restore a saved session; a bad file is a LoadError and changes nothing (``read_session``)."""
        saved = read_session(path)
        self.open(saved.checkpoint, saved.dataset)
        self.set_solver(saved.solver)
        for m, c in saved.corruptions.items():
            if m in self.corruptions:
                try:
                    self.set_corruption(m, c)
                except ValueError as exc:
                    self.message.emit(f"{saved.label}: {exc}; left clean", True)
        if self.dataset is not None and 0 <= saved.sample < len(self.dataset):
            self.set_sample(saved.sample)
        else:
            self.message.emit(f"{saved.label}: sample {saved.sample} is not in the dataset; showing sample "
                              f"{self.sample}", True)
        self.set_step(saved.step)
        if saved.notice:
            self.message.emit(saved.notice, False)


@dataclass(frozen=True)
class SavedSession:
    """A session file's settings, each checked; ``notice`` says what was adapted to this machine."""

    label: str
    checkpoint: Path | None
    dataset: Path | None
    solver: SolverChoice
    corruptions: dict
    sample: int
    step: int
    notice: str = ""


def read_session(path, full: bool = True) -> SavedSession:
    """Read and check a session file without changing anything; any problem is a LoadError.

    The file must be a regular file (a FIFO or a device is refused at once, never read), of sane
    size, plain JSON without NaN or Infinity, with every setting of its type and range; the files it
    names must be regular files too. A session saved on CUDA opens on the CPU where there is no GPU,
    with a notice saying so. ``full=False`` leaves out the two checks that import torch (the solver's
    name, whether CUDA is present): the command line checks a session that way before the window opens.
    """
    path = Path(path)
    label = guard.printable(path.name)
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
        raise LoadError(f"{label}: not a DEQ Studio session file")
    version = data.get("version")
    if type(version) is not int or version != SESSION_VERSION:
        shown = repr(version) if isinstance(version, (int, float, str, type(None))) else type(version).__name__
        raise LoadError(f"{label}: session version {shown[:40]} is not supported")
    try:
        solver = SolverChoice(**_settings(data, "solver", {f.name for f in fields(SolverChoice)}))
        Session._check_solver(solver, known_solver=full)
        raw = data.get("corruptions", {})
        if not isinstance(raw, dict):
            raise ValueError(f"'corruptions' must be an object, got {type(raw).__name__}")
        corruptions = {}
        for m, c in raw.items():
            where = f"corruption of {guard.printable(m)[:40]!r}"
            choice = CorruptionChoice(**_settings({"c": c}, "c", {f.name for f in fields(CorruptionChoice)}))
            if not isinstance(choice.kind, str) or choice.kind not in CORRUPTIONS:
                raise ValueError(f"{where}: unknown kind {guard.printable(repr(choice.kind))[:40]}")
            bounded_real(f"{where}: severity", choice.severity, 0.0, 5.0)
            bounded_int(f"{where}: seed", choice.seed, 0, MAX_SEED)
            corruptions[m] = replace(choice, severity=float(choice.severity))
        sample = bounded_int("sample", data.get("sample", 0), 0, 2**62)
        step = bounded_int("step", data.get("step", -1), -1, 10_000)
    except (TypeError, ValueError, AttributeError) as exc:
        raise LoadError(f"{label}: invalid settings ({exc})") from None

    def named_file(key: str) -> Path | None:
        value = data.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise LoadError(f"{label}: the {key} path must be a string, got {type(value).__name__}")
        try:
            p = Path(value).expanduser()
            p = p if p.is_absolute() else (path.parent / p)  # relative to the session file
            guard.regular_file(p)
        except (ValueError, RuntimeError) as exc:
            raise LoadError(f"{label}: its {key} {guard.printable(value)[:200]}: {exc}") from None
        return p

    checkpoint, dataset = named_file("checkpoint"), named_file("dataset")
    notice = ""
    if full and solver.device.startswith("cuda") and "cuda" not in available_devices():
        notice = (f"{label}: this session ran on {solver.device}, but CUDA is not available on this machine; "
                  "using the CPU")
        solver = replace(solver, device="cpu")
    return SavedSession(label, checkpoint, dataset, solver, corruptions, sample, step, notice)


def available_devices() -> tuple[str, ...]:
    """CPU, plus CUDA when a GPU is present (imports torch)."""
    import torch

    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
