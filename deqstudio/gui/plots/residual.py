"""The relative residual of each block per solver step, the clean run faded behind the corrupted one, on a log axis;
the returned state (the best step, whose residual is the "final residual" everywhere) is marked."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

from .. import palette
from .axes import DecadeAxis
from .base import FLOOR, PlotPanel, clean_pen, colour, curve, fused_colour, modality_style, pen, set_points, \
    step_range, steps_axis

RETURNED = "returned state (best step)"


class ResidualPlot(PlotPanel):
    title = "Relative residual per block"
    legend_offset = (-5, 5)  # top right: residuals fall from the top left towards the bottom right
    y_label = "‖f(z) − z‖ / ‖f(z)‖"
    left_axis = DecadeAxis
    x_label = "solver step · faded: clean · grey: joint · ★ returned state"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.getPlotItem().setLabel("bottom", self.x_label, **{"font-size": "8pt"})
        self.getPlotItem().setLogMode(y=True)
        self.getPlotItem().getAxis("left").enableAutoSIPrefix(False)
        self.tol_line = pg.InfiniteLine(angle=0, movable=False)
        self.getPlotItem().addItem(self.tol_line, ignoreBounds=True)
        self.best = None
        self._key = None
        self._curves: dict = {}

    def _build(self, names) -> None:
        self.clear_curves()
        self._curves = {}
        item = self.getPlotItem()
        t = palette.theme()
        for i, name in enumerate(names):
            fused = name == "fused"
            c = fused_colour() if fused else colour(i)
            style = QtCore.Qt.PenStyle.SolidLine if fused else modality_style(i)
            self._curves[(name, "corrupted")] = curve(item, c, pen(c, 2.6 if fused else 2.0, style=style), name,
                                                      name=name)
            self._curves[(name, "clean")] = curve(item, c, clean_pen(c, style), f"{name} (clean)", size=4)
        # the legend names the blocks only (four short rows in the empty top right corner); the axis label says
        # what the other lines are
        self._curves[("joint", "corrupted")] = curve(item, t.faint, pen(t.faint, 1.0), "joint")
        self.tol_line.setPen(pg.mkPen(t.faint, width=1, style=QtCore.Qt.PenStyle.DotLine))
        self.best = item.plot([], [], pen=None, symbol="star", symbolSize=15, symbolBrush=t.foreground,
                              symbolPen=t.background)
        self.best.series = RETURNED
        self.best.setZValue(40)

    def show_result(self, result) -> None:
        self.result = result
        names = result.block_names
        if self._key != names:
            self._build(names)
            self._key = names
            self._drawn_clean = None
        for run, tag in self._runs_to_draw(result):
            x = steps_axis(run.nstep)
            for i, name in enumerate(names):
                y = np.clip(run.block_rel[:, i], FLOOR, None) if run.nstep else np.zeros(0)
                set_points(self._curves[(name, tag)], x, y)
        run = result.corrupted
        set_points(self._curves[("joint", "corrupted")], steps_axis(run.nstep), np.clip(run.rel, FLOOR, None))
        returned = run.nstep and np.isfinite(run.final_rel)
        self.best.setData(*(([run.best_step + 1.0], [max(run.final_rel, FLOOR)]) if returned else ([], [])))
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
        self.legend.setVisible(bool(result.corrupted.nstep))  # no curves: no legend left over
        item = self.getPlotItem()
        item.setYRange(lo, max(hi, lo + 1), padding=0.02)
        item.setXRange(*step_range(max(result.corrupted.nstep, result.clean.nstep)), padding=0.02)

    def show_step(self, step: int) -> None:
        super().show_step(step)
        r = self.result
        if r is not None and r.corrupted.nstep:
            run = r.corrupted
            k = min(step, run.nstep - 1)
            self.set_note(f"step {k + 1}: rel {run.rel[k]:.2e} · final residual {run.final_rel:.1e} "
                          f"(step {run.best_step + 1})")
