"""The studio's application state, Qt-free: what is open, every setting, the current result.

Views subscribe to its signals and change it only through its setters. With a runner attached
(``start_solving``), every change that alters what is shown submits a solve; the runner hands the result back
(``accept``) and ``result_changed`` tells every view. Nothing here imports Qt.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

from ..core.corruptions import Corruption, kinds_for
from ..core.device import check_device_name
from ..core.solvers.settings import SolverSettings
from ..errors import Cancelled, DeqStudioError, LoadError
from ..io.session_file import SavedSession, read_session, write_session
from .dataset_statistics import start_statistics_pass
from .engine import Engine
from .runner import Runner
from .saved_session import restore, saved_state
from .sample_table import SampleTable
from .signals import Signal
from .table_fill import TableFiller
from .values import EquilibriumRequest, EquilibriumResult, ModelInfo, SolveRequest, SolveResult

__all__ = ["LoadError", "Session", "read_session"]

# the equilibrium analysis starts this long after its solve was shown: while sliders move, solves follow each
# other closely and each analysis would be stale before it began
EQUILIBRIUM_DELAY_S = 0.2


class Session:
    """What is loaded and every setting. Setters emit signals; ``request()`` snapshots a solve."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.checkpoint = None  # the open model (checkpoint, package or plugin's model: path, sha256, adapter)
        self.allowed_plugins: frozenset[str] = frozenset()  # plugins this session may run (consented or --allow-plugin)
        self.dataset = None
        self.info: ModelInfo | None = None
        self.sample: int = 0
        self.split: str = "test"
        self.corruptions: dict[str, Corruption] = {}
        self.solver = SolverSettings()
        self.device = "cpu"
        self.step: int = -1  # -1 = the last recorded step
        self.result: SolveResult | None = None
        self.table: SampleTable | None = None  # the split's samples, filled in the background (``filler``)
        self.runner: Runner | None = None
        self.equilibrium: EquilibriumResult | None = None  # of the shown result once computed (may lag behind)
        self.equilibrium_runner: Runner | None = None
        self._early = None  # (paths, future) of prepare_early
        self._first_solve = None  # prepare_early's helper process (``session.first_solve``), until taken
        # the helper's result is shown while this session's own engine loads: the model's path, and whether a
        # change made meanwhile is owed a solve (``pending``)
        self.preview = None
        self._owed = False
        self._statistics_of = None  # the dataset whose statistics pass was started (``start_statistics_pass``)
        self._generation = 0
        self.requested_at = 0.0  # time.monotonic() of the newest solve request
        self.loaded = Signal()  # (info)
        self.sample_changed = Signal()  # (index)
        self.corruption_changed = Signal()  # (modality, corruption)
        self.solver_changed = Signal()  # (settings)
        self.device_changed = Signal()  # (device)
        self.solve_requested = Signal()  # (generation): a newer result is on its way
        self.result_changed = Signal()  # (result)
        self.step_changed = Signal()  # (step)
        self.table_changed = Signal()  # (table): a new table, or its columns started over (settings changed)
        self.table_progress = Signal()  # (table): more of it is computed
        self.equilibrium_changed = Signal()  # (EquilibriumResult): the shown result's equilibria, computed after it
        self.message = Signal()  # (text, is_error)
        self.filler = TableFiller(self)

    # -- solving ----------------------------------------------------------------------------------
    def start_solving(self, synchronous: bool = False) -> Runner:
        """Attach the runner: from now on every change that alters the picture submits a solve."""
        from .engine import worker_thread_setup

        if self.runner is None:  # the worker reads the process's thread count before it sets its own
            self.runner = Runner(self.engine_solve, self.accept, self._solve_failed,
                                 thread_setup=worker_thread_setup, synchronous=synchronous)
            # the equilibrium analyses run on the same worker, after the solve, as requests of their own
            self.equilibrium_runner = Runner(self.engine_equilibrium, self.accept_equilibrium,
                                             self._equilibrium_failed, synchronous=synchronous, share=self.runner)
        return self.runner

    def stop_solving(self) -> None:
        """Cancel the table's fill, let a solve or chunk in flight finish (its result is dropped), detach the runner."""
        self.filler.cancel()
        if self._first_solve is not None:
            self._first_solve.cancel()
            self._first_solve = None
        if self.equilibrium_runner is not None:
            self._generation += 1  # an analysis in flight stops at its next step
            self.equilibrium_runner.shutdown()
            self.equilibrium_runner = None
        if self.runner is not None:
            self.runner.shutdown()
            self.runner = None

    @property
    def generation(self) -> int:
        """The number of the newest solve request."""
        return self._generation

    @property
    def pending(self) -> bool:
        """A solve is running or waiting: what is shown is older than the settings."""
        return self._owed or (self.runner is not None and self.runner.busy)

    def solve(self) -> None:
        """Submit a solve of the current settings (newest wins)."""
        if self.runner is not None and not self.ready and self.preview is not None:
            # the first solve is shown but the engine still loads: it solves the settings then (``install``)
            self._owed = True
            self._generation += 1
            self.requested_at = time.monotonic()
            self.solve_requested.emit(self._generation)
            return
        if self.runner is None or not self.ready:
            return
        request = self.request()
        self.requested_at = time.monotonic()
        if self.equilibrium_runner is not None:
            self.equilibrium_runner.drop()  # the picture is changing: an analysis of the old one is stale
        self.solve_requested.emit(request.generation)
        self.runner.submit(request)

    def engine_solve(self, request: SolveRequest) -> SolveResult:
        """Run on the worker thread: solve with whichever engine is current."""
        engine = self.engine
        if engine is None:
            raise LoadError("nothing is loaded")
        return engine.solve(request)

    def request(self) -> SolveRequest:
        self._generation += 1
        return SolveRequest(generation=self._generation, sample=self.sample,
                            corruptions=tuple(sorted(self.corruptions.items())), solver=self.solver,
                            device=self.device)

    def accept(self, result: SolveResult) -> None:
        self.result = result
        if result.notice:
            self.message.emit(result.notice, False)
        if self.step >= max(result.corrupted.nstep, result.clean.nstep):
            self.step = -1
        self.result_changed.emit(result)
        self._analyse_equilibrium(result)
        start_statistics_pass(self)

    # -- equilibrium analyses (after each solve, never before the plots) ----------------------------
    def _analyse_equilibrium(self, result: SolveResult) -> None:
        eq = self.equilibrium_runner
        if eq is None or not result.capabilities.solver or (self.runner is not None and self.runner.queued):
            return  # no analyses here, no fixed point, or a newer solve waits: its own analysis follows it
        eq.submit(EquilibriumRequest(result.request.generation, result), delay=EQUILIBRIUM_DELAY_S)

    def engine_equilibrium(self, request: EquilibriumRequest) -> EquilibriumResult:
        """Run on the worker thread; stops between stages once a newer solve was asked for."""
        engine = self.engine
        if engine is None:
            raise LoadError("nothing is loaded")
        return engine.equilibrium(request.result, cancel=lambda: self._generation != request.generation)

    def accept_equilibrium(self, equilibrium: EquilibriumResult) -> None:
        if self.result is None or equilibrium.generation != self.result.request.generation:
            return  # of a result no longer shown
        self.equilibrium = equilibrium
        self.equilibrium_changed.emit(equilibrium)

    def _equilibrium_failed(self, request, exc: BaseException) -> None:
        if not isinstance(exc, Cancelled):
            self.message.emit(f"the equilibrium analysis failed: {exc}", True)

    def _solve_failed(self, request, exc: BaseException) -> None:
        self.message.emit(f"the solve failed: {exc}", True)

    # -- the samples table -------------------------------------------------------------------------------
    def _corruption_key(self) -> tuple:
        active = tuple(sorted((m, c) for m, c in self.corruptions.items() if c.active))
        return (self.solver, active) if active else ()

    def corruption_label(self) -> str:
        """The active corruptions as ``MOD=KIND:SEVERITY``, e.g. "strong=gaussian:3, picture=blur:1" ("" when clean)."""
        return ", ".join(c.text(m) for m, c in sorted(self.corruptions.items()) if c.active)

    def new_table(self) -> None:
        """Start the split's table over (a new model, dataset or solver): rows at once, columns to compute."""
        self.filler.cancel()
        if self.dataset is None or self.engine is None:
            self.table = None
            return
        idx = self.dataset.split(self.split)
        self.table = SampleTable(self.split, idx, self.dataset.labels[idx], (self.solver,), self._corruption_key())
        self.table.corruption_label = self.corruption_label()
        self.table_changed.emit(self.table)

    def _corruptions_changed(self) -> None:
        if self.table is not None:
            key = self._corruption_key()
            if (self.table.now.key if self.table.now is not None else ()) != key:
                self.filler.cancel()
            self.table.set_corruption(key, self.corruption_label())
            self.table_changed.emit(self.table)

    # -- loading ----------------------------------------------------------------------------------
    def prepare(self, checkpoint_path=None, dataset_path=None):
        """Read and check files without touching the session (safe on a worker thread).

        Returns ``(checkpoint, dataset, engine)``; engine is None until both are known. The model may be a
        checkpoint, a DEQ package or ``plugin:NAME[:PATH]`` (``io.models.open_model``). Any problem is a
        LoadError naming it.
        """
        from ..io.dataset import read_dataset
        from ..io.models import open_model

        checkpoint, dataset = self.checkpoint, self.dataset
        try:
            if checkpoint_path is not None:
                checkpoint = open_model(checkpoint_path, allowed_plugins=self.allowed_plugins)
            if dataset_path is not None:
                dataset = read_dataset(dataset_path)
            engine = None
            if checkpoint is not None and dataset is not None:
                engine = Engine(checkpoint.adapter, dataset, device=self.device)
        except DeqStudioError as exc:
            raise LoadError(str(exc)) from None
        except OSError as exc:
            raise LoadError(f"cannot read the file: {exc.strerror or exc}") from None
        return checkpoint, dataset, engine

    def prepare_early(self, checkpoint_path=None, dataset_path=None, first=None) -> None:
        """Start on these files before any window exists: keep ``first``, a ``first_solve.FirstSolve`` helper solving
        them (``startup.show_first_solve``), or else read them on the solve worker now (``take_early``)."""
        if first is not None:
            self._first_solve = first
            return
        runner = self.start_solving()
        self._early = ((checkpoint_path, dataset_path), runner.start_exclusive(self.prepare, checkpoint_path,
                                                                                dataset_path))

    def take_early(self, checkpoint_path=None, dataset_path=None):
        """The future of ``prepare_early`` for exactly these files (once), else None."""
        early, self._early = self._early, None
        if early is not None and early[0] == (checkpoint_path, dataset_path):
            return early[1]
        return None

    def take_first_solve(self, checkpoint_path=None, dataset_path=None):
        """``prepare_early``'s helper for exactly these files (once), else None (a helper for others is stopped)."""
        first, self._first_solve = self._first_solve, None
        if first is not None and first.paths != (checkpoint_path, dataset_path):
            first.cancel()
            first = None
        return first

    def adopt(self, checkpoint, dataset, engine) -> None:
        """Make prepared files current without announcing them: keep each modality's corruption where its kind
        still applies, and the split and sample where the dataset has them."""
        self.checkpoint, self.dataset = checkpoint, dataset
        if engine is None:
            return
        self.engine = engine
        self.adopt_info(engine.info(), dataset)

    def adopt_info(self, info: ModelInfo, dataset) -> None:
        self.info = info
        kept = {}
        for name, kind in zip(self.info.modality_names, self.info.modality_kinds):
            old = self.corruptions.get(name)
            kept[name] = old if old is not None and old.kind in kinds_for(kind) else Corruption()
        self.corruptions = kept
        if self.split not in dataset.splits:
            self.split = "test"
        split = dataset.split(self.split)
        if self.sample not in {int(i) for i in split}:
            self.sample = int(split[0])

    def install(self, checkpoint, dataset, engine) -> None:
        """Make prepared files current (UI thread) and announce them. A start-up helper's result shown until now
        gives way, whatever was opened."""
        previewed, self.preview, self._owed = self.preview, None, False
        if engine is None:
            self.checkpoint, self.dataset = checkpoint, dataset
            return
        self.adopt(checkpoint, dataset, engine)
        self.result = None
        self.equilibrium = None
        self.step = -1
        if previewed is None or previewed.info != self.info:  # the views were set up for this model already
            self.loaded.emit(self.info)
        self.solve()  # the shown sample first; the table fills afterwards, in the background
        self.new_table()

    def drop_preview(self) -> None:
        """The start-up helper's model did not open here after all: nothing is open, nothing is owed."""
        if self.preview is not None:
            self.preview, self._owed = None, False
            self.dataset = self.info = self.result = self.table = None
            self.table_changed.emit(None)

    def open(self, checkpoint_path=None, dataset_path=None) -> None:
        """Open a checkpoint and/or a dataset; on any problem raise LoadError and keep what was open."""
        self.install(*self.prepare(checkpoint_path, dataset_path))

    @property
    def ready(self) -> bool:
        return self.engine is not None

    def available_devices(self) -> tuple[str, ...]:
        """The CPU, and CUDA when a GPU is present (asked once)."""
        if not hasattr(self, "_devices"):
            from ..core.device import available_devices

            self._devices = available_devices()
        return self._devices

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
            self.solve()

    def set_corruption(self, modality: str, corruption: Corruption) -> None:
        if self.info is None or modality not in self.info.modality_names:
            raise ValueError(f"no modality {modality!r} in the loaded model")
        kind = self.info.modality_kinds[self.info.modality_names.index(modality)]
        if corruption.kind not in kinds_for(kind):
            raise ValueError(f"corruption {corruption.kind!r} does not apply to the {kind} modality {modality!r}")
        if self.corruptions.get(modality) != corruption:
            self.corruptions[modality] = corruption
            self.corruption_changed.emit(modality, corruption)
            self.solve()
            self._corruptions_changed()

    @contextlib.contextmanager
    def changes(self):
        """Within the block, setters announce their changes but nothing is solved; one solve at the end (only when
        the block held the runner: a nested block leaves it to the outer one)."""
        runner, self.runner = self.runner, None
        try:
            yield self
        finally:
            self.runner = runner
        if runner is not None:
            self.solve()

    def set_corruptions(self, corruptions: dict[str, Corruption]) -> None:
        """Several modalities' corruptions at once, announced one by one, solved once."""
        with self.changes():  # one solve for the whole change, not one per modality
            for modality, corruption in corruptions.items():
                self.set_corruption(modality, corruption)

    def reset_corruptions(self) -> None:
        self.set_corruptions({name: replace(c, severity=0.0) for name, c in self.corruptions.items()})

    def set_solver(self, settings: SolverSettings) -> None:
        if not isinstance(settings, SolverSettings):
            raise ValueError(f"solver settings must be SolverSettings, got {type(settings).__name__}")
        if settings != self.solver:
            self.solver = settings
            self.solver_changed.emit(settings)
            self.solve()
            self.new_table()

    def set_device(self, device: str) -> None:
        check_device_name(device)
        if device != self.device:
            self.device = device
            self.device_changed.emit(device)
            self.solve()

    def set_step(self, step: int) -> None:
        if step != self.step:
            self.step = step
            self.step_changed.emit(step)

    # -- session files (``saved_session``) --------------------------------------------------------------
    def saved(self) -> SavedSession:
        return saved_state(self)

    def save(self, path) -> Path:
        return write_session(path, self.saved())

    def load(self, path) -> None:
        """Restore a saved session; a bad file is a LoadError and changes nothing (``read_session``)."""
        restore(self, path)
