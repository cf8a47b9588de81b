"""The relative residual of each block per solver step, clean dashed beside corrupted, on a log axis."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

from .base import FLOOR, FUSED_COLOUR, PlotPanel, colour, curve, pen, set_points, step_range, steps_axis


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
            self._curves[(name, "corrupted")] = curve(item, c, pen(c, width), name, name=name)
            self._curves[(name, "clean")] = curve(item, c, pen(c, 1.2, dashed=True), f"{name} (clean)", size=4)
        self._curves[("joint", "corrupted")] = curve(item, "#999", pen("#999", 1.0), "joint", name="joint")
        self.legend.addItem(pg.PlotDataItem(pen=pen("#555", 1.2, dashed=True)), "clean (dashed)")

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
        set_points(self._curves[("joint", "corrupted")], steps_axis(result.corrupted.nstep),
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
