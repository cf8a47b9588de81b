"""The class probabilities read out at each solver step.

A multilabel model's are a sigmoid per label, read as they are (no softmax: they need not sum to one); the
curves drawn boldly are the predicted labels (above the 0.5 threshold, drawn dashed) and the true ones.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

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
        self._threshold = None

    @staticmethod
    def shown_classes(result) -> list[int]:
        """The classes drawn boldly: the three most probable and the true one; for a multilabel model the
        predicted and the true labels (at least three, at most eight)."""
        final = result.corrupted.final_probabilities
        order = [int(c) for c in np.argsort(final)[::-1]]
        if not getattr(result, "multilabel", False):
            top = order[:3]
            return top if result.label in top else [*top, result.label]
        top = list(dict.fromkeys([*result.corrupted.predicted, *result.label_set]))[:8]
        return top + [c for c in order if c not in top][: max(0, 3 - len(top))]

    def _show_threshold(self, multilabel: bool) -> None:
        item = self.getPlotItem()
        if multilabel and self._threshold is None:
            self._threshold = pg.InfiniteLine(0.5, angle=0, movable=False,
                                              pen=pg.mkPen("#999", width=1, style=QtCore.Qt.PenStyle.DashLine))
            item.addItem(self._threshold, ignoreBounds=True)
        elif not multilabel and self._threshold is not None:
            item.removeItem(self._threshold)
            self._threshold = None
        item.setLabel("left", "probability (sigmoid per label)" if multilabel else self.y_label)

    def show_result(self, result) -> None:
        self.result = result
        run = result.corrupted
        classes = result.class_names
        multilabel = getattr(result, "multilabel", False)
        truth = set(result.true_labels) if hasattr(result, "true_labels") else {result.label}
        top = self.shown_classes(result)
        # the legend lists the bold classes in class order: only which classes they are (and the true ones) matter
        key = (classes, frozenset(top), frozenset(truth), multilabel)
        item = self.getPlotItem()
        if self._key is None or self._key[0] != classes or self._key[3] != multilabel:
            self.clear_curves()
            self._show_threshold(multilabel)
            self._curves = [curve(item, class_colour(c), pen(class_colour(c), 0.8), f"class {name}", size=5)
                            for c, name in enumerate(classes)]
        if self._key != key:  # other classes in front: the same curves restyled (making new ones costs ~10 ms)
            self._restyle(classes, top, truth)
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

    def _restyle(self, classes, top, truth) -> None:
        """The classes of ``top`` drawn boldly and named in the legend (class order), the others thin."""
        rows = []
        for c, drawn in enumerate(self._curves):
            shown = c in top
            if shown != (drawn.opts["symbolSize"] == 8):  # restyling a curve redraws it: only those that change
                drawn.setPen(pen(class_colour(c), 2.2 if shown else 0.8))
                drawn.setSymbolSize(8 if shown else 5)
            drawn.opts["name"] = f"{classes[c]}{' (true)' if c in truth else ''}" if shown else None
            if shown:
                rows.append(drawn)
        if len(rows) == len(self.legend.items):  # the same number of rows: relabelled in place (rebuilt: ~5 ms)
            for (sample, label), drawn in zip(self.legend.items, rows):
                if sample.item is not drawn:
                    sample.item = drawn
                    sample.update()
                if label.text != drawn.opts["name"]:
                    label.setText(drawn.opts["name"])
            self.legend.updateSize()
            return
        self.legend.clear()
        for drawn in rows:
            self.legend.addItem(drawn, drawn.opts["name"])

    def show_step(self, step: int) -> None:
        super().show_step(step)
        r = self.result
        if r is not None and len(r.corrupted.probabilities):
            k = min(step, len(r.corrupted.probabilities) - 1)
            p = r.corrupted.probabilities[k]
            where = "one pass" if not r.corrupted.nstep else f"step {k + 1}"
            if getattr(r, "multilabel", False):
                picked = [int(i) for i in np.flatnonzero(p > 0.5)]
                self.set_note(f"{where}: predicts {r.names(picked)}; true {r.label_text()}")
                return
            c = int(np.argmax(p))
            self.set_note(f"{where}: predicts {r.class_names[c]} ({p[c]:.2f}); true {r.class_names[r.label]}")
