"""Whether what the window shows is older than the settings: a solve was asked for and has not come back yet.

``BusyWatch.changed(True)`` fires once a request has been pending for ``DELAY_MS`` (a fast solve never flickers
the plots); ``changed(False)`` when the newest request's result, or its failure, arrives. The plots mark
themselves stale and the status bar shows that the studio is working.
"""

from __future__ import annotations

from PySide6 import QtCore

DELAY_MS = 250  # a solve faster than this never marks the plots (marking them costs a repaint of each)


class BusyWatch(QtCore.QObject):
    changed = QtCore.Signal(bool)

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.busy = False
        self.waiting_for = 0
        self.timer = QtCore.QTimer(self, singleShot=True, interval=DELAY_MS)
        self.timer.timeout.connect(self._late)
        session.solve_requested.connect(self._requested)
        session.result_changed.connect(self._arrived)
        session.message.connect(self._message)

    def _requested(self, generation: int) -> None:
        self.waiting_for = generation
        if not self.busy:
            self.timer.start()

    def _late(self) -> None:
        if self.session.pending:
            self._set(True)

    def _arrived(self, result) -> None:
        if result.request.generation >= self.waiting_for:
            self.timer.stop()
            self._set(False)

    def _message(self, text: str, is_error: bool) -> None:
        if is_error and text.startswith("the solve failed"):
            self.timer.stop()
            self._set(False)

    def settle(self) -> None:
        """Nothing is pending any more without a result to show it (e.g. a model that did not open)."""
        if not self.session.pending:
            self.timer.stop()
            self._set(False)

    def _set(self, busy: bool) -> None:
        if busy != self.busy:
            self.busy = busy
            self.changed.emit(busy)
