"""The studio window: panels around the plots, one step scrubber, menus, status bar."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from ..session.analyses import convergence_job, robustness_job
from ..session.provenance import provenance
from ..session.runner import Runner
from ..session.traces import write_trace_hdf5
from .analysis_window import AnalysisWindow
from .export import ExportError, export_plot
from .report import SOLVE_FIGURES, solve_figures, sweep_figures, write_report
from ..session.state import LoadError, Session
from .panels import CorruptionPanel, SampleBrowser, SolverPanel
from .plots import GatePlot, ProbabilityPlot, ResidualPlot, ShiftPlot, UDMLPanel
from .scrubber import Scrubber
from ..session.recent import RecentFiles
from ..io.guard import printable

CHECKPOINT_FILTER = "DEQ Studio checkpoints (*.pt *.pth *.ckpt);;All files (*)"
DATASET_FILTER = "DEQ Studio datasets (*.h5 *.hdf5);;All files (*)"
SESSION_FILTER = "DEQ Studio sessions (*.json);;All files (*)"
EXPORT_FILTER = "PNG image (*.png);;SVG vector image (*.svg);;PDF document (*.pdf);;CSV data (*.csv)"


_GUI_THREAD_GC = None


def collect_garbage_on_the_gui_thread() -> None:
    """Python's cycle collector runs in whichever thread happens to allocate: on the solve worker it could
    destroy Qt objects (closed windows, removed plot items) off the GUI thread, which pyqtgraph warns can
    crash Qt. Automatic collection is turned off and done on a GUI-thread timer instead."""
    global _GUI_THREAD_GC
    if _GUI_THREAD_GC is None:
        from pyqtgraph.util.garbage_collector import GarbageCollector

        _GUI_THREAD_GC = GarbageCollector(interval=0.5)


class MainWindow(QtWidgets.QMainWindow):
    """Widgets subscribe to the Session; solves go through the Runner; nothing here calls torch."""

    def __init__(self, session: Session | None = None, devices=("cpu",), recent: RecentFiles | None = None,
                 remember: bool = True) -> None:
        super().__init__()
        collect_garbage_on_the_gui_thread()
        self.setWindowTitle("DEQ Studio")
        self.resize(1500, 940)
        self.setAcceptDrops(True)
        self.session = session or Session()
        self.recent = recent or RecentFiles()
        # False for screenshots and benchmarks: they must not replace the user's recent files or last session
        self.remember = remember
        self.runner = Runner(self.session.engine_solve, self._on_result, self._on_error)
        self.result_listeners: list = []
        self.last_error = ""
        self.analysis_windows: list = []
        self._closing = False
        self._build(devices)
        self._connect()

    # -- layout -----------------------------------------------------------------------------------
    def _build(self, devices) -> None:
        self.residual = ResidualPlot()
        self.gates = GatePlot()
        self.probabilities = ProbabilityPlot()
        self.shift = ShiftPlot()
        self.udml = UDMLPanel()
        self.plots = [self.residual, self.gates, self.probabilities, self.shift, self.udml]
        grid = QtWidgets.QGridLayout()
        grid.setContentsMargins(4, 4, 4, 4)
        grid.addWidget(self.residual, 0, 0)
        grid.addWidget(self.gates, 0, 1)
        grid.addWidget(self.probabilities, 1, 0)
        grid.addWidget(self.udml, 1, 1)
        grid.addWidget(self.shift, 2, 0, 1, 2)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 3)
        grid.setRowStretch(2, 2)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        for plot in self.plots:
            plot.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Ignored)
        self.scrubber = Scrubber()
        self.banner = QtWidgets.QLabel()
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.setTextFormat(QtCore.Qt.TextFormat.PlainText)  # text from files is never read as HTML
        self.banner.setStyleSheet("QLabel#banner { background: #fdecea; color: #611a15; padding: 6px; border-radius: 3px; }")
        self.banner.hide()
        central = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.banner)
        column.addLayout(grid, 1)
        column.addWidget(self.scrubber)
        self.setCentralWidget(central)

        self.browser = SampleBrowser()
        self._dock("Samples", self.browser, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        self.corruption = CorruptionPanel()
        self.solver_panel = SolverPanel(devices)
        right = QtWidgets.QWidget()
        rcol = QtWidgets.QVBoxLayout(right)
        rcol.setContentsMargins(0, 0, 0, 0)
        rcol.addWidget(self.corruption, 1)
        rcol.addWidget(self.solver_panel)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(right)
        scroll.setMinimumWidth(300)
        self._dock("Corruption and solver", scroll, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)

        status = self.statusBar()
        self.status_device = QtWidgets.QLabel("device: –")
        self.status_solve = QtWidgets.QLabel("")
        status.addPermanentWidget(self.status_device)
        status.addPermanentWidget(self.status_solve)
        self._menus()

    def _dock(self, title: str, widget: QtWidgets.QWidget, area) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        file.addAction("Open &checkpoint…", QtGui.QKeySequence.StandardKey.Open, self._ask_checkpoint)
        file.addAction("Open &dataset…", self._ask_dataset)
        self.recent_menu = file.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file.addSeparator()
        file.addAction("&Save session…", QtGui.QKeySequence.StandardKey.Save, self._ask_save_session)
        file.addAction("&Load session…", self._ask_load_session)
        self.restore_action = file.addAction("Reopen &last session", self.restore_last_session)
        file.addSeparator()
        file.addAction("&Quit", QtGui.QKeySequence.StandardKey.Quit, self.close)
        export = bar.addMenu("E&xport")
        plot_menu = export.addMenu("Export &plot")
        for slug, title, _ in SOLVE_FIGURES:
            plot_menu.addAction(f"{title}…", lambda slug=slug, title=title: self._ask_export_plot(slug, title))
        export.addAction("Export &trace (HDF5)…", self._ask_export_trace)
        export.addAction("Export &report…", self._ask_export_report)
        analysis = bar.addMenu("&Analysis")
        analysis.addAction("&Robustness sweep (all modalities, Gaussian noise)", lambda: self.start_analysis("robustness"))
        analysis.addAction("Robustness sweep (every corruption &kind)", lambda: self.start_analysis("robustness", kinds=("all",)))
        analysis.addAction("&Convergence statistics (all solvers)", lambda: self.start_analysis("convergence"))
        view = bar.addMenu("&Playback")
        view.addAction("Play / pause\tSpace", self.scrubber.toggle_play)
        view.addAction("Step back\tLeft", lambda: self.scrubber.nudge(-1))
        view.addAction("Step forward\tRight", lambda: self.scrubber.nudge(1))

    # -- wiring -----------------------------------------------------------------------------------
    def _connect(self) -> None:
        s = self.session
        s.loaded.connect(self._on_loaded)
        s.table_changed.connect(self._on_table)
        s.message.connect(self.show_message)
        self.browser.sample_chosen.connect(self._choose_sample)
        self.corruption.changed.connect(self._corruption_moved)
        self.corruption.reset_requested.connect(self._reset)
        self.solver_panel.changed.connect(self._solver_changed)
        self.scrubber.step_changed.connect(self._step)

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:  # noqa: N802
        key = event.key()
        if key == QtCore.Qt.Key.Key_Space:
            self.scrubber.toggle_play()
        elif key == QtCore.Qt.Key.Key_Left:
            self.scrubber.nudge(-1)
        elif key == QtCore.Qt.Key.Key_Right:
            self.scrubber.nudge(1)
        else:
            super().keyPressEvent(event)

    # -- loading ----------------------------------------------------------------------------------
    async def open_files(self, checkpoint=None, dataset=None) -> bool:
        """Load off the UI thread; on failure show the reason and keep what was open."""
        self.statusBar().showMessage("loading …")
        try:
            prepared = await self.runner.run_exclusive(self.session.prepare, checkpoint, dataset)
        except LoadError as exc:
            kept = " Nothing was changed: what was open stays open." if self.session.ready else \
                " Open a DEQ Studio checkpoint (.pt) and dataset (.h5) to begin."
            self.show_message(f"Could not open it. {str(exc).rstrip('.')}.{kept}", True)
            self.statusBar().clearMessage()
            return False
        except Exception as exc:  # noqa: BLE001 — an unexpected failure is still a message
            self.show_message(f"could not open: {exc}", True)
            return False
        self.session.install(*prepared)
        for p in (checkpoint, dataset):
            if p is not None and self.remember:
                self.recent.add(str(Path(p).resolve()))
        self.statusBar().clearMessage()
        if self.session.ready:
            self.hide_message()
            await self.refresh_table()
        return True

    def _open_sync(self, checkpoint=None, dataset=None) -> None:
        asyncio.ensure_future(self.open_files(checkpoint, dataset))

    def _ask_checkpoint(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self._open_sync(checkpoint=path)

    def _ask_dataset(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open dataset", "", DATASET_FILTER)
        if path:
            self._open_sync(dataset=path)

    def open_path(self, path: str) -> None:
        """Open a file of either kind, by its content (drag-and-drop, Open recent)."""
        from ..io.inspect import HDF5_MAGIC

        from ..io.guard import open_regular

        try:
            with open_regular(path) as fh:  # a FIFO or a device is refused at once, never read
                head = fh.read(8)
        except ValueError as exc:
            self.show_message(f"{Path(path).name}: {exc}", True)
            return
        except OSError as exc:
            self.show_message(f"{Path(path).name}: cannot be read ({exc.strerror or exc})", True)
            return
        if head.startswith(HDF5_MAGIC):
            self._open_sync(dataset=path)
        elif path.endswith(".json"):
            self.load_session(path)
        else:
            self._open_sync(checkpoint=path)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        paths = self.recent.paths()
        if not paths:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for p in paths:
            self.recent_menu.addAction(p, lambda p=p: self.open_path(p))

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_path(url.toLocalFile())

    def _ask_save_session(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save session", "session.json", SESSION_FILTER)
        if path:
            try:
                self.session.save(path)
                self.recent.add(path)
                self.statusBar().showMessage(f"saved {path}", 4000)
            except OSError as exc:
                self.show_message(f"could not save the session to {path}: {exc.strerror or exc}", True)

    def _ask_load_session(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load session", "", SESSION_FILTER)
        if path:
            self.load_session(path)

    def load_session(self, path: str) -> None:
        try:
            self.session.load(path)
        except LoadError as exc:
            self.show_message(str(exc), True)
            return
        self.corruption.set_modalities(self.session.info.modality_names, self.session.info.modality_kinds,
                                       self.session.corruptions)
        self.solver_panel.set_choice(self.session.solver)
        asyncio.ensure_future(self.refresh_table())
        self.request_solve()

    # -- session events ---------------------------------------------------------------------------
    def _on_loaded(self, info) -> None:
        s = self.session
        for win in self.analysis_windows:
            if win.source is not s.engine:
                win.mark_stale()
        self.corruption.set_modalities(info.modality_names, info.modality_kinds, s.corruptions)
        from ..session.state import available_devices

        devices = available_devices()
        if tuple(self.solver_panel.device.itemText(i) for i in range(self.solver_panel.device.count())) != devices:
            self.solver_panel.device.blockSignals(True)
            self.solver_panel.device.clear()
            self.solver_panel.device.addItems(list(devices))
            self.solver_panel.device.blockSignals(False)
        self.solver_panel.set_choice(s.solver)
        ck = s.checkpoint.path.name if s.checkpoint and s.checkpoint.path else "?"
        self.setWindowTitle(f"DEQ Studio — {ck} · {s.dataset.name}")
        self.status_device.setText(f"device: {s.engine.device}")
        self.request_solve()

    async def refresh_table(self) -> None:
        s = self.session
        if not s.ready:
            return
        engine, split, solver = s.engine, s.split, s.solver
        try:
            table = await self.runner.run_exclusive(engine.browse, split, solver)
        except Exception as exc:  # noqa: BLE001
            self.show_message(f"could not tabulate the {split} split: {exc}", True)
            return
        if engine is s.engine:
            s.accept_table(table)

    def _on_table(self, table) -> None:
        self.browser.set_table(table, self.session.info.class_names, self.session.split)
        self.browser.select_sample(self.session.sample)

    def _choose_sample(self, index: int) -> None:
        self.session.set_sample(index)
        self.request_solve()

    def _corruption_moved(self, modality: str, choice) -> None:
        try:
            self.session.set_corruption(modality, choice)
        except ValueError as exc:
            self.show_message(str(exc), True)
            return
        self.request_solve()

    def _reset(self) -> None:
        self.session.reset_corruptions()
        for name, choice in self.session.corruptions.items():
            self.corruption.set_choice(name, choice)
        self.request_solve()

    def _solver_changed(self, choice) -> None:
        try:
            self.session.set_solver(choice)
        except ValueError as exc:
            self.show_message(str(exc), True)
            return
        self.request_solve()
        asyncio.ensure_future(self.refresh_table())

    def request_solve(self) -> None:
        if not self.session.ready:
            return
        self.runner.submit(self.session.request())

    def _on_result(self, result) -> None:
        if self._closing:
            return
        self.session.accept(result)
        run = result.corrupted
        steps = max(run.nstep, 1)
        self.scrubber.set_steps(steps, self.session.step)
        step = self.scrubber.value()
        for plot in self.plots:
            plot.show_result(result)
            plot.show_step(step)
        self.corruption.show_images(result.images)
        state = ("converged" if run.converged else f"NOT converged ({run.reason})") if run.nstep else run.reason
        pred = result.class_names[run.prediction]
        truth = result.class_names[result.label]
        residual = f" · final residual {run.final_rel:.1e}" if run.nstep else ""
        self.status_solve.setText(
            f"sample {result.request.sample} · true {truth} · predicted {pred} · {run.nstep} steps · {state}"
            f"{residual} · {result.seconds * 1e3:.0f} ms")
        self.status_device.setText(f"device: {result.device}")
        if not run.converged and run.nstep:
            self.show_message(f"The solver did not converge on this input: {run.reason} after {run.nstep} steps "
                              f"(final relative residual {run.final_rel:.2e}). Plots show the steps it took.", True)
        elif self.banner.isVisible() and self.last_error.startswith("The solver"):
            self.hide_message()
        for listener in list(self.result_listeners):
            listener(result)

    def _on_error(self, request, exc: BaseException) -> None:
        self.show_message(f"the solve failed: {exc}", True)

    def _step(self, step: int) -> None:
        self.session.set_step(step)
        for plot in self.plots:
            plot.show_step(step)

    # -- export -----------------------------------------------------------------------------------
    def plot_widgets(self) -> dict:
        return {"residual": self.residual, "gates": self.gates, "probabilities": self.probabilities,
                "udml": self.udml, "equilibrium_shift": self.shift}

    def current_provenance(self, what: str) -> dict:
        s = self.session
        return provenance(s.checkpoint, s.dataset, s.result, what=what)

    def _exportable(self) -> bool:
        if self.session.result is None:
            self.show_message("Nothing to export yet: open a checkpoint and a dataset and let the sample solve.", True)
            return False
        return True

    def export_plot(self, slug: str, path: str, width: int | None = None) -> bool:
        if not self._exportable():
            return False
        widget = self.plot_widgets()[slug]
        try:
            files = export_plot(widget, path, width=width, provenance=self.current_provenance(f"plot {slug}"),
                                title=dict((a, b) for a, b, _ in SOLVE_FIGURES)[slug])
        except ExportError as exc:
            self.show_message(f"Export failed: {exc}", True)
            return False
        self.statusBar().showMessage(f"saved {files[0]} (+ provenance sidecar)", 6000)
        return True

    def export_trace(self, path: str) -> bool:
        if not self._exportable():
            return False
        record = self.current_provenance("trace")
        try:  # the trace and its sidecar: one unit
            write_trace_hdf5(self.session.result, path, record, sidecar=dict(record, exported=Path(path).name))
        except OSError as exc:
            self.show_message(f"Export failed: {exc}", True)
            return False
        self.statusBar().showMessage(f"saved {path}", 6000)
        return True

    def export_report(self, folder: str) -> bool:
        if not self._exportable():
            return False
        figures = solve_figures(self.plot_widgets())
        analyses = []
        sweeps = [w for w in self.analysis_windows if w.kind == "robustness" and w.result is not None
                  and not w.stale and w.isVisible()]
        if sweeps:  # the newest open sweep of the model that is loaded now
            figures += sweep_figures(*sweeps[-1].plots)
            analyses = [("robustness_sweep", sweeps[-1].result)]
        result = self.session.result
        try:
            write_report(folder, figures, self.current_provenance("report"), result=result,
                         analyses=analyses, title=f"DEQ Studio report — sample {result.request.sample}")
        except ExportError as exc:
            self.show_message(f"Export failed: {exc}", True)
            return False
        self.statusBar().showMessage(f"saved the report to {folder}/report.html", 8000)
        return True

    def _ask_export_plot(self, slug: str, title: str) -> None:
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(self, f"Export {title}", f"{slug}.png", EXPORT_FILTER)
        if not path:
            return
        if "." not in Path(path).name:
            path += "." + chosen.split("*.")[-1].rstrip(")")
        width = None
        if path.lower().endswith(".png"):
            width, ok = QtWidgets.QInputDialog.getInt(self, "PNG width", "width in pixels:", 1600, 200, 8000, 100)
            if not ok:
                return
        self.export_plot(slug, path, width)

    def _ask_export_trace(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export trace", f"trace-sample-{self.session.sample}.h5",
                                                        "HDF5 (*.h5)")
        if path:
            self.export_trace(path)

    def _ask_export_report(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export report to a new or existing folder",
                                                        f"report-sample-{self.session.sample}", "Folders (*)")
        if path:
            self.export_report(path)

    # -- analyses ---------------------------------------------------------------------------------
    def start_analysis(self, kind: str, kinds=None) -> AnalysisWindow | None:
        s = self.session
        if not s.ready:
            self.show_message("Open a checkpoint and a dataset first.", True)
            return None
        if kind == "convergence" and not s.info.is_deq:
            self.show_message(f"A {s.info.fusion} model has no solver: there are no convergence statistics.", True)
            return None
        job = (robustness_job(s.engine, s.split, kinds=kinds) if kind == "robustness"
               else convergence_job(s.engine, s.split))
        record = provenance(s.checkpoint, s.dataset, None, what=f"analysis {kind}", device=s.engine.device)
        record["settings"] = job.settings
        window = AnalysisWindow(job.start(), kind, record, source=s.engine)
        window.open_sample.connect(self.open_sample_with)
        self.analysis_windows = [w for w in self.analysis_windows if w.isVisible()] + [window]
        window.show()
        return window

    def open_sample_with(self, index: int, corruption: str) -> None:
        """Show ``index`` in the main view, with ``MOD=KIND:SEVERITY`` applied (others reset) when given."""
        from ..core.corruptions import CorruptionSpec
        from ..session.engine import CorruptionChoice

        s = self.session
        if not s.ready or not 0 <= index < len(s.dataset):
            return
        if corruption:
            spec = CorruptionSpec.parse(corruption)
            if spec.modality not in s.corruptions:
                return
            s.reset_corruptions()
            s.set_corruption(spec.modality, CorruptionChoice(spec.kind, spec.severity, spec.seed))
            for name, choice in s.corruptions.items():
                self.corruption.set_choice(name, choice)
        s.set_sample(index)
        self.browser.select_sample(index)
        self.request_solve()
        self.raise_()
        self.activateWindow()

    # -- messages ---------------------------------------------------------------------------------
    def show_message(self, text: str, is_error: bool = False) -> None:
        text = printable(text)  # one line: control characters from a file are shown escaped
        self.last_error = text if is_error else self.last_error
        if is_error:
            self.banner.setText(text)
            self.banner.show()
        else:
            self.statusBar().showMessage(text, 8000)

    def hide_message(self) -> None:
        self.banner.hide()
        self.last_error = ""

    @property
    def last_session_path(self) -> Path:
        return self.recent.path.parent / "last-session.json"

    def restore_last_session(self) -> bool:
        """Load the session saved when the studio was last closed (File › Reopen last session)."""
        if not self.last_session_path.exists():
            self.show_message("No last session is remembered yet: one is saved each time the studio closes.", True)
            return False
        self.load_session(str(self.last_session_path))
        return self.session.ready

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802
        self._closing = True
        if self.session.ready and self.remember:
            try:
                self.last_session_path.parent.mkdir(parents=True, exist_ok=True)
                self.session.save(self.last_session_path)
            except OSError:
                pass  # remembering the session is a convenience; closing must not fail over it
        for win in self.analysis_windows:
            win.close()
        self.scrubber.timer.stop()
        self.runner.shutdown()
        super().closeEvent(event)
