"""The keyboard: step keys that reach the scrubber wherever the focus is, a tab order that follows the window's
layout, and the list of shortcuts Help shows.

The step keys are window-wide actions. A text field keeps the keys it edits with (Qt lets it claim them), and a
button, check box or list keeps Space (``_KeepSpace``); everything else — the samples table, sliders, the plots,
which never take focus — hands them to the scrubber.
"""

from __future__ import annotations

import itertools

from PySide6 import QtCore, QtGui, QtWidgets

# (keys, what they do): the one list the Playback menu and Help › Keyboard shortcuts are made from
STEP_KEYS = (
    ("Space", "play / pause the solver steps"),
    ("Left", "one solver step back"),
    ("Right", "one solver step forward"),
    ("Home", "first solver step"),
    ("End", "last solver step"),
)
OTHER_KEYS = (
    ("Ctrl+Z", "undo a corruption or solver change"),
    ("Ctrl+Shift+Z", "redo it"),
    ("Ctrl+F", "filter the samples table"),
    ("Up / Down", "previous / next sample (in the samples table)"),
    ("Tab / Shift+Tab", "next / previous control"),
    ("Ctrl+O", "open a checkpoint"),
    ("Ctrl+Shift+O", "open a model and its data together"),
    ("Ctrl+S", "save the session"),
    ("Ctrl+Q", "quit"),
    ("F1", "this list"),
)


class _KeepSpace(QtCore.QObject):
    """Lets a button or a check box have Space (it presses it) instead of the play shortcut."""

    def eventFilter(self, obj, event):  # noqa: N802
        if event.type() == QtCore.QEvent.Type.ShortcutOverride and event.key() == QtCore.Qt.Key.Key_Space:
            event.accept()
            return True
        return False


class Keyboard(QtCore.QObject):
    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self._keep_space = _KeepSpace(self)
        self.actions: dict[str, QtGui.QAction] = {}
        scrub = window.scrubber
        doing = {"Space": scrub.toggle_play, "Left": lambda: scrub.nudge(-1), "Right": lambda: scrub.nudge(1),
                 "Home": lambda: scrub.set_value(0), "End": lambda: scrub.set_value(scrub.steps - 1)}
        for key, text in STEP_KEYS:
            action = QtGui.QAction(text[0].upper() + text[1:], window)
            action.setShortcut(QtGui.QKeySequence(key))
            action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(doing[key])
            window.addAction(action)
            self.actions[key] = action
        find = QtGui.QAction("Filter samples", window)
        find.setShortcut(QtGui.QKeySequence.StandardKey.Find)
        find.triggered.connect(self._find)
        window.addAction(find)
        self.help_dialog = None
        window.session.loaded.connect(lambda info: self.arrange())

    def _find(self) -> None:
        self.window.browser.search.setFocus(QtCore.Qt.FocusReason.ShortcutFocusReason)
        self.window.browser.search.selectAll()

    def add_to_menu(self, menu: QtWidgets.QMenu) -> None:
        for key, _ in STEP_KEYS:
            menu.addAction(self.actions[key])

    def arrange(self) -> None:
        """Plots take no focus; buttons keep Space; Tab goes samples → corruption → solver → scrubber."""
        w = self.window
        for plot in w.plots:
            plot.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        for widget in w.findChildren(QtWidgets.QAbstractButton) + w.findChildren(QtWidgets.QComboBox):
            widget.removeEventFilter(self._keep_space)
            widget.installEventFilter(self._keep_space)
        chain = [w.browser.search, w.browser.mode, w.browser.view, w.browser.resume]
        for controls in w.corruption.controls.values():
            chain += [controls.kind, controls.seed, controls.slider]
        chain.append(w.corruption.reset)
        panel = w.solver_panel
        chain += [panel.solver, panel.max_iter, panel.tol, panel.stop_mode, *panel.options.values(), panel.device]
        sc = w.scrubber
        chain += [sc.back, sc.play, sc.forward, sc.slider, sc.speed, sc.loop]
        for a, b in itertools.pairwise(chain):
            QtWidgets.QWidget.setTabOrder(a, b)
        self.chain = chain

    def show_help(self) -> QtWidgets.QDialog:
        """Help › Keyboard shortcuts: a window listing them (not modal)."""
        if self.help_dialog is None:
            dialog = QtWidgets.QDialog(self.window)
            dialog.setWindowTitle("DEQ Studio — keyboard shortcuts")
            layout = QtWidgets.QVBoxLayout(dialog)
            table = QtWidgets.QTableWidget(len(STEP_KEYS) + len(OTHER_KEYS), 2)
            table.setObjectName("shortcuts")
            table.setHorizontalHeaderLabels(["keys", "does"])
            table.verticalHeader().hide()
            table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
            for row, (key, text) in enumerate(STEP_KEYS + OTHER_KEYS):
                table.setItem(row, 0, QtWidgets.QTableWidgetItem(key))
                table.setItem(row, 1, QtWidgets.QTableWidgetItem(text))
            table.resizeColumnsToContents()
            table.horizontalHeader().setStretchLastSection(True)
            note = QtWidgets.QLabel("The step keys work wherever the focus is, except in a text field; the plots "
                                    "never move with the keys.")
            note.setWordWrap(True)
            close = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
            close.rejected.connect(dialog.close)
            layout.addWidget(table)
            layout.addWidget(note)
            layout.addWidget(close)
            dialog.resize(460, 440)
            self.help_dialog = dialog
        self.help_dialog.show()
        self.help_dialog.raise_()
        return self.help_dialog
