"""The studio window: it assembles the views around one session. Each view follows the session on its own."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from ..session.recent import RecentFiles
from ..session.state import Session
from .analysis_actions import AnalysisActions
from .export_actions import ExportActions
from .file_actions import FileActions
from .panels import CorruptionPanel, SampleBrowser, SolverPanel
from .plots import StabilityPanel
from .plugin_actions import PluginActions
from .scrubber import Scrubber
from .solve_view import SolveView
from .status import Banner, StatusView

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
        self.status = StatusView(self, self.banner, s)
        self.browser = SampleBrowser(session=s)
        self.corruption = CorruptionPanel(session=s)
        self.solver_panel = SolverPanel(devices, session=s)
        self.stability = StabilityPanel(session=s)
        self.files = FileActions(self, s, self.recent, self.status, remember)
        self.plugins = PluginActions(self, s, self.files, self.status)
        self.analyses = AnalysisActions(self, s, self.status)
        self.exports = ExportActions(self, s, self.view, self.status, self.analyses)
        self._layout()
        self._menus()
        s.loaded.connect(self._on_loaded)
        s.solver_changed.connect(lambda settings: self.files.in_background(self.files.refresh_table()))

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
        left = QtCore.Qt.DockWidgetArea.LeftDockWidgetArea
        samples, stability = self._dock("Samples", self.browser, left), self._dock("Stability", self.stability, left)
        self.resizeDocks([samples, stability], [40, 60], QtCore.Qt.Orientation.Vertical)
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
        self.files.add_to_menu(file)
        file.addSeparator()
        file.addAction("&Quit", QtGui.QKeySequence.StandardKey.Quit, self.close)
        self.exports.add_to_menu(bar.addMenu("E&xport"))
        self.analyses.add_to_menu(bar.addMenu("&Analysis"))
        self.plugins.add_to_menu(bar.addMenu("Plu&gins"))
        playback = bar.addMenu("&Playback")
        playback.addAction("Play / pause\tSpace", self.scrubber.toggle_play)
        playback.addAction("Step back\tLeft", lambda: self.scrubber.nudge(-1))
        playback.addAction("Step forward\tRight", lambda: self.scrubber.nudge(1))

    # -- events -----------------------------------------------------------------------------------
    def _on_loaded(self, info) -> None:
        s = self.session
        name = s.checkpoint.path.name if s.checkpoint and s.checkpoint.path else "?"
        origin = f" ({info.source})" if info.source.startswith("imported") else ""  # an official model, converted
        self.setWindowTitle(f"DEQ Studio — {name}{origin} · {s.dataset.name}")

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:  # noqa: N802
        keys = {QtCore.Qt.Key.Key_Space: self.scrubber.toggle_play, QtCore.Qt.Key.Key_Left: lambda: self.scrubber.nudge(-1),
                QtCore.Qt.Key.Key_Right: lambda: self.scrubber.nudge(1)}
        action = keys.get(event.key())
        if action is None:
            super().keyPressEvent(event)
        else:
            action()

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
        self.session.stop_solving()
        super().closeEvent(event)
