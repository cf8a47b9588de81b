"""The Stability panel: why the shown sample's equilibrium holds or breaks.

ρ(J) with its alarm, the block coupling heatmap, what the prediction depends on (sensitivity beside the gate
share and the UDML weights), the linear response beside the actual shift, and whether several starts agree.
It follows the session: a new result marks the panel as updating; its equilibrium analysis, computed after the
solve, fills it.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from .base import nice_ceiling

ALARM = "#b00020"
OK = "#1b5e20"
SENSITIVITY, GATE, WEIGHT = "#d95f02", "#7570b3", "#1b9e77"
LINEAR, ACTUAL = "#a6cee3", "#1f78b4"
WIDE = 420  # at least this wide: the plots in two columns


def _fmt(v, spec=".3g") -> str:
    return "–" if v is None or not np.isfinite(v) else format(float(v), spec)


def _key(pairs) -> str:
    """A title's colour key: ■ name per (colour, name), in place of a legend over the bars."""
    return "  ".join(f"<span style='color:{c}'>■</span> {html.escape(n)}" for c, n in pairs)


def _small_plot(title: str, y_label: str = "") -> pg.PlotWidget:
    plot = pg.PlotWidget()
    plot.setMinimumSize(150, 140)
    item = plot.getPlotItem()
    item.setTitle(title, size="9pt")
    if y_label:
        item.setLabel("left", y_label)
    item.setMenuEnabled(False)
    item.getAxis("left").enableAutoSIPrefix(False)
    plot.setMouseEnabled(False, False)
    plot.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Ignored)
    return plot


