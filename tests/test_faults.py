"""Numerical faults, GPU fallback, load and closing: reported, drawn, and the next solve is fine."""

import asyncio
import json
import os

import numpy as np
import pytest
import torch

from deqstudio.gui.panels import SLIDER_SCALE
from deqstudio.io.checkpoint import load_checkpoint, save_checkpoint
from deqstudio.io.dataset import read_dataset, write_dataset


def _idle(qtbot, win, timeout=60000):
    qtbot.waitUntil(lambda: not win.runner.busy, timeout=timeout)


def _open(qtbot, win, checkpoint=None, dataset=None):
    done = asyncio.ensure_future(win.open_files(checkpoint, dataset))
    qtbot.waitUntil(done.done, timeout=60000)
    _idle(qtbot, win)
    return done.result()


@pytest.fixture(scope="module")
def diverging_checkpoint(small_files, tmp_path_factory):
    """The small checkpoint with its fusion parameters scaled until no test sample converges.

    Picked by behaviour: which scaling breaks the contraction depends on the trained weights (GroupNorm
    makes the map nearly scale-invariant), so each factor is tried on every test sample, solved alone
    with the studio's default solver settings, and the first under which none converges is kept.
    """
    from deqstudio.core.solvers import SolverSettings

    ds = read_dataset(small_files[1])
    names = load_checkpoint(small_files[0]).config.modality_names
    settings = SolverSettings()  # the studio's default solver settings
    samples = [[torch.from_numpy(ds.modalities[n].data[i : i + 1]) for n in names] for i in ds.split("test")]
    for factor in (12.0, -12.0, 50.0, -50.0):
        ck = load_checkpoint(small_files[0])
        with torch.no_grad():
            for p in ck.model.fusion.parameters():
                p.mul_(factor)  # far from a contraction
            if not any(bool(ck.model(x, settings=settings).trace.converged[0]) for x in samples):
                break
    else:
        pytest.fail("no scaling of the fusion parameters keeps every test sample from converging")
    path = tmp_path_factory.mktemp("faults") / "diverging.pt"
    return save_checkpoint(path, ck.model, metrics=ck.metrics, dataset=ck.dataset, dependency=ck.dependency)


@pytest.fixture(scope="module")
def overflowing_dataset(small_files, tmp_path_factory):
    ds = read_dataset(small_files[1])
    first = int(ds.split("test")[0])
    ds.modalities["strong"].data[first] = 3.0e38  # finite in the file, overflows once normalised
    path = tmp_path_factory.mktemp("faults") / "overflow.h5"
    return write_dataset(ds, path), first


def _assert_failure_is_shown(win, run):
    """What the user sees of a solve that did not converge: the reason and the steps it took."""
    assert not run.converged and run.nstep > 0
    assert f"{run.nstep} steps · NOT converged ({run.reason})" in win.status_solve.text()
    assert win.banner.isVisible() and f"did not converge on this input: {run.reason} after {run.nstep} steps" in win.banner.text()
    if run.reason == "max_iter":
        assert run.nstep == win.session.result.request.solver.max_iter


def test_a_diverging_model_is_reported_drawn_and_the_next_solve_is_fine(window, qtbot, diverging_checkpoint, small_files):
    assert _open(qtbot, window, checkpoint=diverging_checkpoint)
    run = window.session.result.corrupted
    _assert_failure_is_shown(window, run)
    x, y = window.residual.series("fused")
    np.testing.assert_array_equal(x, np.arange(1, run.nstep + 1))  # the steps it took are drawn
    np.testing.assert_array_equal(y, np.clip(run.block_rel[:, -1], 1e-12, None))
    assert _open(qtbot, window, checkpoint=small_files[0])
    assert window.session.result.corrupted.converged and not window.banner.isVisible()


