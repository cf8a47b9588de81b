"""The studio window: it assembles the views around one session. Each view follows the session on its own."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from ..session.recent import RecentFiles
from ..session.state import Session
from .analysis_actions import AnalysisActions
from .busy import BusyWatch
from .docks import Docks
from .export_actions import ExportActions
from .file_actions import FileActions
from .history import SettingsHistory
from .keyboard import Keyboard
from .panels import CorruptionPanel, SampleBrowser, SolverPanel
from .plots import StabilityPanel
from .plugin_actions import PluginActions
from .scrubber import Scrubber
from .solve_view import SolveView
from .status import Banner, StatusView
from .theme import apply_theme

_GUI_THREAD_GC = None


def collect_garbage_on_the_gui_thread() -> None:
    """Python's cycle collector runs in whichever thread happens to allocate: on the solve worker it could
    destroy Qt objects (closed windows, removed plot items) off the GUI thread, which pyqtgraph warns can
    crash Qt. Automatic collection is turned off and done on a GUI-thread timer instead, which starts with the
    first model (``freeze_long_lived_objects``), or after a few seconds without one: until then each pass would
    walk everything the worker is importing (torch), and steal its time."""
    global _GUI_THREAD_GC
    if _GUI_THREAD_GC is None:
        from pyqtgraph.util.garbage_collector import GarbageCollector

        _GUI_THREAD_GC = GarbageCollector(interval=0.5)
        _GUI_THREAD_GC.timer.stop()
        QtCore.QTimer.singleShot(10_000, _start_collecting)


def _start_collecting() -> None:
    if _GUI_THREAD_GC is not None and not _GUI_THREAD_GC.timer.isActive():
        _GUI_THREAD_GC.timer.start()


def freeze_long_lived_objects() -> None:
    """Once the first model has solved, what exists (modules, torch, Qt wrappers, the model) lives as long as the
    process: moved out of the cycle collector's view, a full collection no longer walks it (20 ms pauses on the
    timer above, in the middle of slider moves). Reference counting still frees any of it that is dropped."""
    import gc

    if not getattr(freeze_long_lived_objects, "done", False):
        freeze_long_lived_objects.done = True
        gc.freeze()
    _start_collecting()


class MainWindow(QtWidgets.QMainWindow):
    """Samples on the left, the solve's plots in the centre with the step scrubber, corruption and solver on the
    right; menus for files, exports and analyses. Nothing here calls torch."""

    def __init__(self, session: Session | None = None, devices=("cpu",), recent: RecentFiles | None = None,
                 remember: bool = True) -> None:
        super().__init__()
        collect_garbage_on_the_gui_thread()
        self.setWindowTitle("DEQ Studio")
        self.resize(1500, 940)
        self.setAcceptDrops(True)
        self.session = s = session or Session()
        self.runner = s.start_solving()
        self.recent = recent or RecentFiles()
        # False for screenshots and benchmarks: they must not replace the user's recent files or last session
        self.remember = remember
        self.view = SolveView(s)
        self.scrubber = Scrubber(session=s)
        self.banner = Banner()
        self.busy = BusyWatch(s, self)  # plots marked stale while a newer solve is pending
        self.busy.changed.connect(self.view.set_stale)
        self.status = StatusView(self, self.banner, s, self.busy)
        self.browser = SampleBrowser(session=s)
        self.corruption = CorruptionPanel(session=s)
        self.solver_panel = SolverPanel(devices, session=s)
        self.stability = StabilityPanel(session=s)
        self.files = FileActions(self, s, self.recent, self.status, remember)
        self.history = SettingsHistory(s, self)
        self.plugins = PluginActions(self, s, self.files, self.status)
        self.analyses = AnalysisActions(self, s, self.status)
        self.exports = ExportActions(self, s, self.view, self.status, self.analyses, self.recent)
        self.keys = Keyboard(self)
        self._layout()
        self._menus()
        self.keys.arrange()
        s.loaded.connect(self._on_loaded)
        s.result_changed.connect(self._on_result_changed)

    # -- what tests and scripts reach ---------------------------------------------------------------
    residual = property(lambda self: self.view.residual)
    gates = property(lambda self: self.view.gates)
    probabilities = property(lambda self: self.view.probabilities)
    udml = property(lambda self: self.view.udml)
    shift = property(lambda self: self.view.shift)
    plots = property(lambda self: self.view.plots)
    status_solve = property(lambda self: self.status.solve)
    status_device = property(lambda self: self.status.device)
    last_error = property(lambda self: self.status.last_error)
    analysis_windows = property(lambda self: self.analyses.windows)
    last_session_path = property(lambda self: self.files.last_session_path)

    def open_files(self, checkpoint=None, dataset=None):
        return self.files.open_files(checkpoint, dataset)

    def open_path(self, path: str) -> None:
        self.files.open_path(path)

    def load_session(self, path: str) -> None:
        self.files.load_session(path)

    def restore_last_session(self) -> bool:
        return self.files.restore_last_session()

    def plot_widgets(self) -> dict:
        return self.view.widgets()

    def export_plot(self, slug: str, path: str, width: int | None = None) -> bool:
        return self.exports.export_plot(slug, path, width)

    def export_trace(self, path: str) -> bool:
        return self.exports.export_trace(path)

    def export_report(self, folder: str) -> bool:
        return self.exports.export_report(folder)

    def current_provenance(self, what: str) -> dict:
        return self.exports.current_provenance(what)

    def start_analysis(self, kind: str, kinds=None):
        return self.analyses.start(kind, kinds)

    def open_sample_with(self, index: int, corruptions=None) -> None:
        self.analyses.open_sample_with(index, corruptions)

    def show_message(self, text: str, is_error: bool = False) -> None:
        self.status.show_message(text, is_error)

    def hide_message(self) -> None:
        self.status.hide_message()

    # -- layout -----------------------------------------------------------------------------------
    def _layout(self) -> None:
        central = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.banner)
        column.addWidget(self.view, 1)
        column.addWidget(self.scrubber)
        self.setCentralWidget(central)
        self.docks = Docks(self)
        self.docks.remember_initial()

    def _menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self.files.add_to_menu(file)
        file.addSeparator()
        self.quit_action = file.addAction("&Quit", QtGui.QKeySequence.StandardKey.Quit, self.close)
        edit = bar.addMenu("&Edit")
        self.undo_action, self.redo_action = self.history.actions(self)
        edit.addActions([self.undo_action, self.redo_action])
        view = bar.addMenu("&View")
        self.docks.add_to_menu(view)
        view.addSeparator()
        self.dark_action = view.addAction("&Dark theme")
        self.dark_action.setCheckable(True)
        self.dark_action.toggled.connect(lambda dark: apply_theme(self, "dark" if dark else "light"))
        self.exports.add_to_menu(bar.addMenu("E&xport"))
        self.analyses.add_to_menu(bar.addMenu("&Analysis"))
        self.plugins.add_to_menu(bar.addMenu("Plu&gins"))
        self.keys.add_to_menu(bar.addMenu("&Playback"))
        help_menu = bar.addMenu("&Help")
        help_menu.addAction("&Keyboard shortcuts", QtGui.QKeySequence.StandardKey.HelpContents, self.keys.show_help)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.docks.fit(event.size().width())  # a narrow window: the docks share one column

    # -- events -----------------------------------------------------------------------------------
    def _on_loaded(self, info) -> None:
        s = self.session
        path = s.checkpoint.path if s.checkpoint else s.preview.model_path if s.preview else None
        name = path.name if path else "?"
        origin = f" ({info.source})" if info.source.startswith("imported") else ""  # an official model, converted
        self.setWindowTitle(f"DEQ Studio — {name}{origin} · {s.dataset.name}")

    def _on_result_changed(self, result) -> None:
        if self.session.ready:  # the model is in this process (not a start-up helper's result shown meanwhile)
            freeze_long_lived_objects()

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.files.open_path(url.toLocalFile())

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802
        self.files.save_last_session()
        self.analyses.close_all()
        self.scrubber.timer.stop()
        self.session.stop_solving()  # the table's fill is cancelled; a chunk in flight is at most ~0.1 s
        super().closeEvent(event)
