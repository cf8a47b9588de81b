"""Start-up: the files named on the command line are read on the solve worker while the window is built, and the
window then uses that reading (once) — with the same messages as opening them from the menu. Or a helper process
solves the first sample meanwhile, and the window plots its result while its own engine loads."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
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


# -- the first solve from a helper process (the window's first plot while its own engine loads) ------------------
def _wait(future, timeout=120):
    return future.result(timeout=timeout)


def test_the_helper_solves_exactly_what_the_window_would_show_first(small_files):
    from deqstudio.session.first_solve import FirstSolve
    from deqstudio.session.threads import use_threads

    ck, data = small_files
    first = FirstSolve(ck, data)
    outcome = _wait(first.future)
    assert outcome is not None and not first.running
    info, result, devices = outcome
    session = Session()
    session.adopt(*session.prepare(ck, data))
    use_threads(1)  # as the studio's solve worker and the helper run (the fixture restores the count)
    own = session.engine.solve(session.request())
    assert info == session.info and devices == session.available_devices()
    assert (result.request.sample, result.request.corruptions, result.request.solver) == \
        (own.request.sample, own.request.corruptions, own.request.solver)
    for mine, theirs in ((own.clean, result.clean), (own.corrupted, result.corrupted)):
        assert mine.nstep == theirs.nstep > 0 and mine.best_step == theirs.best_step
        np.testing.assert_allclose(theirs.rel, mine.rel, rtol=1e-6)
        np.testing.assert_allclose(theirs.final_probabilities, mine.final_probabilities, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(theirs.z_star, mine.z_star, rtol=1e-5, atol=1e-7)
    assert result.class_names == own.class_names and result.label == own.label
    session.stop_solving()


_RAN = []


def _record(*args):  # a callable a hostile payload names: it must never run
    _RAN.append(args)
    return "ran"


def test_the_helper_solves_on_the_dataset_the_window_read_and_sent_it(small_files, tmp_path):
    """The window's process reads the dataset (for itself) and hands it to the helper, which never opens the file:
    here it is gone before the helper could have."""
    import shutil

    from deqstudio.session.first_solve import FirstSolve

    ck, data = small_files
    copy = tmp_path / "gone.h5"
    shutil.copyfile(data, copy)
    first = FirstSolve(ck, copy)
    assert first.dataset.result(timeout=60).name == "synthetic-0"
    copy.unlink()
    outcome = _wait(first.future)
    assert outcome is not None and outcome[1].class_names == first.dataset.result().class_names


def test_the_helpers_output_is_read_as_values_and_nothing_else(small_files):
    import pickle

    from deqstudio.session.first_solve import FirstSolve, _ValuesOnly, decode

    ck, data = small_files
    outcome = _wait(FirstSolve(ck, data).future)
    again = decode(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    assert again[0] == outcome[0] and again[2] == outcome[2]
    np.testing.assert_array_equal(again[1].corrupted.rel, outcome[1].corrupted.rel)

    for module, name in (("os", "system"), ("builtins", "eval"), ("torch._utils", "_rebuild_tensor_v2"),
                         (__name__, "_record")):
        with pytest.raises(pickle.UnpicklingError):
            _ValuesOnly(__import__("io").BytesIO(b"")).find_class(module, name)

    class Payload:
        def __reduce__(self):
            return _record, ("device",)

    # well-shaped (a str where a device name goes) and not: neither runs the callable
    for hostile in ((outcome[0], outcome[1], (Payload(),)), Payload(), (outcome[0], outcome[1]), ("x", 1, ())):
        with pytest.raises(pickle.UnpicklingError):
            decode(pickle.dumps(hostile))
    assert _RAN == []


def test_a_helper_on_a_bad_file_gives_nothing_and_stopping_the_session_kills_a_running_helper(small_files,
                                                                                               tmp_path):
    import signal

    from deqstudio.session.first_solve import FirstSolve

    ck, data = small_files
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    assert _wait(FirstSolve(bad, data).future) is None
    session = Session()
    first = FirstSolve(ck, data)
    session.prepare_early(ck, data, first=first)
    session.stop_solving()  # at once: long before the helper has imported torch
    assert _wait(first.future, 30) is None and not first.running
    assert first._proc.returncode == -signal.SIGKILL


def test_the_helper_runs_without_the_working_folder_on_its_import_path(small_files, tmp_path, monkeypatch):
    """A ``deqstudio`` package (or torch.py) in the folder the studio starts from is never what the helper runs."""
    from deqstudio.session.first_solve import FirstSolve

    ck, data = small_files
    fake = tmp_path / "deqstudio" / "session"
    fake.mkdir(parents=True)
    marker = tmp_path / "ran"
    for folder in (fake.parent, fake):
        (folder / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "torch.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    outcome = _wait(FirstSolve(ck, data).future)
    assert outcome is not None and not marker.exists()


def test_the_helper_is_used_for_model_files_on_two_cores_or_more(monkeypatch):
    import os

    from deqstudio.session import first_solve

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert first_solve.applies("models/uci_deq.pt")
    assert not first_solve.applies("plugin:toy")  # a plugin's code runs once, in the window's process
    assert not first_solve.applies(None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert not first_solve.applies("models/uci_deq.pt")  # one core: the helper would only take turns


def test_a_helper_that_takes_too_long_is_stopped_and_the_files_open_the_usual_way(qtbot, event_loop_qt, small_files,
                                                                                  tmp_path, monkeypatch):
    from deqstudio.gui import file_actions
    from deqstudio.gui.main_window import MainWindow
    from deqstudio.session.first_solve import FirstSolve
    from deqstudio.session.recent import RecentFiles

    ck, data = small_files
    monkeypatch.setattr(file_actions, "FIRST_SOLVE_WAIT_S", 0.05)
    session = Session()
    first = FirstSolve(ck, data)
    session.prepare_early(ck, data, first=first)
    win = MainWindow(session=session, recent=RecentFiles(tmp_path / "recent.json"))
    qtbot.addWidget(win)
    win.show()
    opening = asyncio.ensure_future(win.open_files(ck, data))
    qtbot.waitUntil(lambda: opening.done() and session.result is not None and not win.runner.busy, timeout=120000)
    assert opening.result() is True and session.ready and session.preview is None
    assert _wait(first.future, 30) is None and not first.running  # stopped, without a traceback from its reader
    win.close()


def _window_with_held_engine(qtbot, small_files, tmp_path, monkeypatch, fail=False):
    """A window opening ``small_files`` with a start-up helper, its own ``prepare`` held until ``loading`` is set
    (then it raises, with ``fail``)."""
    from deqstudio.errors import LoadError as _LoadError
    from deqstudio.gui import file_actions
    from deqstudio.gui.main_window import MainWindow
    from deqstudio.session.first_solve import FirstSolve
    from deqstudio.session.recent import RecentFiles

    ck, data = small_files
    monkeypatch.setattr(file_actions, "FIRST_SOLVE_WAIT_S", 300.0)  # a slow CI machine never falls back here
    session = Session()
    session.prepare_early(ck, data, first=FirstSolve(ck, data))
    loading = threading.Event()
    real = session.prepare

    def held_prepare(*paths):  # the engine loads only once the test has looked at the window without it
        assert loading.wait(120)
        if fail:
            raise _LoadError(f"{ck.name}: the file changed while the studio started")
        return real(*paths)

    session.prepare = held_prepare
    win = MainWindow(session=session, recent=RecentFiles(tmp_path / "recent.json"))
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    opening = asyncio.ensure_future(win.open_files(ck, data))
    return win, session, loading, opening


def test_the_window_plots_the_helpers_solve_while_its_engine_loads(qtbot, event_loop_qt, small_files, tmp_path,
                                                                  monkeypatch):
    from deqstudio.core.corruptions import Corruption
    from deqstudio.gui.panels import SLIDER_SCALE

    win, session, loading, opening = _window_with_held_engine(qtbot, small_files, tmp_path, monkeypatch)
    try:
        qtbot.waitUntil(lambda: session.preview is not None, timeout=120000)
        assert not session.ready and session.result is not None
        assert win.residual.result is session.result and session.result.clean.nstep > 0
        assert "syn.pt" in win.windowTitle() and "synthetic-0" in win.windowTitle()
        assert "loading the model" in win.statusBar().currentMessage()
        assert set(win.corruption.controls) == {"strong", "weak", "picture"}
        assert "loading the model" in win.browser.summary.text()

        # exporting or saving the session now would record no model: refused, with the reason, nothing written
        out = tmp_path / "residual.png"
        assert win.export_plot("residual", str(out)) is False
        assert "still loading" in win.banner.text() and not out.exists()
        win.files.ask_save_session()  # refused before any file dialog opens
        assert "still loading" in win.banner.text()

        # a change while the engine loads: the plots say they are stale until its solve arrives
        win.corruption.controls["strong"].slider.setValue(3 * SLIDER_SCALE)
        qtbot.waitUntil(lambda: win.view.stale and win.status.busy.isVisible(), timeout=5000)
        assert session.result.severities["strong"] == 0.0
    finally:
        loading.set()
    qtbot.waitUntil(lambda: opening.done() and session.ready and session.result is not None
                    and session.result.severities["strong"] == 3.0 and not win.runner.busy, timeout=120000)
    assert opening.result() is True and session.preview is None
    assert not win.view.stale and not win.status.busy.isVisible()
    assert session.corruptions["strong"] == Corruption("gaussian", 3.0)
    assert win.undo_action.isEnabled()  # the change made while loading is a step to undo
    qtbot.waitUntil(lambda: session.table is not None and session.table.complete, timeout=120000)
    out = tmp_path / "residual.png"
    assert win.export_plot("residual", str(out)) is True and out.exists()
    win.close()


def test_a_model_that_opens_in_the_helper_but_not_in_the_window_leaves_nothing_open(qtbot, event_loop_qt,
                                                                                    small_files, tmp_path, monkeypatch):
    from deqstudio.gui.panels import SLIDER_SCALE

    win, session, loading, opening = _window_with_held_engine(qtbot, small_files, tmp_path, monkeypatch, fail=True)
    try:
        qtbot.waitUntil(lambda: session.preview is not None, timeout=120000)
        win.corruption.controls["strong"].slider.setValue(2 * SLIDER_SCALE)  # owed a solve
        qtbot.waitUntil(lambda: win.status.busy.isVisible(), timeout=5000)
    finally:
        loading.set()
    qtbot.waitUntil(opening.done, timeout=120000)
    assert opening.result() is False
    assert session.preview is None and not session.ready and not session.pending and session.result is None
    assert "Could not open it" in win.banner.text() and "the file changed" in win.banner.text()
    assert not win.status.busy.isVisible() and win.windowTitle() == "DEQ Studio"
    qtbot.waitUntil(lambda: "no samples" in win.browser.summary.text(), timeout=5000)
    assert win.export_plot("residual", str(tmp_path / "r.png")) is False
    win.close()


def test_a_model_opened_while_the_helper_works_is_not_replaced(qtbot, event_loop_qt, small_files, tmp_path,
                                                               monkeypatch):
    """Something opened by the user while the start-up model loads stays; the start-up's own install is dropped."""
    win, session, loading, opening = _window_with_held_engine(qtbot, small_files, tmp_path, monkeypatch)
    try:
        qtbot.waitUntil(lambda: session.preview is not None, timeout=120000)
        ck, data = small_files
        real_prepare = Session.prepare.__get__(session)
        session.install(*real_prepare(ck, data))  # as File › Open does once its files are read
        assert session.preview is None and session.ready
        installed = session.engine
    finally:
        loading.set()
    qtbot.waitUntil(opening.done, timeout=120000)
    assert opening.result() is False and session.engine is installed
    win.close()