class StabilityPanel(QtWidgets.QWidget):
    """Stability, coupling, sensitivity, linear response and multiple starts of the shown sample."""

    def __init__(self, session=None, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("StabilityPanel")
        self.summary = QtWidgets.QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.summary.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        # every line of the summary stays visible; the plots share what is left
        self.summary.setSizePolicy(QtWidgets.QSizePolicy.Policy.Preferred, QtWidgets.QSizePolicy.Policy.Minimum)
        # "updating…" on a line of its own, of fixed height: while sliders move only it changes, and nothing
        # else in the window is laid out again (a summary that wraps differently would resize every plot here)
        self.state = QtWidgets.QLabel()
        self.state.setStyleSheet("color: #777")
        self.state.setFixedHeight(self.state.fontMetrics().height() + 2)
        self.state.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
        header = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(header)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.summary)
        column.addWidget(self.state)
        header.setSizePolicy(QtWidgets.QSizePolicy.Policy.Preferred, QtWidgets.QSizePolicy.Policy.Minimum)
        self.coupling = _small_plot("coupling ‖∂f<sub>row</sub>/∂z<sub>col</sub>‖₂")
        self.coupling.getPlotItem().getViewBox().invertY(True)
        self.heat = pg.ImageItem()
        self.heat.setColorMap(pg.colormap.get("viridis"))
        self.coupling.getPlotItem().addItem(self.heat)
        self._cell_text: list = []
        self.dependence = _small_plot("share per modality<br>" + _key(
            ((SENSITIVITY, "sensitivity"), (GATE, "gate"), (WEIGHT, "w/Σw"))), "share")
        self.dependence.getPlotItem().titleLabel.setToolTip(
            "sensitivity: ‖∂p/∂x_m‖ of the predicted class through the equilibrium (implicit function theorem); "
            "gate: the modality's share of the fused update at the returned step; w/Σw: the UDML fusion weights")
        self.bars = {key: pg.BarGraphItem(x=[], height=[], width=0.26, brush=c)
                     for key, c in (("sensitivity", SENSITIVITY), ("gate", GATE), ("weight", WEIGHT))}
        for bar in self.bars.values():
            self.dependence.getPlotItem().addItem(bar)
        self.shift_title = "equilibrium shift per block<br>" + _key(
            ((LINEAR, "linear response"), (ACTUAL, "actual")))
        self.shift = _small_plot(self.shift_title, "‖Δz‖")
        self.shift.getPlotItem().titleLabel.setToolTip(  # the key stays short: a long title widens the plot
            "linear response: (I−J)⁻¹ ∂f/∂x Δx at the clean z*, per block; actual: z*corrupted − z*clean")
        self.shift_bars = {key: pg.BarGraphItem(x=[], height=[], width=0.38, brush=c)
                           for key, c in (("linear", LINEAR), ("actual", ACTUAL))}
        for bar in self.shift_bars.values():
            self.shift.getPlotItem().addItem(bar)
        self.parts = [header, self.coupling, self.dependence, self.shift]
        self.grid = QtWidgets.QGridLayout(self)
        self.grid.setContentsMargins(4, 4, 4, 4)
        self._columns = 0
        self._arrange(1)
        self.result = None
        self.equilibrium = None
        self._pending = False
        self.session = session
        self.summary.setText("<i>Stability of the shown sample's equilibrium: computed after each solve.</i>")
        if session is not None:
            session.result_changed.connect(self._on_result_changed)
            session.equilibrium_changed.connect(self._on_equilibrium_changed)

    # -- layout -----------------------------------------------------------------------------------
    def _arrange(self, columns: int) -> None:
        if columns == self._columns:
            return
        self._columns = columns
        for w in self.parts:
            self.grid.removeWidget(w)
        for i in range(4):
            self.grid.setRowStretch(i, 0)
            self.grid.setColumnStretch(i, 0)
        if columns == 2:
            spots = [(0, 0, 1, 2), (1, 0, 1, 1), (1, 1, 1, 1), (2, 0, 1, 2)]
            self.grid.setRowStretch(1, 3)
            self.grid.setRowStretch(2, 2)
            self.grid.setColumnStretch(0, 1)
            self.grid.setColumnStretch(1, 1)
        else:
            spots = [(0, 0, 1, 1), (1, 0, 1, 1), (2, 0, 1, 1), (3, 0, 1, 1)]
            for row in (1, 2, 3):
                self.grid.setRowStretch(row, 1)
        for w, spot in zip(self.parts, spots):
            self.grid.addWidget(w, *spot)

    def resizeEvent(self, event) -> None:  # noqa: N802
        self._arrange(2 if event.size().width() >= WIDE else 1)
        super().resizeEvent(event)

    # -- following the session ----------------------------------------------------------------------
    def _on_result_changed(self, result) -> None:
        self.result = result
        eq = self.session.equilibrium if self.session is not None else None
        current = eq is not None and eq.generation == result.request.generation
        self._set_pending(not current and result.capabilities.solver)
        if current:
            self.show_equilibrium(result, eq)
        elif not result.capabilities.solver or self.equilibrium is None:
            self._draw_summary()

    def _on_equilibrium_changed(self, equilibrium) -> None:
        if self.result is not None and equilibrium.generation == self.result.request.generation:
            self._set_pending(False)
            self.show_equilibrium(self.result, equilibrium)

    def _set_pending(self, pending: bool) -> None:
        self._pending = pending
        text = (f"updating: sample {self.result.request.sample} was solved again, its analysis follows…"
                if pending and self.result is not None and self.equilibrium is not None else "")
        if self.state.text() != text:
            self.state.setText(text)

    # -- drawing ----------------------------------------------------------------------------------
    def show_equilibrium(self, result, equilibrium) -> None:
        """Draw ``equilibrium`` (an ``EquilibriumResult``) of ``result``."""
        self.result, self.equilibrium = result, equilibrium
        self._draw_summary()
        report = equilibrium.corrupted if equilibrium is not None else None
        if report is None:
            return
        self._draw_coupling(report)
        self._draw_dependence(result, report)
        self._draw_shift(report)

    def _draw_summary(self) -> None:
        r, eq = self.result, self.equilibrium
        if r is None:
            return
        if not r.capabilities.solver:
            self.summary.setText(f"<b>Stability</b> — the {html.escape(r.fusion)} model has no fixed point: "
                                 "nothing to analyse.")
            self._clear()
            return
        shown = eq is not None and eq.corrupted is not None
        if not shown:
            text = "<b>Stability</b> — <i>computing the equilibrium analysis…</i>"
            if self.summary.text() != text:
                self.summary.setText(text)
            return
        rep, clean = eq.corrupted, eq.clean
        corrupted = r.corrupted is not r.clean
        if rep.unstable:
            rho = (f"<span style='color:{ALARM}'><b>ρ(J) = {_fmt(rep.spectral_radius, '.3f')} ≥ 1: unstable</b> — "
                   "plain iteration cannot converge here</span>")
        else:
            rho = f"<span style='color:{OK}'><b>ρ(J) = {_fmt(rep.spectral_radius, '.3f')}</b> &lt; 1: stable</span>"
        lines = [f"<b>Stability</b> of sample {eq.sample}",
                 f"{rho}" + (f" · clean {_fmt(clean.spectral_radius, '.3f')}" if corrupted and clean is not None else "")
                 + f" · observed contraction {_fmt(rep.contraction_observed)} per step"]
        s = rep.starts
        if s.agree is False:
            lines.append(f"<span style='color:{ALARM}'><b>starts DISAGREE: more than one equilibrium</b> "
                         f"(largest relative distance {_fmt(s.max_distance, '.2e')} ≥ {s.threshold:.0e})</span>")
        elif s.agree is None:
            lines.append(f"starts: only {s.converged} of {s.count} converged — cannot compare")
        else:
            lines.append(f"{s.count} starts ({s.converged} converged) agree: one equilibrium "
                         f"(largest relative distance {_fmt(s.max_distance, '.1e')})")
        if rep.shift_ratio is not None:
            lines.append(f"actual / linear shift {_fmt(rep.shift_ratio, '.2f')}"
                         + (" — <b>non-linear response</b>" if not 0.5 <= rep.shift_ratio <= 2 else ""))
        lines.append(f"<span style='color:#555'>derivatives: {html.escape(rep.derivatives)}, ρ: "
                     f"{html.escape(rep.spectral_method)}, {eq.seconds * 1e3:.0f} ms</span>")
        self.summary.setText("<br>".join(lines))

    def _clear(self) -> None:
        """Nothing drawn (a model without a fixed point): no values of another model linger."""
        self.equilibrium = None
        self.heat.clear()
        for t in self._cell_text:
            self.coupling.getPlotItem().removeItem(t)
        self._cell_text = []
        for bar in (*self.bars.values(), *self.shift_bars.values()):
            bar.setOpts(x=[], height=[])

    def _draw_coupling(self, report) -> None:
        item = self.coupling.getPlotItem()
        m = np.asarray(report.coupling, dtype=float)
        n = len(report.block_names)
        top = float(np.nanmax(m)) if m.size else 1.0
        self.heat.setImage(m.T, levels=(0.0, top if top > 0 else 1.0))
        self.heat.setRect(QtCore.QRectF(0, 0, n, n))
        for t in self._cell_text:
            item.removeItem(t)
        self._cell_text = []
        for a in range(n):
            for b in range(n):
                v = m[a, b]
                text = pg.TextItem(_fmt(v, ".2f"), color="w" if v < 0.6 * top else "k", anchor=(0.5, 0.5))
                text.setPos(b + 0.5, a + 0.5)
                item.addItem(text)
                self._cell_text.append(text)
        ticks = [(i + 0.5, name) for i, name in enumerate(report.block_names)]
        item.getAxis("bottom").setTicks([ticks])
        item.getAxis("left").setTicks([ticks])
        item.setLabel("bottom", "influencing block (column)")
        item.setLabel("left", "updated block (row)")
        item.setRange(xRange=(0, n), yRange=(0, n), padding=0)

    def _draw_dependence(self, result, report) -> None:
        names = report.modality_names
        x = np.arange(len(names), dtype=float)
        run = result.corrupted
        gate = run.gate_share[run.best_step] if len(run.gate_share) else None
        weight = None if run.weights is None else run.weights / np.sum(run.weights)
        for (key, values), offset in zip((("sensitivity", report.sensitivity_share), ("gate", gate),
                                          ("weight", weight)), (-0.27, 0.0, 0.27)):
            ok = values is not None and np.isfinite(values).all()
            self.bars[key].setOpts(x=x + offset if ok else [], height=values if ok else [], width=0.26)
        item = self.dependence.getPlotItem()
        item.getAxis("bottom").setTicks([[(i, n) for i, n in enumerate(names)]])
        item.setXRange(-0.6, len(names) - 0.4, padding=0)
        item.setYRange(0, 1.05, padding=0)

    def _draw_shift(self, report) -> None:
        item = self.shift.getPlotItem()
        names = report.block_names
        x = np.arange(len(names), dtype=float)
        item.getAxis("bottom").setTicks([[(i, n) for i, n in enumerate(names)]])  # the blocks, also when empty
        item.setXRange(-0.6, len(names) - 0.4, padding=0)
        if report.predicted_shift is None:
            for bar in self.shift_bars.values():
                bar.setOpts(x=[], height=[])
            item.setTitle("equilibrium shift per block<br>nothing corrupted: nothing to predict", size="9pt")
            item.setYRange(0, 1.0, padding=0)
            return
        item.setTitle(self.shift_title, size="9pt")
        self.shift_bars["linear"].setOpts(x=x - 0.2, height=report.predicted_shift, width=0.38)
        self.shift_bars["actual"].setOpts(x=x + 0.2, height=report.actual_shift, width=0.38)
        both = np.concatenate([report.predicted_shift, report.actual_shift])
        top = float(np.nanmax(both)) if np.isfinite(both).any() else 1.0
        item.setYRange(0, nice_ceiling(top * 1.15) if top > 0 else 1.0, padding=0)

    # -- what exports read --------------------------------------------------------------------------
    def show_step(self, step: int) -> None:
        pass  # the analysis is of the equilibrium: nothing changes with the step

    def data_table(self):
        """Every number the panel shows, at full precision: (quantity, run, first key, second key, value)."""
        header = ["quantity", "run", "key", "key2", "value"]
        eq, r = self.equilibrium, self.result
        if eq is None or eq.corrupted is None:
            return header, []
        rows = []
        for tag, rep in (("corrupted", eq.corrupted), ("clean", eq.clean)):
            rows += [["spectral_radius", tag, "", "", rep.spectral_radius],
                     ["contraction_observed", tag, "", "", rep.contraction_observed],
                     ["inits_max_distance", tag, "", "", rep.starts.max_distance],
                     ["inits_agree", tag, "", "", rep.starts.agree]]
            rows += [["coupling", tag, a, b, rep.coupling[i, j]] for i, a in enumerate(rep.block_names)
                     for j, b in enumerate(rep.block_names)]
            rows += [["sensitivity", tag, m, "", v] for m, v in zip(rep.modality_names, rep.sensitivity_total)]
            rows += [["sensitivity_share", tag, m, "", v] for m, v in zip(rep.modality_names, rep.sensitivity_share)]
            if rep.predicted_shift is not None:
                rows += [["predicted_shift", tag, b, "", v] for b, v in zip(rep.block_names, rep.predicted_shift)]
                rows += [["actual_shift", tag, b, "", v] for b, v in zip(rep.block_names, rep.actual_shift)]
        run = r.corrupted
        if len(run.gate_share):
            rows += [["gate_share", "corrupted", m, "", v] for m, v in zip(r.modality_names,
                                                                           run.gate_share[run.best_step])]
        if run.weights is not None:
            rows += [["weight_share", "corrupted", m, "", v] for m, v in zip(r.modality_names,
                                                                             run.weights / np.sum(run.weights))]
        return header, rows
