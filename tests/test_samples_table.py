"""The samples table through the real window: the shown sample is solved and drawn first, the table fills in the
background in chunks (progress in the status bar, cancellable, lazy), it follows the current corruption, and a
200,000-sample split opens at once and sorts on what is computed (issue 15 items 2, 3, 8; issue 19 item 2)."""

import asyncio
import time
import tracemalloc

import numpy as np
import pytest
from PySide6 import QtCore

from deqstudio.core.corruptions import Corruption
from deqstudio.gui.panels import SLIDER_SCALE


def _open(window_factory, qtbot, ck, data):
    win = window_factory()
    task = asyncio.ensure_future(win.open_files(ck, data))
    qtbot.waitUntil(task.done, timeout=60000)
    assert task.result() is True
    return win


@pytest.fixture
def bare_window(qtbot, event_loop_qt, tmp_path):
    """``bare_window()``: a studio window with nothing open yet (its own recent-files store)."""
    from deqstudio.gui.main_window import MainWindow
    from deqstudio.session.recent import RecentFiles

    made = []

    def make():
        win = MainWindow(recent=RecentFiles(tmp_path / f"recent{len(made)}.json"), remember=False)
        qtbot.addWidget(win)
        win.resize(1400, 900)
        win.show()
        made.append(win)
        return win

    yield make
    for win in made:
        win.close()


class SlowChunks:
    """Wraps ``Engine.table_chunk``: each chunk takes at least ``delay`` seconds; records each chunk's settings."""

    def __init__(self, engine, delay=0.05):
        self.real, self.delay, self.calls = engine.table_chunk, delay, []
        self.started_at = []

    def __call__(self, ids, settings, corruptions, clean=True):
        self.started_at.append(time.perf_counter())
        self.calls.append((len(ids), settings, dict(corruptions or {})))
        time.sleep(self.delay)
        return self.real(ids, settings, corruptions, clean)


def test_the_first_plot_comes_first_and_the_table_fills_after_it_in_chunks(bare_window, qtbot, small_files,
                                                                           monkeypatch):
    ck, data = small_files
    win = bare_window()
    order = []
    win.session.result_changed.connect(lambda r: order.append("result"))
    win.session.table_progress.connect(lambda t: order.append("chunk") if t is not None and t.computed else None)
    seen = {"bar": 0, "summary": ""}

    def watch(table):
        if table is not None and 0 < table.computed < len(table) and win.status.table_bar.isVisible():
            seen["bar"] = win.status.table_bar.value()
            seen["summary"] = win.browser.summary.text()

    win.session.table_progress.connect(watch)
    from deqstudio.session.engine import Engine

    real_init = Engine.__init__

    def slow_engine(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.table_chunk = SlowChunks(self, delay=0.03)

    monkeypatch.setattr(Engine, "__init__", slow_engine)
    win.session.filler.chunk = 8
    task = asyncio.ensure_future(win.open_files(ck, data))
    qtbot.waitUntil(task.done, timeout=60000)
    table = win.session.table
    n = len(win.session.dataset.split("test"))
    assert win.browser.model.rowCount() == len(table) == n  # every row at once, before any is computed
    qtbot.waitUntil(lambda: table.complete, timeout=60000)
    assert order[0] == "result" and "chunk" in order  # the shown sample was drawn before the first chunk landed
    assert len(win.session.engine.table_chunk.calls) > 1  # in chunks, not one evaluation of the whole split
    assert seen["bar"] > 0 and f"{seen['bar']} of {n} computed" in seen["summary"]  # progress shown as it went
    qtbot.waitUntil(lambda: not win.status.table_bar.isVisible(), timeout=5000)
    assert "computed" not in win.browser.summary.text() and f"{n} samples" in win.browser.summary.text()
    assert all(win.browser.proxy.data(win.browser.proxy.index(r, 4)) != "…" for r in range(n))


def test_stopping_the_table_keeps_what_is_computed_and_it_can_be_resumed(window, qtbot, monkeypatch):
    s = window.session
    qtbot.waitUntil(lambda: s.table.complete, timeout=60000)
    slow = SlowChunks(s.engine, delay=0.05)
    monkeypatch.setattr(s.engine, "table_chunk", slow)
    s.filler.chunk = 8
    window.solver_panel.max_iter.setValue(40)  # a new solver: the table starts over
    qtbot.waitUntil(lambda: s.table.computed > 0 and window.status.table_stop.isVisible(), timeout=30000)
    qtbot.mouseClick(window.status.table_stop, QtCore.Qt.MouseButton.LeftButton)
    qtbot.wait(300)
    done = s.table.computed
    assert 0 < done < len(s.table) and not s.filler.running
    assert "(stopped)" in window.browser.summary.text() and window.browser.resume.isVisible()
    assert not window.status.table_bar.isVisible()
    qtbot.wait(500)
    assert s.table.computed == done  # nothing more is computed while stopped
    qtbot.mouseClick(window.browser.resume, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: s.table.complete, timeout=60000)
    assert not window.browser.resume.isVisible()


def test_the_table_is_recomputed_lazily_only_when_shown_and_never_per_keystroke(window, qtbot, monkeypatch):
    s = window.session
    qtbot.waitUntil(lambda: s.table.complete, timeout=60000)
    slow = SlowChunks(s.engine, delay=0.0)
    monkeypatch.setattr(s.engine, "table_chunk", slow)
    docks = window.docks
    docks.samples.close()  # the samples panel closed: the table is not needed
    qtbot.waitUntil(lambda: not window.browser.isVisible(), timeout=5000)
    window.solver_panel.max_iter.setValue(30)
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30000)
    qtbot.wait(800)
    assert slow.calls == [] and s.table.computed == 0  # stale, but not recomputed while nobody looks at it
    # typing a tolerance and a step limit: nothing applies until Enter, then one solve; the table waits until shown
    tol = window.solver_panel.tol.lineEdit()
    tol.setFocus()
    tol.selectAll()
    requested = []
    s.solve_requested.connect(requested.append)
    qtbot.keyClicks(tol, "1e-5")
    assert requested == [] and s.solver.tol == 1e-4
    qtbot.keyClick(tol, QtCore.Qt.Key.Key_Return)
    assert len(requested) == 1 and s.solver.tol == 1e-5
    spin = window.solver_panel.max_iter
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "45")
    assert len(requested) == 1 and s.solver.max_iter == 30
    qtbot.keyClick(spin, QtCore.Qt.Key.Key_Return)
    assert len(requested) == 2 and s.solver.max_iter == 45
    qtbot.wait(800)
    assert slow.calls == []
    docks.samples.toggleViewAction().trigger()  # View › Samples panel: shown again, computed once, for the final settings
    qtbot.waitUntil(lambda: s.table.complete, timeout=60000)
    assert {(c[1].tol, c[1].max_iter) for c in slow.calls} == {(1e-5, 45)}