def test_nan_in_the_middle_of_a_solve_is_a_reason_not_a_crash(window, qtbot, overflowing_dataset, converging_sample,
                                                              show_sample):
    path, sample = overflowing_dataset
    assert _open(qtbot, window, dataset=path)
    run = show_sample(window, qtbot, sample).corrupted
    assert run.reason in ("non-finite", "diverged")
    _assert_failure_is_shown(window, run)
    # the next sample is solved as usual: one the model converges on (chosen by that, not by position)
    other = converging_sample(window, qtbot, exclude=[sample])
    run = show_sample(window, qtbot, other).corrupted
    assert run.converged and np.isfinite(run.rel).all()
    assert f"{run.nstep} steps · converged" in window.status_solve.text() and not window.banner.isVisible()


def test_a_singular_anderson_system_still_solves(window, qtbot):
    panel = window.solver_panel
    panel.options["lam"].setText("0")
    panel.options["lam"].editingFinished.emit()  # as leaving the field or pressing Enter does
    panel.options["m"].setValue(10)
    qtbot.waitUntil(lambda: window.session.result.request.solver.option_dict["lam"] == 0.0, timeout=30000)
    _idle(qtbot, window)
    run = window.session.result.corrupted
    assert run.nstep > 0 and np.isfinite(run.rel).all()
    state = "converged" if run.converged else f"NOT converged ({run.reason})"
    assert f"{run.nstep} steps · {state}" in window.status_solve.text()


