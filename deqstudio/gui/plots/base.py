"""What every step plot shares: the titled plot with a step marker, colours, pens, rounded ranges."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from .. import palette
from ..palette import class_colour, fused_colour, modality_colour, modality_style, solver_colour
from .axes import StepAxis

FLOOR = 1e-12  # residuals are drawn on a log axis; exact zeros sit on this floor
LEFT_AXIS_WIDTH = 58  # the same for every step plot: plots one above the other share their x positions

pg.setConfigOptions(antialias=True, background="w", foreground="k")

colour = modality_colour  # a modality's colour (``palette``: classes and solvers have their own)
__all__ = ["FLOOR", "PlotPanel", "class_colour", "colour", "fused_colour", "modality_style", "solver_colour"]


def pen(c, width=2.0, dashed=False, style=None):
    drawn = pg.mkPen(c, width=width)
    if style is not None:
        drawn.setStyle(style)
    elif dashed:
        drawn.setStyle(QtCore.Qt.PenStyle.DashLine)
    return drawn


def faded(c: str, amount: float = 0.5) -> str:
    """``c`` mixed with the theme's background: an opaque faded colour (a translucent pen costs twice the paint)."""
    if not (c.startswith("#") and len(c) == 7):
        return c
    bg = palette.theme().background
    mix = [round((1 - amount) * int(c[i : i + 2], 16) + amount * int(bg[i : i + 2], 16)) for i in (1, 3, 5)]
    return "#" + "".join(f"{v:02x}" for v in mix)


def clean_pen(c, style=None):
    """How a clean run is drawn: the corrupted run's colour (faded) and style, thin."""
    return pen(faded(c), 1.3, style=style)


class StaleBadge(QtWidgets.QLabel):
    """"updating …" in a plot's top right corner while a newer result is on its way (never in exports: it is a
    widget over the view, not part of the drawn scene)."""

    def __init__(self, host: QtWidgets.QWidget) -> None:
        super().__init__("updating …", host)
        self.setObjectName("stale_badge")
        self.setStyleSheet("QLabel#stale_badge { background: #fff4e0; color: #7a4a00; border: 1px solid #e0b060; "
                           "border-radius: 3px; padding: 1px 5px; }")
        self.setToolTip("A newer solve is running: this still shows the previous result")
        self.hide()

    def show_over(self, host: QtWidgets.QWidget) -> None:
        self.adjustSize()
        self.move(max(host.width() - self.width() - 8, 0), 4)
        self.show()
        self.raise_()


