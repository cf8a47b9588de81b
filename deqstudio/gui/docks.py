"""The side panels as docks the user can close, float and bring back (View menu), sized to leave the plots room.

At 1024×700 the two docks take at most ~45 % of the width; each can be closed (its View menu entry brings it
back) and View › Reset layout restores the arrangement the window opened with.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

Area = QtCore.Qt.DockWidgetArea
SAMPLES_WIDTH = (220, 330)  # minimum, preferred
SIDE_WIDTH = (250, 320)


class Docks:
    def __init__(self, window) -> None:
        self.window = window
        self.samples = self._dock("Samples", window.browser, Area.LeftDockWidgetArea, SAMPLES_WIDTH)
        right = QtWidgets.QWidget()
        right.setObjectName("side_panel")
        column = QtWidgets.QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(window.corruption, 1)
        column.addWidget(window.solver_panel)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(right)
        self.side = self._dock("Corruption and solver", scroll, Area.RightDockWidgetArea, SIDE_WIDTH)
        self.docks = (self.samples, self.side)
        self._initial = None

    def _dock(self, title: str, widget: QtWidgets.QWidget, area, widths) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self.window)
        dock.setObjectName(title)
        dock.setWidget(widget)
        Feature = QtWidgets.QDockWidget.DockWidgetFeature
        dock.setFeatures(Feature.DockWidgetMovable | Feature.DockWidgetFloatable | Feature.DockWidgetClosable)
        widget.setMinimumWidth(widths[0])
        self.window.addDockWidget(area, dock)
        self.window.resizeDocks([dock], [widths[1]], QtCore.Qt.Orientation.Horizontal)
        return dock

    def remember_initial(self) -> None:
        self._initial = self.window.saveState()

    def reset(self) -> None:
        """Every dock back where the window opened with it, shown."""
        if self._initial is not None:
            self.window.restoreState(self._initial)
        for dock in self.docks:
            dock.setFloating(False)
            dock.show()

    def add_to_menu(self, menu: QtWidgets.QMenu) -> None:
        for dock in self.docks:
            action = dock.toggleViewAction()
            action.setText(f"{dock.windowTitle()} panel")
            menu.addAction(action)
        menu.addAction("Reset &layout", self.reset)

    def fit(self, width: int) -> None:
        """Dock widths for a window ``width`` pixels wide: the plots keep at least half of it."""
        side = max(SIDE_WIDTH[0], min(SIDE_WIDTH[1], int(width * 0.25)))
        samples = max(SAMPLES_WIDTH[0], min(SAMPLES_WIDTH[1], int(width * 0.22)))
        self.window.resizeDocks([self.samples, self.side], [samples, side], QtCore.Qt.Orientation.Horizontal)