def test_gpu_out_of_memory_falls_back_to_the_cpu_with_a_notice(window, qtbot, monkeypatch):
    model = window.session.engine.adapter.model
    real_forward = model.forward
    calls = {"n": 0}

    def forward_once_out_of_memory(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward_once_out_of_memory)
    window.corruption.controls["weak"].slider.setValue(2 * SLIDER_SCALE)
    qtbot.waitUntil(lambda: window.session.result.severities["weak"] == 2.0, timeout=30000)
    _idle(qtbot, window)
    assert calls["n"] >= 2 and window.session.result.device == "cpu"
    assert "ran out of memory" in window.session.result.notice
    assert "ran out of memory" in window.statusBar().currentMessage()


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_slider_changes_leave_no_backlog_and_no_growing_memory(window, qtbot, count_solves, capsys):
    """Bursts of 1,000 changes collapse to at most two solves, and hundreds of real solves (each result
    waited for and drawn) leave resident memory flat."""
    slider = window.corruption.controls["weak"].slider  # a light modality: quick solves keep the test short
    solves = count_solves(window)
    delivered = []
    window.session.result_changed.connect(delivered.append)

    def burst(offset) -> int:
        before, shown = solves.started, len(delivered)
        for i in range(1000):
            slider.setValue(((i + offset) % 50) * SLIDER_SCALE // 10)
        slider.setValue(37 * SLIDER_SCALE // 10)
        _idle(qtbot, window)
        # one solve in flight plus one waiting; the stale one's result is dropped, the last value's drawn
        assert solves.started - before <= 2 and len(delivered) - shown == 1
        assert window.session.result.severities["weak"] == 3.7
        return solves.started - before

    def one_at_a_time(n: int) -> int:
        before = solves.started
        for i in range(n):
            value = 11 + i % 80  # severities 0.11 … 0.90, never the same twice in a row, never snapped
            slider.setValue(value)
            qtbot.waitUntil(lambda value=value: delivered[-1].severities["weak"] == value / SLIDER_SCALE,
                            timeout=30000)
        _idle(qtbot, window)
        assert solves.started - before == n  # every change was solved and drawn
        return n

    burst(0)  # warm caches and allocator
    one_at_a_time(50)
    rss_1 = _rss_mb()
    changes, solved = 0, 0
    for offset in (1, 2):
        solved += burst(offset) + one_at_a_time(250)
        changes += 1001 + 250
    rss_2 = _rss_mb()
    assert solved >= 500 and solves.most_at_once == 1  # one worker: never two solves at once
    assert rss_2 - rss_1 < 40, (rss_1, rss_2)
    with capsys.disabled():
        print(f"\n  RSS {rss_1:.1f} MB after warm-up, {rss_2:.1f} MB after {changes} more changes and {solved} solves")


def test_closing_the_window_during_a_solve_waits_for_it_and_drops_its_result(qtbot, event_loop_qt, small_files, tmp_path,
                                                                            monkeypatch):
    import threading
    import time

    from deqstudio.gui.main_window import MainWindow
    from deqstudio.session.recent import RecentFiles

    win = MainWindow(recent=RecentFiles(tmp_path / "recent.json"))
    qtbot.addWidget(win)
    win.show()
    assert _open(qtbot, win, *small_files)
    shown = win.session.result
    engine = win.session.engine
    real_solve = engine.solve
    started, finished = threading.Event(), threading.Event()

    def slow_solve(request):
        started.set()
        time.sleep(0.3)  # long enough to close the window in the middle of it
        try:
            return real_solve(request)
        finally:
            finished.set()

    monkeypatch.setattr(engine, "solve", slow_solve)
    win.corruption.controls["strong"].slider.setValue(3 * SLIDER_SCALE)
    qtbot.waitUntil(started.is_set, timeout=30000)
    win.close()
    assert finished.is_set()  # close waited for the solve in flight
    qtbot.wait(100)  # let the finished solve come back to the (closed) window
    assert win.session.result is shown  # and its result was dropped, not drawn
    saved = json.loads((tmp_path / "last-session.json").read_text())
    assert saved["corruptions"]["strong"]["severity"] == 3.0


def test_the_last_session_comes_back_after_a_restart(qtbot, event_loop_qt, small_files, tmp_path, show_sample):
    from deqstudio.gui.main_window import MainWindow
    from deqstudio.session.recent import RecentFiles

    first = MainWindow(recent=RecentFiles(tmp_path / "recent.json"))
    qtbot.addWidget(first)
    assert _open(qtbot, first, *small_files)
    sample = next(int(i) for i in first.session.dataset.split("test") if i != first.session.sample)  # not the one shown
    show_sample(first, qtbot, sample)
    first.corruption.controls["picture"].kind.setCurrentText("blur")
    first.corruption.controls["picture"].slider.setValue(2 * SLIDER_SCALE)
    qtbot.waitUntil(lambda: first.session.result.severities["picture"] == 2.0, timeout=30000)
    _idle(qtbot, first)
    first.close()

    second = MainWindow(recent=RecentFiles(tmp_path / "recent.json"))
    qtbot.addWidget(second)
    assert str(small_files[0].resolve()) in second.recent.paths()
    assert second.restore_last_session()
    qtbot.waitUntil(lambda: second.session.result is not None and second.session.result.request.sample == sample,
                    timeout=60000)
    _idle(qtbot, second)
    assert second.session.corruptions["picture"].kind == "blur"
    assert second.session.result.severities["picture"] == 2.0
    assert second.corruption.controls["picture"].kind.currentText() == "blur"  # and the panel shows it
    second.close()


@pytest.mark.parametrize("content, words", [
    ("{not json", "not a readable session file"),
    ('{"format": "something-else"}', "not a DEQ Studio session file"),
    ('{"format": "deqstudio-session", "version": 99}', "version 99"),
    ('{"format": "deqstudio-session", "version": 1, "solver": {"solver": "newton"}}', "unknown solver"),
    ('{"format": "deqstudio-session", "version": 1, "solver": {"warp": 9}}', "invalid settings"),
    ('{"format": "deqstudio-session", "version": 1, "checkpoint": "missing.pt"}', "missing.pt"),
])
def test_a_bad_session_file_is_a_message_and_what_was_open_stays(window, qtbot, tmp_path, content, words):
    before = (window.session.checkpoint.path, window.session.sample, window.session.solver)
    path = tmp_path / "bad-session.json"
    path.write_text(content)
    window.load_session(str(path))
    assert window.banner.isVisible() and words in window.banner.text()
    assert (window.session.checkpoint.path, window.session.sample, window.session.solver) == before