class PlotPanel(pg.PlotWidget):
    """A titled plot with a step marker; subclasses fill ``show_result``."""

    title = ""
    y_label = ""
    x_label = "solver step"

    legend_offset = (-5, 5)
    left_axis = pg.AxisItem

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent, axisItems={"bottom": StepAxis("bottom"), "left": self.left_axis("left")})
        self.setObjectName(type(self).__name__)
        self.setMinimumSize(220, 150)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)  # keys never pan a plot: they go to the scrubber
        item = self.getPlotItem()
        item.vb.setMouseEnabled(x=False, y=False)  # ranges follow the result; a pan would also leak into exports
        # the title spans the whole plot (axis column too): a note under it has the plot's full width. Its row
        # holds two lines always, so a note coming or going never re-lays out the plot
        item.setTitle(f"{self.title}<br>&nbsp;", size="10pt")
        item.layout.removeItem(item.titleLabel)
        item.layout.addItem(item.titleLabel, 0, 0, 1, 3)
        item.titleLabel.setMinimumWidth(0)  # never wider than the plot's cell
        self._note_item = QtWidgets.QGraphicsSimpleTextItem(item.titleLabel)  # plain text: cheap to change
        note_font = QtGui.QFont(self.font())
        note_font.setPointSizeF(8)
        self._note_item.setFont(note_font)
        self._note_item.setBrush(pg.mkBrush(palette.theme().muted))
        item.titleLabel.geometryChanged.connect(self._place_note)
        item.setLabel("left", self.y_label)
        item.setLabel("bottom", self.x_label)
        # tick labels that only ever widen the axis: a shrinking axis re-lays out and repaints the plot
        item.getAxis("left").setStyle(autoReduceTextSpace=False)
        item.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
        item.getAxis("bottom").enableAutoSIPrefix(False)  # steps and block names: "(x0.001)" never helps
        # no grid: pyqtgraph draws it into the axis pictures, which tripled every repaint (deqstudio bench)
        item.setMenuEnabled(False)
        self.legend = item.addLegend(offset=self.legend_offset, labelTextSize="8pt")
        self.marker = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(palette.theme().marker, width=1))
        self.marker.setZValue(50)
        item.addItem(self.marker, ignoreBounds=True)
        self._note_text = None
        self.result = None
        self._drawn_clean = None
        self.badge = StaleBadge(self)
        if palette.theme() is not palette.LIGHT:  # made while the dark theme is on (e.g. a report's plots)
            self.apply_theme()

    @property
    def stale(self) -> bool:
        """Whether the plot is marked as showing an older result than the settings."""
        return self.badge.isVisible()

    def set_stale(self, stale: bool) -> None:
        """Fade the curves and show "updating …" while a newer result is on its way."""
        if stale == self.stale:
            return
        self.getPlotItem().vb.setOpacity(0.35 if stale else 1.0)
        if stale:
            self.badge.show_over(self)
        else:
            self.badge.hide()

    def set_note(self, text: str) -> None:
        """A line under the title with the values at the scrubber's step."""
        if text == self._note_text:
            return
        self._note_text = text
        self._note_item.setText(text)
        self._place_note()

    def _place_note(self) -> None:
        """Centre the note under the title (from the plot's left edge when it is wider than the plot)."""
        label = self.getPlotItem().titleLabel
        title = label.item.mapRectToParent(label.item.boundingRect())
        width = self._note_item.boundingRect().width()
        x = max((label.rect().width() - width) / 2, 2.0)
        self._note_item.setPos(x, title.center().y() - 1)

    @property
    def note(self) -> str:
        """The note shown under the title ("" when there is none)."""
        return self._note_text or ""

    def apply_theme(self) -> None:
        """Redraw in the current theme (``palette.theme()``): background, axes, title, legend, curves."""
        t = palette.theme()
        item = self.getPlotItem()
        self.setBackground(t.background)
        for side in ("left", "bottom"):
            axis = item.getAxis(side)
            axis.setPen(t.foreground)
            axis.setTextPen(t.foreground)
        self.legend.setLabelTextColor(t.foreground)
        self.legend.setBrush(pg.mkBrush(t.background + "d0"))
        self.marker.setPen(pg.mkPen(t.marker, width=1))
        item.setTitle(f"{self.title}<br>&nbsp;", size="10pt", color=t.foreground)
        self._note_item.setBrush(pg.mkBrush(t.muted))
        self._place_note()
        self.restyle()
        if self.result is not None:
            step = self.marker.value() - 1
            self.show_result(self.result)
            self.show_step(int(step))

    def restyle(self) -> None:
        """Forget the drawn curves so that the next result builds them in the current colours."""
        if hasattr(self, "_key"):
            self._key = None
            self.clear_curves()
        self._drawn_clean = None

    def series_names(self) -> list[str]:
        """The names of the drawn series, as ``series`` and the CSV export call them."""
        return [_series_name(it) for it in self.getPlotItem().listDataItems()]

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of the drawn series ``name`` in data coordinates (not log10 on a log axis), as copies."""
        for it in self.getPlotItem().listDataItems():
            if _series_name(it) == name:
                x, y = it.xData, it.yData
                return (np.array([]) if x is None else np.array(x)), (np.array([]) if y is None else np.array(y))
        raise KeyError(f"no series {name!r} in {type(self).__name__}; it draws {', '.join(self.series_names())}")

    def clear_curves(self) -> None:
        item = self.getPlotItem()
        for it in list(item.listDataItems()):
            item.removeItem(it)
        self.legend.clear()

    def show_result(self, result) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _runs_to_draw(self, result) -> list:
        """(run, tag) pairs that need drawing: the engine reuses the clean run while only corruptions
        change, so its curves stay as they are. Call ``_drawn_clean = None`` after rebuilding curves."""
        runs = [(result.corrupted, "corrupted")]
        if result.clean is not self._drawn_clean:
            runs.append((result.clean, "clean"))
        self._drawn_clean = result.clean
        return runs

    def show_step(self, step: int) -> None:
        self.marker.setValue(step + 1)

    def data_table(self) -> tuple[list[str], list[list]]:
        """(header, rows) of what is drawn, for CSV export."""
        header, rows = ["series", "x", "y"], []
        for it in self.getPlotItem().listDataItems():
            x, y = it.xData, it.yData  # data coordinates; getData() gives log10 values on a log axis
            if x is None:
                continue
            name = _series_name(it)
            rows.extend([name, float(a), float(b)] for a, b in zip(x, y))
        return header, rows


def _series_name(item) -> str:
    return getattr(item, "series", None) or item.name() or ""


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k at or above ``value`` (> 0).

    Ranges are rounded out to such values so that most new results keep the axes as they were: pyqtgraph
    re-lays out an axis's tick labels only when its range changes.
    """
    if not np.isfinite(value) or value <= 0:
        return 1.0
    decade = 10.0 ** np.floor(np.log10(value))
    for m in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if m * decade >= value * (1 - 1e-9):
            return float(m * decade)
    return float(10 * decade)


def step_range(n: int) -> tuple[float, float]:
    """The x range for ``n`` solver steps, in steps of 5 so that most results keep the axis."""
    return 1.0, float(max(5, int(np.ceil(max(n, 1) / 5.0)) * 5))


def curve(item, c, line, series: str, name: str | None = None, size: float = 6):
    """A curve that draws a lone point as a dot (a line needs two); ``series`` names it in CSV exports."""
    drawn = item.plot([], [], pen=line, name=name, symbolBrush=c, symbolPen=None, symbolSize=size)
    drawn.series = series
    return drawn


def set_points(drawn, x: np.ndarray, y: np.ndarray) -> None:
    symbol = "o" if len(x) == 1 else None
    if drawn.opts["symbol"] != symbol:
        drawn.setSymbol(symbol)
    if symbol and not np.isfinite(y).all():  # a lone NaN point: nothing to draw (and no NaN bounds)
        x, y = x[:0], y[:0]
    drawn.setData(x, y)


def steps_axis(n: int) -> np.ndarray:
    return np.arange(1, n + 1, dtype=float)


