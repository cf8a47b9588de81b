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
                 sweep=False, progress=None, allow_plugins=()) -> tuple[Path, dict]:
    """Returns the folder and a short summary; raises HeadlessError or ExportError with the message."""
    from ..session import headless
    from ..session.provenance import provenance
    from .plots.analysis import CalibrationPlot, RobustnessPlot
    from .plots.stability import StabilityPanel
    from .report import solve_figures, stability_figures, sweep_figures, write_report
    from .solve_view import SolveView

    app = _application()
    loaded = headless.load(checkpoint, dataset, device=device, allow_plugins=allow_plugins)
    result = headless.solve(loaded, sample, corruptions, solver)
    equilibrium = headless.equilibrium(loaded, result)
    view = SolveView(arranged=False)
    widgets = view.widgets()
    for w in widgets.values():
        w.resize(*PANEL_SIZE)
        w.show()  # offscreen: lays out each plot at the report's size, as in the window
    view.show_result(result)  # the marker at the last step
    stability = StabilityPanel()
    stability.resize(*PANEL_SIZE)
    stability.show()
    stability.show_equilibrium(result, equilibrium)
    widgets["stability"] = stability
    figures = solve_figures(widgets) + stability_figures(stability)
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
    folder = write_report(out, figures, record, result=result, analyses=analyses, equilibrium=equilibrium,
                          title=f"DEQ Studio report — sample {result.request.sample} of {loaded.dataset.name}")
    summary = {"folder": str(folder), "figures": [f.slug for f in figures],
               "sweep_seconds": swept.seconds if swept is not None else None, "notice": result.notice}
    for w in widgets.values():
        w.deleteLater()
    view.deleteLater()
    return folder, summary
