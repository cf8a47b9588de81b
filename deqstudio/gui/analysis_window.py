"""A window for one dataset-scale analysis: progress bar, cancel, plots, export; points open samples."""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtWidgets

from .plots.analysis import CalibrationPlot, RobustnessPlot, StepsHistogram
from ..core.corruptions import Corruption
from .export import export_plot, write_json


class AnalysisWindow(QtWidgets.QWidget):
    """Runs an AnalysisJob; ``open_sample(index, corruptions)`` asks the main view to show a sample under
    ``corruptions`` (modality → Corruption; empty: clean)."""

    open_sample = QtCore.Signal(int, object)
    finished = QtCore.Signal(object)

    def __init__(self, job, kind: str, provenance: dict, parent=None, source=None) -> None:
        super().__init__(parent, QtCore.Qt.WindowType.Window)
        self.job, self.kind, self.provenance = job, kind, provenance
        self.source = source  # what the analysis ran on (the engine); clicks act only while it is current
        self.stale = False
        self.setWindowTitle(f"DEQ Studio — {job.title}")
        self.resize(1100, 560)
        layout = QtWidgets.QVBoxLayout(self)
        top = QtWidgets.QHBoxLayout()
        self.status = QtWidgets.QLabel(f"{job.title}: starting …")
        self.bar = QtWidgets.QProgressBar()
        self.bar.setRange(0, 1000)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button = QtWidgets.QPushButton("Export…")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._ask_export)
        top.addWidget(self.status, 1)
        top.addWidget(self.bar, 1)
        top.addWidget(self.cancel_button)
        top.addWidget(self.export_button)
        layout.addLayout(top)
        plots = QtWidgets.QHBoxLayout()
        if kind == "robustness":
            self.plots = [RobustnessPlot(), CalibrationPlot()]
        else:
            self.plots = [StepsHistogram()]
        for p in self.plots:
            plots.addWidget(p)
            p.point_clicked.connect(self._point_clicked)
        layout.addLayout(plots, 1)
        self.hint = QtWidgets.QLabel("Click a point to open a sample it counts in the main view.")
        self.hint.setStyleSheet("color: #555")
        layout.addWidget(self.hint)
        self.result = None
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._poll)
        self.timer.start()

    def cancel(self) -> None:
        self.job.cancel()
        self.cancel_button.setEnabled(False)
        self.status.setText(f"{self.job.title}: cancelling …")

    def _poll(self) -> None:
        self.bar.setValue(int(1000 * self.job.progress))
        if not self.job.done:
            self.status.setText(f"{self.job.title}: {100 * self.job.progress:.0f}%")
            return
        self.timer.stop()
        self.cancel_button.setEnabled(False)
        if self.job.error:
            self.status.setText(self.job.error)
            self.status.setStyleSheet("color: #a00")
            self.finished.emit(None)
            return
        self.show_result(self.job.result)
        self.finished.emit(self.result)

    def show_result(self, result) -> None:
        self.result = result
        if self.kind == "robustness":
            for p in self.plots:
                p.show_sweep(result)
        else:
            self.plots[0].show_stats(result)
        partial = "" if result.complete else " — cancelled, partial results kept"
        self.status.setText(f"{self.job.title}: done in {self.job.seconds:.1f} s{partial}")
        self.export_button.setEnabled(True)

    def mark_stale(self) -> None:
        """Another model or dataset was opened: results stay readable, clicks no longer open samples."""
        self.stale = True
        self.hint.setText("Another model or dataset is open now: these results are kept, but clicking no longer "
                          "opens samples.")

    def _point_clicked(self, series: str, x: float) -> None:
        r = self.result
        if r is None or self.stale:
            return
        if self.kind == "robustness":
            curve = next((p.curve_of[series] for p in self.plots if series in p.curve_of), None)
            if curve is None:
                return
            j = int(np.argmin(np.abs(r.levels - x)))
            ids = r.misclassified(curve, j)
            level = float(r.levels[j])
            modality = str(r.modality[curve])
            corruptions = {modality: Corruption(str(r.kind[curve]), level)} if level > 0 else {}
            shown = corruptions[modality].text(modality) if corruptions else ""
            if len(ids):
                self.open_sample.emit(int(ids[0]), corruptions)
                self.hint.setText(f"opened sample {int(ids[0])}: misclassified under {shown or 'no corruption'} "
                                  f"({len(ids)} such samples)")
            else:
                self.hint.setText(f"no sample is misclassified at {shown or 'severity 0'}")
        else:
            s = next((i for i, n in enumerate(r.solvers) if series == str(n)), 0)
            steps = r.steps[s]
            i = int(np.argmin(np.abs(steps - x)))
            self.open_sample.emit(int(r.sample_ids[i]), None)
            self.hint.setText(f"opened sample {int(r.sample_ids[i])} ({int(steps[i])} steps with {r.solvers[s]})")

    def export_to(self, stem: str) -> list:
        """``stem``.csv and .h5 of the result, each plot as PNG/SVG/PDF/CSV, and the provenance sidecar."""
        from pathlib import Path

        stem = Path(stem)
        files = [self.result.to_csv(stem.with_name(stem.name + ".csv")),
                 self.result.to_hdf5(stem.with_name(stem.name + ".h5"))]
        for p in self.plots:
            for fmt in ("png", "svg", "pdf", "csv"):
                files += export_plot(p, stem.with_name(f"{stem.name}-{p.objectName().lower()}.{fmt}"), title=p.title)
        record = dict(self.provenance, analysis=self.kind, complete=bool(self.result.complete))
        files.append(write_json(stem.with_name(stem.name + ".provenance.json"), record))
        return files

    def _ask_export(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export analysis (name without extension)",
                                                        self.kind, "All files (*)")
        if not path:
            return
        try:
            files = self.export_to(path.rsplit(".", 1)[0] if path.lower().endswith((".csv", ".h5")) else path)
        except OSError as exc:  # an ExportError, or any other write fault: a message
            self.status.setText(f"export failed: {exc}")
            self.status.setStyleSheet("color: #a00")
            return
        self.status.setText(f"exported {len(files)} files next to {path}")

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self.job.done:
            self.job.cancel()
        self.timer.stop()
        super().closeEvent(event)
