"""Plots of dataset-scale analyses: robustness curves, noise calibration, convergence histograms."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

from .base import colour

SYMBOLS = ("o", "s", "t", "d", "+", "x")


def _curve_name(sweep, c: int) -> str:
    return str(sweep.modality[c]) if len(set(sweep.kind)) == 1 else f"{sweep.modality[c]} · {sweep.kind[c]}"


class AnalysisPlot(pg.PlotWidget):
    """A titled analysis plot; clicking a point emits ``point_clicked(series, x)``."""

    title = ""
    x_label = ""
    y_label = ""
    legend_offset = (-5, 5)
    point_clicked = QtCore.Signal(str, float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent)
        self.setObjectName(type(self).__name__)
        self.setMinimumSize(320, 220)
        item = self.getPlotItem()
        item.setTitle(self.title, size="10pt")
        item.setLabel("bottom", self.x_label)
        item.setLabel("left", self.y_label)
        item.setMenuEnabled(False)
        self.legend = item.addLegend(offset=self.legend_offset, labelTextSize="9pt")
        self.analysis = None
        self.curve_of: dict[str, int] = {}  # legend name → curve index of the analysis

    def clear_all(self) -> None:
        self.getPlotItem().clear()
        self.legend.clear()
        self.curve_of = {}

    def _severity_axis(self, levels) -> None:
        self.getPlotItem().getAxis("bottom").setTicks([[(float(v), f"{v:g}") for v in levels]])
        self.getPlotItem().setXRange(float(min(levels)) - 0.2, float(max(levels)) + 0.2, padding=0)

    def _series(self, x, y, i: int, name: str, dashed: bool = False, symbol: int | None = None):
        pen = pg.mkPen(colour(i), width=2, style=QtCore.Qt.PenStyle.DashLine if dashed else QtCore.Qt.PenStyle.SolidLine)
        sym = SYMBOLS[(i if symbol is None else symbol) % len(SYMBOLS)]
        curve = self.getPlotItem().plot(x, y, pen=pen, symbol=sym, symbolSize=7,
                                        symbolBrush=colour(i), symbolPen=None, name=name)
        curve.sigPointsClicked.connect(lambda _c, points, _e=None, name=name: self._clicked(name, points))
        return curve

    def _clicked(self, name: str, points) -> None:
        if len(points):
            self.point_clicked.emit(name, float(points[0].pos().x()))

    def data_table(self):
        header, rows = ["series", "x", "y"], []
        for it in self.getPlotItem().listDataItems():
            x, y = it.xData, it.yData  # data coordinates; getData() gives log10 values on a log axis
            if x is None:
                continue
            rows.extend([it.name() or "", float(a), float(b)] for a, b in zip(x, y))
        return header, rows


def _style(sweep, c: int) -> tuple[int, int]:
    """Colour by modality, symbol by corruption kind, so many curves stay tellable apart."""
    modalities = list(dict.fromkeys(str(m) for m in sweep.modality))
    kinds = list(dict.fromkeys(str(k) for k in sweep.kind))
    return modalities.index(str(sweep.modality[c])), kinds.index(str(sweep.kind[c]))


def _fit_legend(plot: AnalysisPlot, curves: int) -> None:
    plot.legend.setColumnCount(2 if curves > 6 else 1)
    plot.legend.setBrush(pg.mkBrush(255, 255, 255, 215))


class RobustnessPlot(AnalysisPlot):
    title = "Accuracy under corruption"
    x_label = "severity (0 = clean)"
    y_label = "accuracy (fraction of the split)"
    legend_offset = (5, -5)  # lower left: accuracy starts high and falls to the right

    def show_sweep(self, sweep) -> None:
        self.analysis = sweep
        self.clear_all()
        for c in range(len(sweep.modality)):
            name = f"{_curve_name(sweep, c)} (AUC {sweep.auc[c]:.3f})" if np.isfinite(sweep.auc[c]) else _curve_name(sweep, c)
            keep = np.isfinite(sweep.accuracy[c])
            col, sym = _style(sweep, c)
            self._series(sweep.levels[keep], sweep.accuracy[c][keep], col, name, symbol=sym)
            self.curve_of[name] = c
            if sweep.baseline_accuracy is not None:
                self._series(sweep.levels[keep], sweep.baseline_accuracy[c][keep], col,
                             f"{_curve_name(sweep, c)}, baseline", dashed=True, symbol=sym)
        _fit_legend(self, len(sweep.modality))
        self.getPlotItem().setYRange(0, 1.02, padding=0)
        self._severity_axis(sweep.levels)
        note = f"{sweep.model} · {sweep.split} split, {sweep.samples} samples"
        if not sweep.complete:
            note += " · cancelled: partial"
        multilabel = sweep.metric == "micro_f1"  # a multilabel model's curves are micro F1, not accuracy
        self.getPlotItem().setLabel("left", "micro F1 (label sets of the split)" if multilabel else self.y_label)
        title = "Micro F1 under corruption" if multilabel else self.title
        self.getPlotItem().setTitle(f"{title}<br><span style='font-size:8pt;color:#444'>{note}</span>", size="10pt")

    def data_table(self):
        s = self.analysis
        if s is None:
            return ["modality", "kind", "severity", "accuracy"], []
        return list(s.columns), s.rows()


class CalibrationPlot(AnalysisPlot):
    title = "Noise calibration: predicted noise vs severity"
    x_label = "severity (0 = clean)"
    y_label = "mean predicted noise level (UDML σ-hat)"
    legend_offset = (5, 5)

    def show_sweep(self, sweep) -> None:
        self.analysis = sweep
        self.clear_all()
        drawn = 0
        for c in range(len(sweep.modality)):
            keep = np.isfinite(sweep.noise_estimate[c])
            if not keep.any():
                continue
            rho = sweep.noise_spearman[c]
            name = f"{_curve_name(sweep, c)}  ρ {rho:.2f} / {sweep.pe_spearman[c]:.2f}"
            col, sym = _style(sweep, c)
            self._series(sweep.levels[keep], sweep.noise_estimate[c][keep], col, name, symbol=sym)
            self.curve_of[name] = c
            drawn += 1
        _fit_legend(self, drawn)
        self._severity_axis(sweep.levels)
        note = "ρ: Spearman, severity vs estimate per sample, UDML / PE baseline" if drawn else \
            "this model has no UDML noise estimator"
        self.getPlotItem().setTitle(f"{self.title}<br><span style='font-size:8pt;color:#444'>{note}</span>", size="10pt")

    def data_table(self):
        s = self.analysis
        header = ["modality", "kind", "severity", "noise_estimate", "pe_estimate"]
        if s is None:
            return header, []
        rows = []
        for c in range(len(s.modality)):
            for j, level in enumerate(s.levels):
                rows.append([str(s.modality[c]), str(s.kind[c]), float(level), float(s.noise_estimate[c, j]),
                             float(s.pe_estimate[c, j])])
        return header, rows


class StepsHistogram(AnalysisPlot):
    title = "Solver steps to converge"
    x_label = "steps (function evaluations)"
    y_label = "samples"

    def show_stats(self, stats) -> None:
        self.analysis = stats
        self.clear_all()
        top = int(np.nanmax(stats.steps)) if stats.steps.size else 1
        edges = np.arange(0.5, top + 1.5, max(1, (top + 19) // 20))
        for s, name in enumerate(stats.solvers):
            counts, _ = np.histogram(stats.steps[s], bins=edges)
            curve = self.getPlotItem().plot(edges, counts, stepMode="center", fillLevel=0,
                                            brush=pg.mkBrush(colour(s) + "55"), pen=pg.mkPen(colour(s), width=1.5),
                                            name=f"{name} (median {np.median(stats.steps[s]):.0f})")
            curve.setCurveClickable(True)
            curve.sigClicked.connect(lambda _c, ev, name=str(name): self.point_clicked.emit(
                name, float(self.getPlotItem().vb.mapSceneToView(ev.scenePos()).x())))

    def data_table(self):
        s = self.analysis
        if s is None:
            return ["solver", "sample", "steps", "final_rel", "converged"], []
        rows = []
        for i, name in enumerate(s.solvers):
            for j, sid in enumerate(s.sample_ids):
                rows.append([str(name), int(sid), int(s.steps[i, j]), float(s.final_rel[i, j]), bool(s.converged[i, j])])
        return ["solver", "sample", "steps", "final_rel", "converged"], rows
