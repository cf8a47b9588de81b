"""What the window says about the current solve: the status bar's device and solve line, and the banner for
problems. Both follow the session (``result_changed``, ``message``)."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ..errors import printable

NOT_CONVERGED = "The solver did not converge on this input"


def solve_state(run) -> str:
    """"converged", "NOT converged (reason)", or the reason a model has no solve (e.g. "no solver")."""
    if not run.nstep:
        return run.reason
    return "converged" if run.converged else f"NOT converged ({run.reason})"


class Banner(QtWidgets.QLabel):
    """A problem, in one line of plain text (never read as HTML), shown until the next success replaces it."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setWordWrap(True)
        self.setTextFormat(QtCore.Qt.TextFormat.PlainText)  # text from files is never read as HTML
        self.setStyleSheet("QLabel#banner { background: #fdecea; color: #611a15; padding: 6px; border-radius: 3px; }")
        self.hide()


class StatusView(QtCore.QObject):
    """Fills the status bar and the banner from the session's results and messages."""

    def __init__(self, window: QtWidgets.QMainWindow, banner: Banner, session) -> None:
        super().__init__(window)
        self.window, self.banner, self.session = window, banner, session
        self.device = QtWidgets.QLabel("device: –")
        self.solve = QtWidgets.QLabel("")
        window.statusBar().addPermanentWidget(self.device)
        window.statusBar().addPermanentWidget(self.solve)
        self.last_error = ""
        session.result_changed.connect(self._on_result_changed)
        session.message.connect(self.show_message)
        session.loaded.connect(lambda info: self.device.setText(f"device: {session.engine.device}"))

    def _on_result_changed(self, result) -> None:
        run = result.corrupted
        pred, truth = result.prediction_text(run), result.label_text()
        residual = f" · final residual {run.final_rel:.1e}" if run.nstep else ""
        self.solve.setText(f"sample {result.request.sample} · true {truth} · predicted {pred} · {run.nstep} steps · "
                           f"{solve_state(run)}{residual} · {result.seconds * 1e3:.0f} ms")
        self.device.setText(f"device: {result.device}")
        if not run.converged and run.nstep:
            self.show_message(f"{NOT_CONVERGED}: {run.reason} after {run.nstep} steps (final relative residual "
                              f"{run.final_rel:.2e}). Plots show the steps it took.", True)
        elif self.banner.isVisible() and self.last_error.startswith(NOT_CONVERGED):
            self.hide_message()

    def show_message(self, text: str, is_error: bool = False) -> None:
        text = printable(text)  # one line: control characters from a file are shown escaped
        if is_error:
            self.last_error = text
            self.banner.setText(text)
            self.banner.show()
        else:
            self.window.statusBar().showMessage(text, 8000)

    def hide_message(self) -> None:
        self.banner.hide()
        self.last_error = ""
