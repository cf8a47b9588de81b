"""The studio's responsiveness, measured through the real window (`deqstudio bench` → ``gui``).

slider_to_plot_ms: a corruption slider is moved programmatically (``QSlider.setValue``, as a drag
delivers it) and the clock stops when the result of that value has been painted by every plot, in
the paint the event loop does for the user (nothing is forced: a forced repaint is followed by the
event loop's own, and that second paint would compete with the next solve). The samples table is complete
before the first move (it fills in the background after the first plot). playback_fps: frames per second of
stepping the scrubber through the stored trace with every plot repainted per frame.

window_shown_s and first_plot_s: a child ``deqstudio gui`` process (offscreen, with a config folder of its own)
reports the wall-clock time its window was shown and the time its first solved result was painted (the start-up
helper's, ``session.first_solve``, where one is used); the clock starts just before the process is spawned, so both
include Python's start and every import. table_fill_s: open
to the samples table complete, in this process. peak_rss_mb: the peak resident memory (MiB) of a child
``deqstudio gui --screenshot`` process, which shows the window, plots the first solve, fills the whole samples table
(and, for a big dataset without cached statistics, runs the statistics pass meanwhile) and saves the picture: the
high-water mark of that program's own memory (``diagnostics.child_memory``: not ``ru_maxrss``, which counts the
pages the child was forked with); None where the system has no ``/proc``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

from PySide6 import QtCore

SHOWN_MARKER = "DEQSTUDIO_WINDOW_SHOWN_AT"
FIRST_PLOT_MARKER = "DEQSTUDIO_FIRST_PLOT_AT"  # as gui.app prints it (not imported: that module starts the clock)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _files_args(checkpoint=None, dataset=None) -> list[str]:
    return [*(["--checkpoint", str(checkpoint)] if checkpoint else []), *(["--dataset", str(dataset)] if dataset else [])]


def startup_seconds(repeats: int = 3, checkpoint=None, dataset=None, timeout: float = 300.0) -> tuple[float, float]:
    """Medians over ``repeats`` fresh processes of spawn → window shown and spawn → first solve painted."""
    shown, plotted = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, **{SHOWN_MARKER: "1", FIRST_PLOT_MARKER: "1", "DEQSTUDIO_CONFIG_DIR": tmp,
                                      "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")})
            start = time.time()
            proc = subprocess.Popen([sys.executable, "-m", "deqstudio", "gui", *_files_args(checkpoint, dataset)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                marks = _read_markers(proc, start, timeout)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if SHOWN_MARKER in marks:
                shown.append(marks[SHOWN_MARKER])
            if FIRST_PLOT_MARKER in marks:
                plotted.append(marks[FIRST_PLOT_MARKER])
    if not shown or not plotted:
        raise RuntimeError("the studio process did not report its window and its first plot")
    return statistics.median(shown), statistics.median(plotted)


def window_peak_rss_mb(checkpoint=None, dataset=None, timeout: float = 600.0) -> float | None:
    """Peak resident memory (MiB) of a child ``deqstudio gui --screenshot`` process (see the module docstring)."""
    from ..diagnostics.child_memory import wait_with_peak_rss

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, DEQSTUDIO_CONFIG_DIR=tmp,
                   QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
        proc = subprocess.Popen([sys.executable, "-m", "deqstudio", "gui", *_files_args(checkpoint, dataset),
                                 "--screenshot", os.path.join(tmp, "window.png")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak = wait_with_peak_rss(proc, timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"the studio process for the memory measurement exited with {proc.returncode}")
        return peak


def _read_markers(proc, start: float, timeout: float) -> dict:
    """Marker lines of the child's output until the first plot (or its exit, or the timeout)."""
    import selectors

    marks: dict = {}
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.time() + timeout
        while FIRST_PLOT_MARKER not in marks and time.time() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.time())):
                break
            line = proc.stdout.readline()
            if not line:
                break
            name, _, value = line.strip().partition("=")
            if name in (SHOWN_MARKER, FIRST_PLOT_MARKER):
                marks[name] = float(value) - start
    return marks


def paint_targets(window) -> list:
    """(widget, plot) pairs: the widgets whose paint shows each plot (graphics views paint in viewports)."""
    targets = []
    for plot in window.plots:
        parts = [plot.table, plot.plot] if hasattr(plot, "table") else [plot]
        targets.extend((p.viewport() if hasattr(p, "viewport") else p, plot) for p in parts)
    return targets


