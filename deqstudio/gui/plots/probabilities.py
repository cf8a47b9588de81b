"""The class probabilities read out at each solver step."""

from __future__ import annotations

import numpy as np

from .base import PlotPanel, class_colour, curve, pen, set_points, step_range, steps_axis


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
                line = pen(class_colour(c), 2.2 if shown else 0.8)
                self._curves.append(curve(item, class_colour(c), line, f"class {name}", name=label,
                                          size=8 if shown else 5))
            self._key = key
        probs = run.probabilities
        x = steps_axis(len(probs))
        for c, drawn in enumerate(self._curves):
            set_points(drawn, x, probs[:, c])
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