def test_the_table_and_its_filters_follow_the_current_corruption_and_never_change_the_shown_sample(window, qtbot):
    s = window.session
    qtbot.waitUntil(lambda: s.table.complete, timeout=60000)
    browser = window.browser
    assert browser.view.isColumnHidden(6) and browser.view.isColumnHidden(7)  # clean: no "now" columns
    window.corruption.controls["strong"].slider.setValue(5 * SLIDER_SCALE)
    qtbot.waitUntil(lambda: s.table.now is not None and s.table.complete and not window.runner.busy, timeout=60000)
    t = s.table
    assert not browser.view.isColumnHidden(6) and not browser.view.isColumnHidden(7)
    assert browser.model.headerData(6, QtCore.Qt.Orientation.Horizontal) == "prediction now"
    assert "strong=gaussian:5" in browser.model.headerData(6, QtCore.Qt.Orientation.Horizontal,
                                                           QtCore.Qt.ItemDataRole.ToolTipRole)
    assert "under strong=gaussian:5" in browser.summary.text()
    shown = s.sample
    result = s.result
    requested = []
    s.solve_requested.connect(requested.append)
    wrong_now = int((t.now.predictions != t.labels).sum())
    wrong_clean = int((t.clean.predictions != t.labels).sum())
    assert wrong_now > wrong_clean  # heavy noise on the informative modality: more mistakes than clean
    browser.mode.setCurrentText("wrong")
    assert browser.proxy.rowCount() == wrong_now  # the filter reads the corrupted columns
    browser.mode.setCurrentText("not converged")
    assert browser.proxy.rowCount() == int((~t.now.converged).sum())
    browser.search.setText("class 1")
    browser.mode.setCurrentText("all")
    browser.search.setText("")
    assert s.sample == shown and s.result is result and requested == []  # filters never change the shown sample
    row = t.row_of(shown)
    proxy_row = int(browser.proxy.inverse[row])
    prediction_now = browser.proxy.data(browser.proxy.index(proxy_row, 6))
    assert prediction_now == s.info.class_names[int(t.now.predictions[row])]
    assert browser.view.selectionModel().isRowSelected(proxy_row, QtCore.QModelIndex())


