"""Each modality's share of the fused update, per solver step."""

from __future__ import annotations

import numpy as np

from ...core.adapter import NOT_PROVIDED
from .base import PlotPanel, colour, curve, pen, set_points, step_range, steps_axis


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
                self._curves[(name, "corrupted")] = curve(item, c, pen(c, 2.0), name, name=name)
                self._curves[(name, "clean")] = curve(item, c, pen(c, 1.2, dashed=True), f"{name} (clean)", size=4)
            self._key = names
            self._drawn_clean = None
        for run, tag in self._runs_to_draw(result):
            for i, name in enumerate(names):
                y = run.gate_share[:, i] if len(run.gate_share) else np.zeros(0)
                set_points(self._curves[(name, tag)], steps_axis(len(y)), y)
        if not result.corrupted.nstep:
            self.set_note(f"no gate: {NOT_PROVIDED} (the {result.fusion} model has no DEQ block)")
        elif not result.capabilities.gates:
            self.set_note(f"no gate share: {NOT_PROVIDED} (it has no gate, or its fused update does not go through it)")
        self.getPlotItem().setXRange(*step_range(max(result.corrupted.nstep, result.clean.nstep)), padding=0.02)

    def show_step(self, step: int) -> None:
        super().show_step(step)
        r = self.result
        if r is not None and len(r.corrupted.gate_share):
            k = min(step, r.corrupted.nstep - 1)
            self.set_note("  ".join(f"{n} {v:.2f}" for n, v in zip(r.modality_names, r.corrupted.gate_share[k])))
