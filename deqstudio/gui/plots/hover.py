"""The step plots read together: one x axis (linked), one crosshair at the hovered step in every plot, and a
readout of every curve's value there in the plot under the mouse."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from .. import palette


class Readout(QtWidgets.QLabel):
    """The values at the hovered step, over the plot (a widget, so never in an export)."""

    def __init__(self, host) -> None:
        super().__init__(host)
        self.setObjectName("hover_readout")
        self.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.restyle()
        self.hide()

    def restyle(self) -> None:
        t = palette.theme()
        self.setStyleSheet(f"QLabel#hover_readout {{ background: {t.base}; color: {t.foreground}; "
                           f"border: 1px solid {t.marker}; border-radius: 3px; padding: 2px 4px; }}")


def _value_text(name: str, y: float, log: bool) -> str:
    if not np.isfinite(y):
        return f"{name} –"
    return f"{name} {y:.2e}" if log else f"{name} {y:.3f}"


class StepHover(QtCore.QObject):
    """Links the x axes of ``plots`` (the first leads) and follows the mouse over any of them."""

    def __init__(self, plots: list) -> None:
        super().__init__()
        self.plots = plots
        self.step: int | None = None
        lead = plots[0]
        for plot in plots[1:]:
            plot.getPlotItem().setXLink(lead.getPlotItem())
        self.lines = {}
        self.readouts = {}
        for plot in plots:
            line = pg.InfiniteLine(angle=90, movable=False,
                                   pen=pg.mkPen(palette.theme().marker, width=1, style=QtCore.Qt.PenStyle.DashLine))
            line.setZValue(60)
            line.hide()
            plot.getPlotItem().addItem(line, ignoreBounds=True)
            self.lines[plot] = line
            self.readouts[plot] = Readout(plot)
            plot.scene().sigMouseMoved.connect(lambda pos, plot=plot: self.moved(plot, pos))
            plot.installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802
        if event.type() == QtCore.QEvent.Type.Leave:
            self.clear()
        return False

    def restyle(self) -> None:
        for line in self.lines.values():
            line.setPen(pg.mkPen(palette.theme().marker, width=1, style=QtCore.Qt.PenStyle.DashLine))
        for readout in self.readouts.values():
            readout.restyle()

    def moved(self, plot, scene_pos) -> None:
        vb = plot.getPlotItem().vb
        if plot.result is None or not vb.sceneBoundingRect().contains(scene_pos):
            self.clear()
            return
        x = vb.mapSceneToView(scene_pos).x()
        steps = max(plot.result.corrupted.nstep, plot.result.clean.nstep, 1)
        self.show_step(plot, int(np.clip(round(x), 1, steps)), plot.mapFromScene(scene_pos))

    def show_step(self, plot, step: int, at: QtCore.QPoint | None = None) -> str:
        """Crosshair at ``step`` (1-based) everywhere, the readout in ``plot``; returns the readout's text."""
        self.step = step
        for line in self.lines.values():
            line.setValue(step)
            line.show()
        log = plot.getPlotItem().ctrl.logYCheck.isChecked()
        lines = [f"step {step}"]
        for name in plot.series_names():
            x, y = plot.series(name)
            hit = np.flatnonzero(np.isclose(x, step))
            if len(hit):
                lines.append(_value_text(name, float(y[hit[0]]), log))
        text = "\n".join(lines)
        for other, readout in self.readouts.items():
            if other is not plot:
                readout.hide()
        readout = self.readouts[plot]
        readout.setText(text)
        readout.adjustSize()
        at = at or QtCore.QPoint(plot.width() // 2, 20)
        x = at.x() + 14 if at.x() + 14 + readout.width() < plot.width() else at.x() - 14 - readout.width()
        readout.move(max(x, 0), max(min(at.y() - readout.height() // 2, plot.height() - readout.height()), 0))
        readout.show()
        return text

    def clear(self) -> None:
        self.step = None
        for line in self.lines.values():
            line.hide()
        for readout in self.readouts.values():
            readout.hide()
