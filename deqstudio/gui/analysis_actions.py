"""Analysis › robustness sweep, convergence statistics: each in its own window; a clicked point opens a sample."""

from __future__ import annotations

from PySide6 import QtWidgets

from ..core.corruptions import Corruption
from ..session.analyses import convergence_job, robustness_job
from ..session.provenance import provenance
from .analysis_window import AnalysisWindow


class AnalysisActions:
    def __init__(self, window, session, status) -> None:
        self.window, self.session, self.status = window, session, status
        self.windows: list[AnalysisWindow] = []
        session.loaded.connect(self._on_loaded)

    def add_to_menu(self, menu: QtWidgets.QMenu) -> None:
        menu.addAction("&Robustness sweep (all modalities, Gaussian noise)", lambda: self.start("robustness"))
        menu.addAction("Robustness sweep (every corruption &kind)", lambda: self.start("robustness", kinds=("all",)))
        menu.addAction("&Convergence statistics (all solvers)", lambda: self.start("convergence"))

    def _on_loaded(self, info) -> None:
        for win in self.windows:
            if win.source is not self.session.engine:
                win.mark_stale()

    def start(self, kind: str, kinds=None) -> AnalysisWindow | None:
        s = self.session
        if not s.ready:
            self.status.show_message("Open a checkpoint and a dataset first.", True)
            return None
        if kind == "convergence" and not s.info.is_deq:
            self.status.show_message(f"A {s.info.fusion} model has no solver: there are no convergence statistics.",
                                     True)
            return None
        job = (robustness_job(s.engine, s.split, kinds=kinds) if kind == "robustness"
               else convergence_job(s.engine, s.split))
        record = provenance(s.checkpoint, s.dataset, None, what=f"analysis {kind}", device=s.engine.device)
        record["settings"] = job.settings
        window = AnalysisWindow(job.start(), kind, record, source=s.engine)
        window.open_sample.connect(self.open_sample_with)
        self.windows = [w for w in self.windows if w.isVisible()] + [window]
        window.show()
        return window

    def current_sweep(self) -> AnalysisWindow | None:
        """The newest open robustness sweep of the model that is loaded now, if any."""
        sweeps = [w for w in self.windows if w.kind == "robustness" and w.result is not None and not w.stale
                  and w.isVisible()]
        return sweeps[-1] if sweeps else None

    def open_sample_with(self, index: int, corruptions: dict[str, Corruption] | None = None) -> None:
        """Show sample ``index``; with ``corruptions`` (modality → Corruption), exactly those (the others clean)."""
        s = self.session
        if not s.ready or not 0 <= index < len(s.dataset):
            return
        if corruptions is not None:
            if any(m not in s.corruptions for m in corruptions):
                return
            s.set_corruptions({m: corruptions.get(m, Corruption(c.kind)) for m, c in s.corruptions.items()})
        s.set_sample(index)
        self.window.raise_()
        self.window.activateWindow()

    def close_all(self) -> None:
        for win in self.windows:
            win.close()