class _PaintWatch(QtCore.QObject):
    """Calls ``on_all_painted`` once every armed widget has been painted while its plot shows a wanted result."""

    def __init__(self, targets: list, on_all_painted) -> None:
        super().__init__()
        self.targets = targets
        self.owner = {id(w): plot for w, plot in targets}
        self.pending: set = set()
        self.wanted = None
        self.on_all_painted = on_all_painted
        for w, _ in targets:
            w.installEventFilter(self)

    def arm(self, wanted) -> None:
        """``wanted(result)`` says whether a plot holding ``result`` shows what is waited for."""
        self.wanted = wanted
        self.pending = {id(w) for w, _ in self.targets if w.isVisible()}

    def eventFilter(self, obj, event):  # noqa: N802
        if self.pending and event.type() == QtCore.QEvent.Type.Paint and id(obj) in self.pending:
            result = self.owner[id(obj)].result
            if result is not None and self.wanted(result):
                self.pending.discard(id(obj))
                if not self.pending:
                    # the filter runs before the paint; the loop's next callback runs after it
                    asyncio.get_event_loop().call_soon(self.on_all_painted)
        return False

    def remove(self) -> None:
        for w, _ in self.targets:
            w.removeEventFilter(self)


def _draw_now(window) -> None:
    """Paint every plot synchronously (a graphics view paints in its viewport)."""
    for plot in window.plots:
        target = plot.viewport() if hasattr(plot, "viewport") else plot
        target.repaint()


async def _measure(window, app, moves: int, frames: int) -> dict:
    from .panels import SLIDER_SCALE

    await window.runner.wait_idle(timeout=120)
    name = window.session.info.modality_names[0]
    slider = window.corruption.controls[name].slider
    done: dict = {}

    def painted():
        done["at"] = time.perf_counter()
        if "drawn" in done and not done["drawn"].done():
            done["drawn"].set_result(None)

    watch = _PaintWatch(paint_targets(window), painted)
    latencies = []
    try:
        for i in range(moves):
            value = int((0.5 + (i % 9) * 0.5) * SLIDER_SCALE)  # severities 0.5 … 4.5, never twice in a row
            done.clear()
            done["target"] = value / SLIDER_SCALE
            done["drawn"] = asyncio.get_event_loop().create_future()
            watch.arm(lambda result, target=done["target"]: result.severities.get(name) == target)
            t0 = time.perf_counter()
            slider.setValue(value)
            await asyncio.wait_for(done["drawn"], timeout=60)
            latencies.append((done["at"] - t0) * 1e3)
    finally:
        watch.remove()
    steps = window.scrubber.steps
    t0 = time.perf_counter()
    for k in range(frames):
        window.scrubber.set_value(k % steps)
        _draw_now(window)
    fps = frames / (time.perf_counter() - t0)
    return {
        "slider_to_plot_ms_p50": round(_percentile(latencies, 50), 2),
        "slider_to_plot_ms_p95": round(_percentile(latencies, 95), 2),
        "slider_moves": moves,
        "playback_fps": round(fps, 1),
        "playback_frames": frames,
        "solver_steps_per_frame_set": steps,
    }


def bench_gui(moves: int = 100, frames: int = 300, shown_repeats: int = 3, checkpoint=None, dataset=None) -> dict:
    """Open a model and dataset (the default ones unless given) in a real window (offscreen without a display)
    and measure it.

    A measurement that fails leaves ``error`` in the result instead of the figures."""
    import qasync

    from ..paths import default_checkpoint, default_dataset
    from .app import _application, wait_for_table
    from .main_window import MainWindow

    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        shown, first_plot = startup_seconds(shown_repeats, checkpoint, dataset)
        peak_rss = window_peak_rss_mb(checkpoint, dataset)
    except (RuntimeError, OSError) as exc:
        return {"error": str(exc)}
    app = _application()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(remember=False)
    window.resize(1500, 940)
    window.show()
    result: dict = {}

    async def run():
        try:
            t0 = time.perf_counter()
            await window.open_files(checkpoint or default_checkpoint(), dataset or default_dataset())
            if not window.session.ready:
                raise RuntimeError(f"the model did not open: {window.last_error}")
            if not await wait_for_table(window, timeout=600):
                raise RuntimeError("the samples table did not fill within 10 minutes")
            result["table_fill_s"] = round(time.perf_counter() - t0, 3)
            result.update(await _measure(window, app, moves, frames))
            result["device"] = window.session.result.device
        except Exception as exc:  # noqa: BLE001 — reported by the caller as one line, never lost in the task
            result["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            window.close()
            loop.stop()

    with loop:
        loop.create_task(run())
        loop.run_forever()
    result["window_shown_s"] = round(shown, 3)
    result["first_plot_s"] = round(first_plot, 3)
    result["peak_rss_mb"] = None if peak_rss is None else round(peak_rss, 1)
    result["platform"] = app.platformName()
    return result
