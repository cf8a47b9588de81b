"""Export › plot (PNG, SVG, PDF, CSV), trace (HDF5) and report, each with its provenance record beside it."""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtWidgets

from ..errors import ExportError
from ..session.provenance import provenance
from ..session.traces import write_trace_hdf5
from .export import export_plot
from .report import solve_figures, stability_figures, sweep_figures, write_report
from .solve_view import FIGURES

STABILITY = "stability"  # the Stability panel's slug (a dock of the window, not one of the SolveView's figures)
EXPORT_FILTER = "PNG image (*.png);;SVG vector image (*.svg);;PDF document (*.pdf);;CSV data (*.csv)"


class ExportActions:
    def __init__(self, window, session, view, status, analyses, recent=None) -> None:
        self.window, self.session, self.view, self.status, self.analyses = window, session, view, status, analyses
        self.recent = recent  # remembers the last export folder: every export dialog starts there

    def start_path(self, name: str) -> str:
        """``name`` in the folder of the last export (the working folder before any)."""
        folder = self.recent.folder("export") if self.recent is not None else ""
        return str(Path(folder) / name) if folder else name

    def _exported_to(self, path) -> None:
        if self.recent is not None and getattr(self.window, "remember", True):
            self.recent.set_folder("export", str(Path(path).resolve().parent))

    def add_to_menu(self, menu: QtWidgets.QMenu) -> None:
        plots = menu.addMenu("Export &plot")
        for slug, title in self._titles().items():
            plots.addAction(f"{title}…", lambda slug=slug, title=title: self.ask_export_plot(slug, title))
        menu.addAction("Export &trace (HDF5)…", self.ask_export_trace)
        menu.addAction("Export &report…", self.ask_export_report)

    def _titles(self) -> dict:
        return {**{slug: title for slug, title, _ in FIGURES}, STABILITY: "Equilibrium stability"}

    def _widgets(self) -> dict:
        return {**self.view.widgets(), STABILITY: self.window.stability}

    def current_provenance(self, what: str) -> dict:
        s = self.session
        return provenance(s.checkpoint, s.dataset, s.result, what=what)

    def _exportable(self) -> bool:
        if self.session.preview is not None:  # its provenance would lack the model's record
            self.status.show_message("The model is still loading: export once it has solved this sample.", True)
            return False
        if self.session.result is None:
            self.status.show_message("Nothing to export yet: open a checkpoint and a dataset and let the sample solve.",
                                     True)
            return False
        return True

    def _saved(self, text: str, ms: int = 6000) -> None:
        self.window.statusBar().showMessage(text, ms)

    def export_plot(self, slug: str, path: str, width: int | None = None) -> bool:
        if not self._exportable():
            return False
        try:
            files = export_plot(self._widgets()[slug], path, width=width,
                                provenance=self.current_provenance(f"plot {slug}"), title=self._titles()[slug])
        except ExportError as exc:
            self.status.show_message(f"Export failed: {exc}", True)
            return False
        self._saved(f"saved {files[0]} (+ provenance sidecar)")
        self._exported_to(path)
        return True

    def _equilibrium(self):
        """The session's equilibrium analysis if it is of the shown result (it may still be computing)."""
        s = self.session
        eq = s.equilibrium
        return eq if eq is not None and s.result is not None and eq.generation == s.result.request.generation else None

    def export_trace(self, path: str) -> bool:
        if not self._exportable():
            return False
        record = self.current_provenance("trace")
        try:  # the trace and its sidecar: one unit
            write_trace_hdf5(self.session.result, path, record, sidecar=dict(record, exported=Path(path).name),
                             equilibrium=self._equilibrium())
        except OSError as exc:
            self.status.show_message(f"Export failed: {exc}", True)
            return False
        self._saved(f"saved {path}")
        self._exported_to(path)
        return True

    def export_report(self, folder: str) -> bool:
        if not self._exportable():
            return False
        figures = solve_figures(self.view.widgets())
        equilibrium = self._equilibrium()
        if equilibrium is not None:  # the Stability panel, when it shows this result's analysis
            figures += stability_figures(self.window.stability)
        analyses = []
        sweep = self.analyses.current_sweep()
        if sweep is not None:  # the newest open sweep of the model that is loaded now
            figures += sweep_figures(*sweep.plots)
            analyses = [("robustness_sweep", sweep.result)]
        result = self.session.result
        try:
            write_report(folder, figures, self.current_provenance("report"), result=result, analyses=analyses,
                         equilibrium=equilibrium, title=f"DEQ Studio report — sample {result.request.sample}")
        except ExportError as exc:
            self.status.show_message(f"Export failed: {exc}", True)
            return False
        self._saved(f"saved the report to {folder}/report.html", 8000)
        self._exported_to(Path(folder) / "report.html")
        return True

    def ask_export_plot(self, slug: str, title: str) -> None:
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(self.window, f"Export {title}", self.start_path(f"{slug}.png"),
                                                             EXPORT_FILTER)
        if not path:
            return
        if "." not in Path(path).name:
            path += "." + chosen.split("*.")[-1].rstrip(")")
        width = None
        if path.lower().endswith(".png"):
            width, ok = QtWidgets.QInputDialog.getInt(self.window, "PNG width", "width in pixels:", 1600, 200, 8000, 100)
            if not ok:
                return
        self.export_plot(slug, path, width)

    def ask_export_trace(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.window, "Export trace",
                                                        self.start_path(f"trace-sample-{self.session.sample}.h5"),
                                                        "HDF5 (*.h5)")
        if path:
            self.export_trace(path)

    def ask_export_report(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.window, "Export report to a new or existing folder",
                                                        self.start_path(f"report-sample-{self.session.sample}"),
                                                        "Folders (*)")
        if path:
            self.export_report(path)