def _big_pair(tmp_path, n_test=200_000):
    """A 260,000-sample dataset of two small modalities (test split: 200,000) and an untrained small DEQ for it."""
    import torch

    from deqstudio.core.model import FusionModel
    from deqstudio.io.checkpoint import save_checkpoint
    from deqstudio.io.dataset import Dataset, Modality, write_dataset
    from deqstudio.workflows.training import TrainRequest, build_config

    n = n_test + 60_000
    rng = np.random.default_rng(0)
    labels = (np.arange(n) % 3).astype(np.int64)
    mods = {"a": Modality("a", "vector", (labels[:, None] + rng.standard_normal((n, 3))).astype(np.float32)),
            "b": Modality("b", "vector", rng.standard_normal((n, 2)).astype(np.float32))}
    idx = np.arange(n)
    ds = Dataset("big", mods, labels, ("x", "y", "z"),
                 {"train": idx[:50_000], "val": idx[50_000:60_000], "test": idx[60_000:]})
    data = write_dataset(ds, tmp_path / "big.h5", compression=None)
    torch.manual_seed(0)
    model = FusionModel(build_config(ds, TrainRequest(fusion="deq", hidden=8)))
    ck = save_checkpoint(tmp_path / "big.pt", model, dataset=ds.identity())
    return ck, data


def test_a_200000_sample_split_opens_at_once_and_sorts_on_what_is_computed(bare_window, qtbot, tmp_path):
    ck, data = _big_pair(tmp_path)
    win = bare_window()
    tracemalloc.start()
    try:
        task = asyncio.ensure_future(win.open_files(ck, data))
        qtbot.waitUntil(task.done, timeout=120000)
        base, _ = tracemalloc.get_traced_memory()
        assert win.browser.model.rowCount() == 200_000 and win.browser.proxy.rowCount() == 200_000
        s = win.session
        qtbot.waitUntil(lambda: s.table.computed >= 1000, timeout=120000)
        qtbot.mouseClick(win.status.table_stop, QtCore.Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not s.filler.running, timeout=10000)
        t = s.table
        done = t.computed
        assert 0 < done < len(t)
        t0 = time.perf_counter()
        win.browser.view.sortByColumn(4, QtCore.Qt.SortOrder.DescendingOrder)  # steps, largest first
        sort_s = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sort_s < 2.0
    rows = win.browser.proxy.rows
    assert len(rows) == 200_000
    first = rows[:done]
    assert t.clean.done[first].all() and not t.clean.done[rows[done:]].any()  # computed rows first, the rest after
    assert (np.diff(t.clean.steps[first]) <= 0).all()  # sorted by steps, descending
    assert win.browser.proxy.data(win.browser.proxy.index(done, 4)) == "…"
    assert f"{done:,} of 200,000 computed" in win.browser.summary.text()
    assert "sorting and filtering use the computed rows only" in win.browser.summary.text()
    assert peak - base < 60 * 2**20  # a few arrays of the split's length: no object per row
    # the view shows the sample that is solved, wherever it sorted to
    assert win.browser.view.selectionModel().isRowSelected(int(win.browser.proxy.inverse[t.row_of(s.sample)]),
                                                           QtCore.QModelIndex())


def test_quitting_during_the_table_fill_closes_within_half_a_second(bare_window, qtbot, tmp_path):
    ck, data = _big_pair(tmp_path, n_test=100_000)
    win = bare_window()
    task = asyncio.ensure_future(win.open_files(ck, data))
    qtbot.waitUntil(task.done, timeout=120000)
    qtbot.waitUntil(lambda: win.session.filler.running and win.session.table.computed > 0, timeout=60000)
    t0 = time.perf_counter()
    win.quit_action.trigger()
    took = time.perf_counter() - t0
    assert not win.isVisible() and took < 0.5, took
    assert not win.session.filler.running


def test_a_corruption_chosen_in_the_session_makes_the_corrupted_columns_without_a_window(small_files):
    """The table values themselves (no Qt): the chunk of the engine equals a whole evaluation of those rows."""
    from deqstudio.session.state import Session

    ck, data = small_files
    s = Session()
    s.open(ck, data)
    t = s.table
    assert t is not None and t.computed == 0 and len(t) == len(s.dataset.split("test"))
    s.set_corruption("strong", Corruption("gaussian", 3.0))
    assert t.now is not None and t.corruption_label == "strong=gaussian:3"
    rows = t.next_rows(10)
    clean, now = s.engine.table_chunk(t.indices[rows], s.solver, {"strong": Corruption("gaussian", 3.0)})
    assert t.apply(rows, t.keys(), clean, now) and t.computed == 10
    whole = s.engine.browse("test", s.solver)
    np.testing.assert_array_equal(t.clean.predictions[rows], whole.predictions[rows])
    np.testing.assert_array_equal(t.clean.steps[rows], whole.steps[rows])
    s.set_corruption("strong", Corruption("gaussian", 4.0))  # the corrupted columns start over; the clean ones stay
    assert t.computed == 0 and t.clean.computed == 10
    assert not t.apply(rows, ((s.solver,), (s.solver, (("strong", Corruption("gaussian", 3.0)),))), None, now)
