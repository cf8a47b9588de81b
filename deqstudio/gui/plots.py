"""The diagnostic plots. Each panel takes a SolveResult (numpy only) and a step to mark."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
FUSED_COLOUR = "#000000"
FLOOR = 1e-12  # residuals are drawn on a log axis; exact zeros sit on this floor

pg.setConfigOptions(antialias=True, background="w", foreground="k")


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _pen(c, width=2.0, dashed=False):
    pen = pg.mkPen(c, width=width)
    if dashed:
        pen.setStyle(QtCore.Qt.PenStyle.DashLine)
    return pen


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


def _curve(item, c, pen, series: str, name: str | None = None, size: float = 6):
    """A curve that draws a lone point as a dot (a line needs two); ``series`` names it in CSV exports."""
    curve = item.plot([], [], pen=pen, name=name, symbolBrush=c, symbolPen=None, symbolSize=size)
    curve.series = series
    return curve


def _set_points(curve, x: np.ndarray, y: np.ndarray) -> None:
    symbol = "o" if len(x) == 1 else None
    if curve.opts["symbol"] != symbol:
        curve.setSymbol(symbol)
    if symbol and not np.isfinite(y).all():  # a lone NaN point: nothing to draw (and no NaN bounds)
        x, y = x[:0], y[:0]
    curve.setData(x, y)


def _steps(n: int) -> np.ndarray:
    return np.arange(1, n + 1, dtype=float)


class ResidualPlot(PlotPanel):
    title = "Relative residual per block"
    legend_offset = (5, -5)
    y_label = "‖f(z) − z‖ / ‖f(z)‖"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.getPlotItem().setLogMode(y=True)
        self.getPlotItem().getAxis("left").enableAutoSIPrefix(False)
        self.tol_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen("#aaa", width=1, style=QtCore.Qt.PenStyle.DotLine))
        self.getPlotItem().addItem(self.tol_line, ignoreBounds=True)
        self._key = None
        self._curves: dict = {}

    def _build(self, names) -> None:
        self.clear_curves()
        self._curves = {}
        item = self.getPlotItem()
        for i, name in enumerate(names):
            c = FUSED_COLOUR if name == "fused" else colour(i)
            width = 2.5 if name == "fused" else 1.8
            self._curves[(name, "corrupted")] = _curve(item, c, _pen(c, width), name, name=name)
            self._curves[(name, "clean")] = _curve(item, c, _pen(c, 1.2, dashed=True), f"{name} (clean)", size=4)
        self._curves[("joint", "corrupted")] = _curve(item, "#999", _pen("#999", 1.0), "joint", name="joint")
        self.legend.addItem(pg.PlotDataItem(pen=_pen("#555", 1.2, dashed=True)), "clean (dashed)")

    def show_result(self, result) -> None:
        self.result = result
        names = result.block_names
        if self._key != names:
            self._build(names)
            self._key = names
            self._drawn_clean = None
        for run, tag in self._runs_to_draw(result):
            x = _steps(run.nstep)
            for i, name in enumerate(names):
                y = np.clip(run.block_rel[:, i], FLOOR, None) if run.nstep else np.zeros(0)
                _set_points(self._curves[(name, tag)], x, y)
        _set_points(self._curves[("joint", "corrupted")], _steps(result.corrupted.nstep),
                    np.clip(result.corrupted.rel, FLOOR, None))
        tol = max(result.request.solver.tol, FLOOR)
        self.tol_line.setValue(np.log10(tol))
        # with stop mode "abs" the tolerance bounds ‖f(z) − z‖, not the relative residual drawn here
        self.tol_line.setVisible(result.request.solver.stop_mode == "rel")
        # An explicit range, rounded out to whole decades: autorange would be computed during the first
        # paint, change the axes and force a second paint of every result.
        shown = [np.clip(a, FLOOR, None).ravel() for r in (result.corrupted, result.clean) if r.nstep
                 for a in (r.block_rel, r.rel)]
        values = np.concatenate(shown + [np.array([tol])])
        values = values[np.isfinite(values)]
        lo, hi = np.floor(np.log10(values.min())), np.ceil(np.log10(values.max()))
        if not result.corrupted.nstep:
            lo, hi = -6.0, 0.0
            self.set_note(f"no solver: the {result.fusion} model fuses in one pass")
        item = self.getPlotItem()
        item.setYRange(lo, max(hi, lo + 1), padding=0.02)
        item.setXRange(*step_range(max(result.corrupted.nstep, result.clean.nstep)), padding=0.02)

    def show_step(self, step: int) -> None:
        super().show_step(step)
        r = self.result
        if r is not None and r.corrupted.nstep:
            k = min(step, r.corrupted.nstep - 1)
            self.set_note(f"step {k + 1}: rel {r.corrupted.rel[k]:.2e}")


class GatePlot(PlotPanel):
    title = "Gate share per modality"
    y_label = "share of the fused update"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.getPlotItem().setYRange(0, 1)
        self._key = None
        self._curves: dict = {}

    def show_result(self, result) -> None:
        self.result = result
        names = result.modality_names
        if self._key != names:
            self.clear_curves()
            item = self.getPlotItem()
            self._curves = {}
            for i, name in enumerate(names):
                c = colour(i)
                self._curves[(name, "corrupted")] = _curve(item, c, _pen(c, 2.0), name, name=name)
                self._curves[(name, "clean")] = _curve(item, c, _pen(c, 1.2, dashed=True), f"{name} (clean)", size=4)
            self._key = names
            self._drawn_clean = None
        for run, tag in self._runs_to_draw(result):
            for i, name in enumerate(names):
                y = run.gate_share[:, i] if run.nstep else np.zeros(0)
                _set_points(self._curves[(name, tag)], _steps(len(y)), y)
        if not result.corrupted.nstep:
            self.set_note(f"no gate: the {result.fusion} model has no DEQ block")
        self.getPlotItem().setXRange(*step_range(max(result.corrupted.nstep, result.clean.nstep)), padding=0.02)

    def show_step(self, step: int) -> None:
        super().show_step(step)
        r = self.result
        if r is not None and r.corrupted.nstep:
            k = min(step, r.corrupted.nstep - 1)
            self.set_note("  ".join(f"{n} {v:.2f}" for n, v in zip(r.modality_names, r.corrupted.gate_share[k])))


class ProbabilityPlot(PlotPanel):
    title = "Class probabilities"
    legend_offset = (-5, -5)
    y_label = "probability"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.getPlotItem().setYRange(0, 1.02)
        self._curves: list = []
        self._key = None
        self._one_pass = False

    def show_result(self, result) -> None:
        self.result = result
        run = result.corrupted
        classes = result.class_names
        final = run.final_probabilities
        top = list(np.argsort(final)[::-1][:3])
        if result.label not in top:
            top.append(result.label)
        key = (classes, tuple(top))
        item = self.getPlotItem()
        if self._key != key:
            self.clear_curves()
            self._curves = []
            for c, name in enumerate(classes):
                shown = c in top
                label = f"{name}{' (true)' if c == result.label else ''}" if shown else None
                pen = _pen(colour(c), 2.2 if shown else 0.8)
                self._curves.append(_curve(item, colour(c), pen, f"class {name}", name=label, size=8 if shown else 5))
            self._key = key
        probs = run.probabilities
        x = _steps(len(probs))
        for c, curve in enumerate(self._curves):
            _set_points(curve, x, probs[:, c])
        one_pass = not run.nstep  # no solver: the model's one forward pass
        if one_pass != self._one_pass:
            self._one_pass = one_pass
            item.getAxis("bottom").setTicks([[(1.0, "one pass")]] if one_pass else None)
        item.setXRange(*((0.0, 2.0) if one_pass else step_range(len(probs))), padding=0.02)

    def show_step(self, step: int) -> None:
        super().show_step(step)
        r = self.result
        if r is not None and len(r.corrupted.probabilities):
            k = min(step, len(r.corrupted.probabilities) - 1)
            p = r.corrupted.probabilities[k]
            c = int(np.argmax(p))
            where = "one pass" if not r.corrupted.nstep else f"step {k + 1}"
            self.set_note(f"{where}: predicts {r.class_names[c]} ({p[c]:.2f}); true {r.class_names[r.label]}")


class ShiftPlot(PlotPanel):
    title = "Equilibrium shift ‖z*corrupted − z*clean‖"
    y_label = "L2 distance"
    x_label = "block"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush="#4c72b0")
        self.getPlotItem().addItem(self.bars)
        self.getPlotItem().getAxis("left").enableAutoSIPrefix(False)
        self._names = None
        self.marker.hide()
        self.legend.hide()

    def show_result(self, result) -> None:
        self.result = result
        names = result.block_names
        shift = np.asarray(result.shift, dtype=float)
        values = np.where(np.isfinite(shift), shift, 0.0)  # a failed (non-finite) solve has no shift to draw
        x = np.arange(len(names), dtype=float)
        brushes = [pg.mkBrush(FUSED_COLOUR if n == "fused" else colour(i)) for i, n in enumerate(names)]
        self.bars.setOpts(x=x, height=values, width=0.6, brushes=brushes)
        if (names, result.fusion) != self._names:
            self._names = (names, result.fusion)
            if not names:
                self.set_note(f"no equilibrium: the {result.fusion} model has no fixed point")
            elif self._note_text:
                self.set_note("")
            self.getPlotItem().getAxis("bottom").setTicks([[(i, n) for i, n in enumerate(names)]])
            self.getPlotItem().setXRange(-0.6, max(len(names) - 0.4, 0.6), padding=0)
        top = float(values.max()) if len(values) else 0.0
        # no shift at all (nothing corrupted): a plain 0–1 axis rather than one scaled to a millionth
        self.getPlotItem().setYRange(0, nice_ceiling(top * 1.1) if top > 0 else 1.0, padding=0)

    def show_step(self, step: int) -> None:
        pass  # a bar per block: nothing changes with the step

    def data_table(self):
        r = self.result
        if r is None:
            return ["block", "shift"], []
        return ["block", "shift"], [[n, float(v)] for n, v in zip(r.block_names, r.shift)]


class UDMLPanel(QtWidgets.QWidget):
    """Per modality: injected corruption, predicted noise σ̂, dependency α, weight w, PE and energy."""

    ROWS = ("corruption", "pred. noise, clean", "pred. noise, now", "dependency α", "weight w, clean", "weight w, now",
            "PE mean σ², now", "energy, now")
    FORMATS = (None, "{:.3g}", "{:.3g}", "{:.3g}", "{:.3f}", "{:.3f}", "{:.3g}", "{:.3g}")  # how the cells round

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("UDMLPanel")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.title = QtWidgets.QLabel()
        layout.addWidget(self.title)
        self.table = QtWidgets.QTableWidget(len(self.ROWS), 0)
        self.table.setVerticalHeaderLabels(self.ROWS)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Stretch)
        # fixed rows: sizing them to their contents re-lays out the table whenever a value changes
        self.table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        row = self.table.fontMetrics().height() + 3
        self.table.verticalHeader().setDefaultSectionSize(row)
        self.table.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.table.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Ignored)
        # every row visible (a scroll bar hid the last one): header, the rows, the frame
        self.table.setMinimumHeight(row * (len(self.ROWS) + 1) + 2 * self.table.frameWidth() + 4)
        layout.addWidget(self.table, 3)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(110)
        item = self.plot.getPlotItem()
        item.setTitle("fusion weight w (light: clean, dark: corrupted)", size="9pt")
        item.setLabel("left", "w")
        item.setMenuEnabled(False)
        self.bars_clean = pg.BarGraphItem(x=[], height=[], width=0.35, brush="#9ecae1")
        self.bars_now = pg.BarGraphItem(x=[], height=[], width=0.35, brush="#08519c")
        item.addItem(self.bars_clean)
        item.addItem(self.bars_now)
        layout.addWidget(self.plot, 2)
        self.result = None
        self._columns = None

    def show_result(self, result) -> None:
        self.result = result
        names = result.modality_names
        clean, now = result.clean, result.corrupted
        if self._columns != names:  # a new model: rebuild the columns; otherwise only texts change
            self._columns = names
            self.table.setColumnCount(len(names))
            self.table.setHorizontalHeaderLabels(list(names))
            for i in range(len(names)):
                self.table.horizontalHeaderItem(i).setForeground(pg.mkColor(colour(i)))
                for j in range(self.table.rowCount()):
                    cell = QtWidgets.QTableWidgetItem()
                    cell.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
                    self.table.setItem(j, i, cell)
            self.plot.getPlotItem().getAxis("bottom").setTicks([[(i, n) for i, n in enumerate(names)]])
            self.plot.getPlotItem().setXRange(-0.6, len(names) - 0.4, padding=0)

        for j, (values, spec) in enumerate(zip(self._quantities(result), self.FORMATS)):
            for i, value in enumerate(values):
                if spec is None:  # the corruption: its short name in the cell, the parameter in the tooltip
                    text = value.split(" (")[0]
                    self.table.item(j, i).setToolTip(value)
                else:
                    text = "—" if value is None else spec.format(value)
                cell = self.table.item(j, i)
                if cell.text() != text:
                    cell.setText(text)
        x = np.arange(len(names), dtype=float)
        if now.weights is not None:
            self.bars_clean.setOpts(x=x - 0.18, height=clean.weights, width=0.35)
            self.bars_now.setOpts(x=x + 0.18, height=now.weights, width=0.35)
            both = np.concatenate([clean.weights, now.weights])
            top = float(both[np.isfinite(both)].max()) if np.isfinite(both).any() else 1.0
            self.plot.getPlotItem().setYRange(0, nice_ceiling(max(top * 1.1, 0.1)), padding=0)
        else:
            self.bars_clean.setOpts(x=[], height=[])
            self.bars_now.setOpts(x=[], height=[])
        if now.weights is not None:
            self.title.setText("<b>UDML</b>: predicted noise, dependency α, weights w")
            self.title.setToolTip("α: logit magnitude of the single-modality pass over the training set; "
                                  "w = M·u/Σu with u = 1/(predicted noise² · α)")
        else:
            self.title.setText(f"<b>UDML</b> — this {result.fusion} model has no UDML weights")

    def show_step(self, step: int) -> None:
        pass  # the table shows the final values: nothing changes with the step

    @staticmethod
    def _quantities(r) -> list[list]:
        """Per row of ``ROWS``, one value per modality (None where the model has no such quantity)."""
        names = r.modality_names

        def per_modality(values):
            return [None if values is None else float(values[i]) for i in range(len(names))]

        return [[r.corruption_labels.get(n, "clean") for n in names], per_modality(r.clean.sigma_hat),
                per_modality(r.corrupted.sigma_hat), [r.dependency.get(n) for n in names],
                per_modality(r.clean.weights), per_modality(r.corrupted.weights), per_modality(r.corrupted.pe),
                per_modality(r.corrupted.energy)]

    def data_table(self):
        """The table's quantities at full precision (the cells show them rounded)."""
        r = self.result
        header = ["quantity", *(r.modality_names if r is not None else ())]
        if r is None:
            return header, []
        return header, [[quantity, *("" if v is None else v for v in values)]
                        for quantity, values in zip(self.ROWS, self._quantities(r))]
