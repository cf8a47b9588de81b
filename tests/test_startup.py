"""Start-up: the files named on the command line are read on the solve worker while the window is built, and the
window then uses that reading (once) — with the same messages as opening them from the menu."""

from __future__ import annotations

import asyncio
import threading

import pytest

from deqstudio.errors import LoadError
from deqstudio.session.state import Session


def test_prepare_early_reads_on_the_worker_and_is_taken_once_for_the_same_files(small_files):
    ck, data = small_files
    session = Session()
    seen = []
    real = session.prepare

    def prepare(*paths):
        seen.append(threading.current_thread().name)
        return real(*paths)

    session.prepare = prepare
    session.prepare_early(ck, data)
    assert session.take_early(ck, None) is None  # other files: not this reading (and it is given up)
    session.prepare_early(ck, data)
    future = session.take_early(ck, data)
    _checkpoint, dataset, engine = future.result(timeout=60)
    assert engine is not None and dataset.name == "synthetic-0"
    assert session.take_early(ck, data) is None  # once
    assert all(name.startswith("deqstudio-solve") for name in seen)
    session.stop_solving()


def test_a_bad_file_read_early_is_the_same_banner_as_from_the_menu(qtbot, event_loop_qt, small_files, tmp_path):
    from deqstudio.gui.main_window import MainWindow
    from deqstudio.session.recent import RecentFiles

    ck, data = small_files
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    session = Session()
    session.prepare_early(bad, data)
    win = MainWindow(session=session, recent=RecentFiles(tmp_path / "recent.json"))
    qtbot.addWidget(win)
    win.show()
    opening = asyncio.ensure_future(win.open_files(bad, data))
    qtbot.waitUntil(opening.done, timeout=60000)
    assert opening.result() is False
    assert win.banner.isVisible() and "Could not open it" in win.banner.text() and "model.pt" in win.banner.text()
    assert not win.session.ready
    # and the window still opens good files afterwards, read the usual way
    opening = asyncio.ensure_future(win.open_files(ck, data))
    qtbot.waitUntil(lambda: opening.done() and win.session.result is not None and not win.runner.busy,
                    timeout=60000)
    assert opening.result() is True and not win.banner.isVisible()
    win.close()


def test_the_synchronous_runner_starts_exclusive_work_at_once():
    from deqstudio.session.runner import Runner

    runner = Runner(lambda r: r, lambda r: None, synchronous=True)
    assert runner.start_exclusive(lambda x: x + 1, 1).result(timeout=0) == 2
    failed = runner.start_exclusive(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failed.result(timeout=0)
    with pytest.raises(LoadError):  # an error type of ours travels unchanged
        runner.start_exclusive(lambda: (_ for _ in ()).throw(LoadError("x"))).result(timeout=0)
