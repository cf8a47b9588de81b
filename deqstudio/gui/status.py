"""What the window says about the current solve: the status bar's device and solve line, a busy indicator, the
samples table's progress, and the banner for problems. All follow the session (``result_changed``, ``message``,
``table_progress``)."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ..core.bounds import FLOAT32_FLOOR
from ..errors import printable

NOT_CONVERGED = "The solver did not converge on this input"


def solve_state(run) -> str:
    """"converged", "NOT converged (reason)", or the reason a model has no solve (e.g. "no solver")."""
    if not run.nstep:
        return run.reason
    return "converged" if run.converged else f"NOT converged ({run.reason})"


def final_residual(run) -> str:
    """The one "final residual": the relative residual of the returned state, which is the best step's."""
    return f"final residual {run.final_rel:.1e} (returned state: step {run.best_step + 1} of {run.nstep})"


def below_floor(tol: float) -> str:
    """A note when the tolerance is below what a float32 state can reach ("" otherwise)."""
    return (f"The tolerance {tol:.0e} is below the float32 floor (~{FLOAT32_FLOOR:.0e}): a float32 model's residual "
            "cannot get that low." if tol < FLOAT32_FLOOR else "")


class Banner(QtWidgets.QFrame):
    """A problem, in plain text (never read as HTML), with a close button; the next success clears it."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setStyleSheet("QFrame#banner { background: #fdecea; border-radius: 3px; } "
                           "QFrame#banner QLabel { color: #611a15; }")
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(8, 4, 4, 4)
        self.label = QtWidgets.QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(QtCore.Qt.TextFormat.PlainText)  # text from files is never read as HTML
        self.label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_button = QtWidgets.QToolButton()
        self.close_button.setObjectName("banner_close")
        self.close_button.setText("✕")
        self.close_button.setToolTip("Dismiss this message")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(self.hide)
        row.addWidget(self.label, 1)
        row.addWidget(self.close_button, 0, QtCore.Qt.AlignmentFlag.AlignTop)
        self.hide()

    def text(self) -> str:
        return self.label.text()

    def setText(self, text: str) -> None:  # noqa: N802
        self.label.setText(text)


class StatusView(QtCore.QObject):
    """Fills the status bar and the banner from the session's results and messages."""

    def __init__(self, window: QtWidgets.QMainWindow, banner: Banner, session, busy=None) -> None:
        super().__init__(window)
        self.window, self.banner, self.session = window, banner, session
        bar = window.statusBar()
        self.busy = QtWidgets.QLabel("solving …")
        self.busy.setObjectName("busy")
        self.busy.setStyleSheet("QLabel#busy { color: #8a5300; font-weight: bold; }")
        self.busy.setToolTip("A newer solve is running: the plots still show the previous result")
        self.busy.hide()
        self.table_bar = QtWidgets.QProgressBar()
        self.table_bar.setObjectName("table_progress")
        self.table_bar.setMaximumWidth(190)
        self.table_bar.setFormat("samples %v / %m")
        self.table_bar.setToolTip("The samples table is computed in the background, after the shown sample")
        self.table_stop = QtWidgets.QToolButton()
        self.table_stop.setText("Stop")
        self.table_stop.setToolTip("Stop computing the samples table (what is computed stays)")
        self.table_stop.clicked.connect(session.filler.stop)
        self.device = QtWidgets.QLabel("device: –")
        self.solve = QtWidgets.QLabel("")
        for w in (self.busy, self.table_bar, self.table_stop, self.device, self.solve):
            bar.addPermanentWidget(w)
        self.table_bar.hide()
        self.table_stop.hide()
        self.last_error = ""
        self._error_generation = -1  # a result newer than this clears the banner
        session.result_changed.connect(self._on_result_changed)
        session.message.connect(self.show_message)
        session.loaded.connect(lambda info: self.device.setText(
            f"device: {session.engine.device if session.engine is not None else session.device}"))
        session.table_changed.connect(self._on_table)
        session.table_progress.connect(self._on_table)
        if busy is not None:
            busy.changed.connect(self.busy.setVisible)

    def _on_result_changed(self, result) -> None:
        run = result.corrupted
        pred, truth = result.prediction_text(run), result.label_text()
        residual = f" · {final_residual(run)}" if run.nstep else ""
        took = "cached" if result.from_cache else f"{result.seconds * 1e3:.0f} ms"
        self.solve.setText(f"sample {result.request.sample} · true {truth} · predicted {pred} · {run.nstep} steps · "
                           f"{solve_state(run)}{residual} · {took}")
        self.device.setText(f"device: {result.device}")
        if not run.converged and run.nstep:
            floor = below_floor(result.request.solver.tol)
            self.show_message(f"{NOT_CONVERGED}: {run.reason} after {run.nstep} steps ({final_residual(run)}). "
                              f"Plots show the steps it took.{' ' + floor if floor else ''}", True,
                              generation=result.request.generation)
        elif self.banner.isVisible() and result.request.generation > self._error_generation:
            self.hide_message()  # a success after the problem: the problem is over

    def _on_table(self, table) -> None:
        filler = self.session.filler
        running = table is not None and not table.complete and filler.running
        if running:
            self.table_bar.setRange(0, len(table))
            self.table_bar.setValue(table.computed)
        self.table_bar.setVisible(running)
        self.table_stop.setVisible(running)

    def show_message(self, text: str, is_error: bool = False, generation: int | None = None) -> None:
        text = printable(text)  # one line: control characters from a file are shown escaped
        if is_error:
            self.last_error = text
            # the result that belongs to what failed (e.g. a session's own solve) does not clear it; a later one does
            s = self.session
            self._error_generation = generation if generation is not None else (
                s.generation + (1 if s.runner is None else 0))
            self.banner.setText(text)
            self.banner.show()
        else:
            self.window.statusBar().showMessage(text, 8000)

    def hide_message(self) -> None:
        self.banner.hide()
        self.last_error = ""
