"""``deqstudio report``: solve (and optionally sweep) without a window, draw offscreen, write the folder."""

from __future__ import annotations

import os
from pathlib import Path

PANEL_SIZE = (900, 520)


def _application():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a report never needs (or opens) a screen
    from PySide6 import QtWidgets

    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["deqstudio"])


def build_report(out, checkpoint=None, dataset=None, sample=None, corruptions=(), solver=None, device="cpu",
                 sweep=False, progress=None) -> tuple[Path, dict]:
    """Returns the folder and a short summary; raises HeadlessError or ExportError with the message."""
    from ..session import headless
    from ..session.provenance import provenance
    from .plots.analysis import CalibrationPlot, RobustnessPlot
    from .plots import GatePlot, ProbabilityPlot, ResidualPlot, ShiftPlot, UDMLPanel
    from .report import solve_figures, sweep_figures, write_report

    app = _application()
    from dataclasses import replace

    loaded = headless.load(checkpoint, dataset, device=device)
    if solver is not None:
        solver = replace(solver, device=loaded.engine.device)
    result = headless.solve(loaded, sample, corruptions, solver)
    widgets = {"residual": ResidualPlot(), "gates": GatePlot(), "probabilities": ProbabilityPlot(),
               "udml": UDMLPanel(), "equilibrium_shift": ShiftPlot()}
    last = max(result.corrupted.nstep, 1) - 1
    for w in widgets.values():
        w.resize(*PANEL_SIZE)
        w.show()  # offscreen: lays out the plot and applies auto-range, as in the window
        w.show_result(result)
        w.show_step(last)
    figures = solve_figures(widgets)
    analyses = []
    swept = None
    if sweep:
        swept = headless.sweep(loaded, progress=progress)
        robustness, calibration = RobustnessPlot(), CalibrationPlot()
        for w in (robustness, calibration):
            w.resize(*PANEL_SIZE)
            w.show()
            w.show_sweep(swept)
            widgets[w.objectName()] = w
        figures += sweep_figures(robustness, calibration)
        analyses.append(("robustness_sweep", swept))
    for _ in range(3):
        app.processEvents()
    record = provenance(loaded.checkpoint, loaded.dataset, result, what="report",
                        analyses=[a for a, _ in analyses])
    folder = write_report(out, figures, record, result=result, analyses=analyses,
                          title=f"DEQ Studio report — sample {result.request.sample} of {loaded.dataset.name}")
    summary = {"folder": str(folder), "figures": [f.slug for f in figures],
               "sweep_seconds": swept.seconds if swept is not None else None, "notice": result.notice}
    for w in widgets.values():
        w.deleteLater()
    return folder, summary
