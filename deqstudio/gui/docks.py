"""The side panels as docks the user can close, float and bring back (View menu), sized to leave the plots room.

Wide, the samples table sits left above the Stability panel, corruption and solver right. In a window narrower
than ``COMPACT_BELOW`` pixels (1024×700, say) the docks share one column as tabs, so
that the plots keep about three quarters of the width; wider, they sit left and right again. Each can be closed
(its View menu entry brings it back) and View › Reset layout restores the arrangement for the window's width.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

Area = QtCore.Qt.DockWidgetArea
SAMPLES_WIDTH = (220, 330)  # minimum, preferred
SIDE_WIDTH = (250, 320)
COMPACT_BELOW = 1200  # window width under which the docks are tabbed in one column


class Docks:
    def __init__(self, window) -> None:
        self.window = window
        self.samples = self._dock("Samples", window.browser, Area.LeftDockWidgetArea, SAMPLES_WIDTH)
        self.stability = self._dock("Stability", window.stability, Area.LeftDockWidgetArea, SAMPLES_WIDTH)
        window.splitDockWidget(self.samples, self.stability, QtCore.Qt.Orientation.Vertical)
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
        self.docks = (self.samples, self.stability, self.side)
        self._initial = None
        self.compact = False
        self._fitted = False

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
        """Every dock back where the window opened with it, shown, arranged for the window's width."""
        if self._initial is not None:
            self.window.restoreState(self._initial)
        for dock in self.docks:
            dock.setFloating(False)
            dock.show()
        self.compact, self._fitted = False, False
        self.fit(self.window.width())

    def add_to_menu(self, menu: QtWidgets.QMenu) -> None:
        for dock in self.docks:
            action = dock.toggleViewAction()
            action.setText(f"{dock.windowTitle()} panel")
            menu.addAction(action)
        menu.addAction("Reset &layout", self.reset)

    def fit(self, width: int) -> None:
        """Arrange the docks for a window ``width`` pixels wide: tabbed in one column below ``COMPACT_BELOW``
        (the corruption and solver tab in front), left and right above; the plots keep the rest."""
        w = self.window
        compact = width < COMPACT_BELOW
        if (compact == self.compact and self._fitted) or any(d.isFloating() for d in self.docks):
            return  # sizes the user gave the docks stay until the arrangement changes
        self._fitted, self.compact = True, compact
        if compact:
            for dock in (self.samples, self.stability):
                w.addDockWidget(Area.RightDockWidgetArea, dock)
                w.tabifyDockWidget(self.side, dock)
            self.side.raise_()
        else:
            w.addDockWidget(Area.LeftDockWidgetArea, self.samples)
            w.addDockWidget(Area.LeftDockWidgetArea, self.stability)
            w.splitDockWidget(self.samples, self.stability, QtCore.Qt.Orientation.Vertical)
            w.resizeDocks([self.samples, self.stability], [40, 60], QtCore.Qt.Orientation.Vertical)
        side = max(SIDE_WIDTH[0], min(SIDE_WIDTH[1], int(width * 0.25)))
        samples = max(SAMPLES_WIDTH[0], min(SAMPLES_WIDTH[1], int(width * 0.22)))
        if self.compact:
            w.resizeDocks([self.side], [max(side, samples)], QtCore.Qt.Orientation.Horizontal)
        else:
            w.resizeDocks([self.samples, self.side], [samples, side], QtCore.Qt.Orientation.Horizontal)
