"""Analysis › robustness sweep, convergence statistics: each in its own window; a clicked point opens a sample."""

from __future__ import annotations

from PySide6 import QtWidgets

from ..core.corruptions import Corruption
from ..session.analyses import convergence_job, robustness_job
from ..session.provenance import provenance
from .analysis_window import AnalysisWindow


def applied_message(index: int, origin: str, session, before: dict) -> str:
    """What an analysis click applied, and which of the user's own corruptions it replaced."""
    active = [c.text(m) for m, c in session.corruptions.items() if c.active]
    solver = session.solver
    text = (f"Opened sample {index} as in {origin}: {', '.join(active) or 'every modality clean'}; solver "
            f"{solver.solver}, max_iter {solver.max_iter}, tol {solver.tol:g}")
    replaced = [c.text(m) for m, c in before.items() if session.corruptions.get(m) != c]
    if replaced:
        text += f" (replaced {', '.join(replaced)})"
    return text + ". Edit › Undo goes back."


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
            self.status.show_message("The model is still loading: start the analysis once it has solved this sample."
                                     if s.preview is not None else "Open a checkpoint and a dataset first.", True)
            return None
        if kind == "convergence" and not s.info.is_deq:
            self.status.show_message(f"A {s.info.fusion} model has no solver: there are no convergence statistics.",
                                     True)
            return None
        job = (robustness_job(s.engine, s.split, kinds=kinds) if kind == "robustness"
               else convergence_job(s.engine, s.split))
        record = provenance(s.checkpoint, s.dataset, None, what=f"analysis {kind}", device=s.engine.device)
        record["settings"] = job.settings
        window = AnalysisWindow(job.start(), kind, record, source=s.engine, solver=s.info.solver_defaults)
        window.open_sample.connect(self.open_sample_with)
        self.windows = [w for w in self.windows if w.isVisible()] + [window]
        window.show()
        return window

    def current_sweep(self) -> AnalysisWindow | None:
        """The newest open robustness sweep of the model that is loaded now, if any."""
        sweeps = [w for w in self.windows if w.kind == "robustness" and w.result is not None and not w.stale
                  and w.isVisible()]
        return sweeps[-1] if sweeps else None

    def open_sample_with(self, index: int, setting=None) -> None:
        """Show sample ``index``. ``setting``: a dict of modality → Corruption (exactly those, the others clean), or
        an analysis point's ``{"corruptions", "solver", "origin"}``: its corruptions and its solver settings, and a
        message saying what was applied and what it replaced (Edit › Undo puts it back)."""
        s = self.session
        if not s.ready or not 0 <= index < len(s.dataset):
            return
        if setting is not None and "corruptions" not in setting:
            setting = {"corruptions": setting}
        corruptions = (setting or {}).get("corruptions")
        solver = (setting or {}).get("solver") if s.info.is_deq else None
        if corruptions is not None and any(m not in s.corruptions for m in corruptions):
            return
        before = {m: c for m, c in s.corruptions.items() if c.active}
        with s.changes():
            if corruptions is not None:
                s.set_corruptions({m: corruptions.get(m, Corruption(c.kind, 0.0, c.seed))
                                   for m, c in s.corruptions.items()})
            if solver is not None:
                s.set_solver(solver)
            s.set_sample(index)
        if setting is not None and setting.get("origin"):
            self.status.show_message(applied_message(index, setting["origin"], s, before), False)
        self.window.raise_()
        self.window.activateWindow()

    def close_all(self) -> None:
        for win in self.windows:
            win.close()
