"""Start the studio: a QApplication on a qasync event loop, the main window, and the files to open."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time

LAUNCHED_AT = time.perf_counter()


def _application():
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("DEQ Studio")
    app.setOrganizationName("deqstudio")
    return app


FIRST_PLOT_MARKER = "DEQSTUDIO_FIRST_PLOT_AT"


def watch_first_plot(window) -> None:
    """Note when the first solved result is painted (``window.first_plot_s``, seconds since launch); with
    $DEQSTUDIO_FIRST_PLOT_AT set, also print the wall-clock time (``deqstudio bench`` reads it)."""
    from .painted import PaintWatch

    def painted():
        window.first_plot_s = time.perf_counter() - LAUNCHED_AT
        if os.environ.get(FIRST_PLOT_MARKER):
            print(f"{FIRST_PLOT_MARKER}={time.time()}", flush=True)

    window.first_plot_s = None
    window._first_plot_watch = PaintWatch(window.residual.viewport(), painted,
                                          when=lambda: window.residual.result is not None)


async def wait_for_table(window, timeout: float = 300.0) -> bool:
    """Wait until the samples table is complete (it fills in the background once the window shows it)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        table = window.session.table
        if table is None or table.complete:
            return True
        window.session.filler.request()
        await asyncio.sleep(0.05)
    return False


async def prepare_window(window, checkpoint, dataset, session_path=None, sample=None, corruptions=(), step=None,
                         whole_table=False):
    """Open files and apply settings, then wait for the first solve to finish (and the samples table, when
    ``whole_table``)."""
    from ..core.corruptions import Corruption

    if session_path:
        window.load_session(session_path)
    else:
        await window.open_files(checkpoint, dataset)
    s = window.session
    if not s.ready:
        return False
    if sample is not None:
        s.set_sample(sample)
    for text in corruptions:
        modality, corruption = Corruption.parse(text)
        s.set_corruption(modality, corruption)
    await window.runner.wait_idle(timeout=120)
    if s.equilibrium_runner is not None:  # the Stability panel's analysis follows the solve
        await s.equilibrium_runner.wait_idle(timeout=120)
    if whole_table:
        await wait_for_table(window)
        await window.runner.wait_idle(timeout=120)
    if step is not None and s.result is not None:
        window.scrubber.set_value(step - 1 if step > 0 else window.scrubber.steps - 1)
    return True


def _save_screenshot(window, path) -> int:
    """The window as a PNG, written atomically; a write fault is one error line and exit 2."""
    from PySide6 import QtCore

    from ..io import atomic
    from ..io.guard import printable

    buf = QtCore.QBuffer()
    buf.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    if not window.grab().save(buf, "PNG"):
        print(f"error: cannot write {printable(path)}: the PNG encoder failed", file=sys.stderr)
        return 2
    try:
        atomic.write_bytes(path, bytes(buf.data()))
    except atomic.WriteError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return 2
    print(f"saved {path}")
    return 0


def run_gui(checkpoint=None, dataset=None, session_path=None, screenshot=None, sample=None, corruptions=(),
            step=None, width=1500, height=940, allow_plugins=(), first=None) -> int:
    """The studio's window on these files (the bundled demo by default). ``first``: a ``session.first_solve``
    helper already solving them, whose result the window plots while its own engine loads."""
    from ..paths import default_checkpoint, default_dataset
    from ..session.state import Session

    no_display = not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    if screenshot and no_display:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if no_display and not os.environ.get("QT_QPA_PLATFORM"):  # Qt would abort with a plugin message
        print("error: no display to open the window on (DISPLAY is not set). Run it on a desktop, under "
              "xvfb-run, or render it offscreen with: deqstudio gui --screenshot OUT.png", file=sys.stderr)
        return 2
    if checkpoint is None and dataset is None and session_path is None:
        checkpoint, dataset = default_checkpoint(), default_dataset()
    elif session_path is None:
        checkpoint = checkpoint or default_checkpoint()
        dataset = dataset or default_dataset()
    # oneDNN keeps a primitive per batch shape it met: the samples table's chunks of changing sizes held ~150 MB on a
    # CNN over 64x64 images; 16 kept primitives cost nothing measurable (set before the worker imports torch)
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")
    session = Session()
    session.allowed_plugins = frozenset(allow_plugins)  # --allow-plugin: consent given on the command line
    if session_path is None:
        session.prepare_early(checkpoint, dataset, first=first)

    import qasync

    from .main_window import MainWindow

    app = _application()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(session=session, remember=not screenshot)
    window.resize(width, height)
    watch_first_plot(window)
    window.show()
    app.processEvents()
    window.window_shown_s = time.perf_counter() - LAUNCHED_AT
    if os.environ.get("DEQSTUDIO_WINDOW_SHOWN_AT"):
        print(f"DEQSTUDIO_WINDOW_SHOWN_AT={time.time()}", flush=True)
    exit_code = 0

    async def start():
        nonlocal exit_code
        try:
            ok = await prepare_window(window, checkpoint, dataset, session_path, sample, corruptions, step,
                                      whole_table=bool(screenshot))
        except ValueError as exc:
            window.show_message(str(exc), True)
            ok = False
        if screenshot:
            # let a solve in flight finish and the loop paint the window (a nested processEvents() inside this
            # task would step the runner's task within it, which asyncio refuses)
            with contextlib.suppress(TimeoutError):
                await window.runner.wait_idle(timeout=120)
            await asyncio.sleep(0.05)
            if not ok:  # a bad argument or file: the error line and exit 2, like every command; no picture
                from ..io.guard import printable

                reason = window.last_error or "nothing could be opened"
                print(f"error: {printable(reason)}", file=sys.stderr)
                exit_code = 2
            else:
                exit_code = _save_screenshot(window, screenshot)
            window.close()
            app.quit()

    with loop:
        loop.create_task(start())
        loop.run_forever()
    return exit_code
