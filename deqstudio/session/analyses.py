"""Dataset-scale analyses run for the studio on a background thread, with progress and cancel.

A job polls nothing itself: the window reads ``progress`` and ``done`` on a timer. Cancelling keeps
whatever the analysis had finished (its result has ``complete = False``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..core.solvers.registry import SOLVER_NAMES
from .threads import process_threads, use_threads


class AnalysisJob:
    def __init__(self, title: str, work: Callable[[Callable[[float], None], Callable[[], bool]], object],
                 settings: dict | None = None) -> None:
        self.title = title
        self.settings = dict(settings or {})  # what the analysis runs with, for its provenance
        self._work = work
        self._cancel = threading.Event()
        self.progress = 0.0
        self.result = None
        self.error: str = ""
        self.seconds = 0.0
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.threads = process_threads()  # read now: what this thread count is, whatever another thread set

    def start(self) -> "AnalysisJob":
        self._thread = threading.Thread(target=self._run, name=f"deqstudio-{self.title}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            use_threads(self.threads)
            self.result = self._work(self._set_progress, self._cancel.is_set)
        except Exception as exc:  # noqa: BLE001 — shown to the user as a message
            self.error = f"{self.title} failed: {exc}"
        finally:
            self.seconds = time.perf_counter() - t0
            self._done.set()

    def _set_progress(self, fraction: float) -> None:
        self.progress = float(fraction)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


def _evaluator(engine):
    """An evaluator on a copy of the engine's model, taken now (on the UI thread): the studio may move its
    model to another device or load another one while the analysis runs on its own thread."""
    from ..diagnostics.evaluation import Evaluator

    return Evaluator(engine.adapter.copy(), engine.dataset)


def _model_name(engine) -> str:
    path = engine.adapter.source.path
    return Path(path).name if path else engine.adapter.name


def robustness_job(engine, split: str = "test", kinds=None, modalities=None) -> AnalysisJob:
    """Accuracy, steps and predicted noise vs severity for each modality (and kind)."""
    from ..diagnostics.robustness import robustness_sweep

    evaluator = _evaluator(engine)

    def work(progress, cancel):
        return robustness_sweep(evaluator, modalities=modalities, kinds=kinds, split=split,
                                model_name=_model_name(engine), progress=progress, cancel=cancel)

    from ..diagnostics.robustness import LEVELS

    settings = {"split": split, "modalities": list(modalities) if modalities else "all",
                "kinds": list(kinds) if kinds else ["gaussian"], "levels": list(LEVELS), "seed": 0,
                "solver": "the model's own settings"}
    return AnalysisJob("robustness sweep", work, settings)


def convergence_job(engine, split: str = "test", solvers=SOLVER_NAMES, max_iter: int = 100) -> AnalysisJob:
    """Steps to converge and final residuals per solver over a split."""
    from ..diagnostics.convergence import convergence_stats

    evaluator = _evaluator(engine)

    def work(progress, cancel):
        return convergence_stats(evaluator, solvers=solvers, split=split, max_iter=max_iter,
                                 model_name=_model_name(engine), progress=progress, cancel=cancel)

    return AnalysisJob("convergence statistics", work,
                       {"split": split, "solvers": list(solvers), "max_iter": max_iter, "tol": "the model's own"})
