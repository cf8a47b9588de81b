"""What every step plot shares: the titled plot with a step marker, colours, pens, rounded ranges."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
FUSED_COLOUR = "#000000"
FLOOR = 1e-12  # residuals are drawn on a log axis; exact zeros sit on this floor

pg.setConfigOptions(antialias=True, background="w", foreground="k")


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def pen(c, width=2.0, dashed=False):
    drawn = pg.mkPen(c, width=width)
    if dashed:
        drawn.setStyle(QtCore.Qt.PenStyle.DashLine)
    return drawn


class PlotPanel(pg.PlotWidget):
    """A titled plot with a step marker; subclasses fill ``show_result``."""

    title = ""
    y_label = ""
    x_label = "solver step"

    legend_offset = (-5, 5)

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent)
        self.setObjectName(type(self).__name__)
        self.setMinimumSize(260, 180)
        item = self.getPlotItem()
        item.setTitle(self.title, size="10pt")
        item.setLabel("left", self.y_label)
        item.setLabel("bottom", self.x_label)
        # tick labels that only ever widen the axis: a shrinking axis re-lays out and repaints the plot
        item.getAxis("left").setStyle(autoReduceTextSpace=False)
        item.getAxis("bottom").enableAutoSIPrefix(False)  # steps and block names: "(x0.001)" never helps
        # no grid: pyqtgraph draws it into the axis pictures, which tripled every repaint (deqstudio bench)
        item.setMenuEnabled(False)
        self.legend = item.addLegend(offset=self.legend_offset, labelTextSize="9pt")
        self.marker = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888", width=1))
        self.marker.setZValue(50)
        item.addItem(self.marker, ignoreBounds=True)
        self._note_text = None
        self.result = None
        self._drawn_clean = None

    def set_note(self, text: str) -> None:
        """A line under the title with the values at the scrubber's step."""
        if text == self._note_text:
            return
        html = f"{self.title}<br><span style='font-size:8pt;color:#444'>{text}</span>" if text else self.title
        if self._note_text is None:
            self.getPlotItem().setTitle(html, size="10pt")
        else:
            _retext_label(self.getPlotItem().titleLabel, html)
        self._note_text = text

    @property
    def note(self) -> str:
        """The note shown under the title ("" when there is none)."""
        return self._note_text or ""

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


def _retext_label(label: pg.LabelItem, html: str) -> None:
    """Change a title's text without ``LabelItem.setText``, which re-measures the label and re-lays out the
    whole plot (a second repaint per result); the title row has a fixed height, so re-centring suffices."""
    colour_ = pg.mkColor(label.opts.get("color") or pg.getConfigOption("foreground"))
    label.text = html
    label.item.setHtml(f"<span style='color: {colour_.name()}; font-size: {label.opts['size']}'>{html}</span>")
    bounds = label.itemRect()
    bounds.moveCenter(label.rect().center())
    plot_left = -label.pos().x()  # the title sits over the view box; the axis column is to its left
    if bounds.left() < plot_left + 2:  # a note wider than the view box: start it at the plot's edge
        bounds.moveLeft(plot_left + 2)
    label.item.setPos(bounds.topLeft() - label.itemRect().topLeft())


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


