"""How far the corruption moved the equilibrium, per block."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from .base import FUSED_COLOUR, PlotPanel, colour, nice_ceiling


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
