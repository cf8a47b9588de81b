"""Undo and redo of the settings that change the picture: each modality's corruption and the solver settings.

Every change the session solves for becomes one ``QUndoStack`` command (a slider drag on one modality merges into
one step while it lasts); Edit › Undo puts back the settings before it. Opening a model starts a new history.
"""

from __future__ import annotations

import time

from PySide6 import QtCore, QtGui

MERGE_S = 1.5  # changes of the same setting closer together than this are one undo step (a drag)


def _corruption_text(c) -> str:
    return "clean" if not c.active else f"{c.kind} {c.severity:g}" + (f" seed {c.seed}" if c.seed else "")


def describe(before, after) -> str:
    """What changed between two (corruptions, solver) states, in words."""
    (cb, sb), (ca, sa) = before, after
    parts = [f"{m}: {_corruption_text(cb[m])} → {_corruption_text(ca[m])}" for m in ca if m in cb and cb[m] != ca[m]]
    if sb != sa:
        changed = [f"{k} {a} → {b}" for k, a, b in (("solver", sb.solver, sa.solver), ("max_iter", sb.max_iter, sa.max_iter),
                                                   ("tol", f"{sb.tol:g}", f"{sa.tol:g}"),
                                                   ("stop mode", sb.stop_mode, sa.stop_mode)) if a != b]
        changed += [f"{k} {dict(sb.options).get(k, '–')} → {v}" for k, v in sa.options if dict(sb.options).get(k) != v]
        parts.append("solver: " + ", ".join(changed or ["options"]))
    return "; ".join(parts) or "settings"


class SettingsChange(QtGui.QUndoCommand):
    def __init__(self, history: "SettingsHistory", before, after) -> None:
        super().__init__(describe(before, after))
        self.history, self.before, self.after = history, before, after
        self.what = self._what(before, after)
        self.at = time.monotonic()
        self._first = True

    @staticmethod
    def _what(before, after) -> tuple:
        return (tuple(m for m in after[0] if before[0].get(m) != after[0][m]), before[1] != after[1])

    def id(self) -> int:
        return 1

    def mergeWith(self, other) -> bool:  # noqa: N802
        if other.what != self.what or other.at - self.at > MERGE_S:
            return False
        self.after, self.at = other.after, other.at
        self.setText(describe(self.before, self.after))
        return True

    def redo(self) -> None:
        if self._first:  # pushed after the change happened: nothing to do the first time
            self._first = False
            return
        self.history.apply(self.after)

    def undo(self) -> None:
        self.history.apply(self.before)


class SettingsHistory(QtCore.QObject):
    """Records the session's corruption and solver changes on a ``QUndoStack``; applies them back on undo/redo."""

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.stack = QtGui.QUndoStack(self)
        self._applying = False
        # the next change is the opening of a model: it starts the history, it is not a step
        self._fresh = not session.ready
        self._snapshot = self.current()
        session.solve_requested.connect(self._changed)
        session.loaded.connect(self._reset)

    def current(self) -> tuple:
        return dict(self.session.corruptions), self.session.solver

    def _reset(self, info) -> None:
        self.stack.clear()
        self._fresh = True

    def _changed(self, generation: int) -> None:
        if self._applying:
            return
        now = self.current()
        if self._fresh:
            self._fresh, self._snapshot = False, now
            return
        if now == self._snapshot:
            return
        before, self._snapshot = self._snapshot, now
        self.stack.push(SettingsChange(self, before, now))

    def apply(self, state) -> None:
        corruptions, solver = state
        s = self.session
        self._applying = True
        try:
            with s.changes():
                s.set_solver(solver)
                s.set_corruptions({m: c for m, c in corruptions.items() if m in s.corruptions})
        finally:
            self._applying = False
        self._snapshot = self.current()
        s.message.emit(f"Settings now: {self._summary()}", False)

    def _summary(self) -> str:
        corruptions, solver = self.current()
        active = [f"{m} {_corruption_text(c)}" for m, c in corruptions.items() if c.active]
        return f"{', '.join(active) or 'all modalities clean'}; solver {solver.solver}, max_iter {solver.max_iter}, " \
               f"tol {solver.tol:g}"

    def actions(self, parent) -> tuple[QtGui.QAction, QtGui.QAction]:
        undo = self.stack.createUndoAction(parent, "&Undo")
        undo.setShortcut(QtGui.QKeySequence.StandardKey.Undo)
        redo = self.stack.createRedoAction(parent, "&Redo")
        redo.setShortcut(QtGui.QKeySequence.StandardKey.Redo)
        return undo, redo
