"""Analysis windows: progress, cancel with partial results kept, clicking a point opens the sample."""

import numpy as np


def _finished(qtbot, win, timeout=120000):
    qtbot.waitUntil(lambda: win.job.done and not win.timer.isActive(), timeout=timeout)


def test_robustness_window_draws_curves_and_a_click_opens_a_failing_sample(window, qtbot):
    win = window.start_analysis("robustness")
    qtbot.addWidget(win)
    _finished(qtbot, win)
    r = win.result
    assert r.complete and r.accuracy.shape == (3, 6) and np.isfinite(r.accuracy).all()
    assert "done" in win.status.text() and win.bar.value() == 1000
    names = [it.name() for it in win.plots[0].getPlotItem().listDataItems()]
    assert len(names) == 3 and all("AUC" in n for n in names)
    # the worst point of the worst curve: a sample the model gets wrong there opens in the main view
    c, j = np.unravel_index(np.nanargmin(r.accuracy), r.accuracy.shape)
    wrong = r.misclassified(c, j)
    assert len(wrong)
    win.plots[0].point_clicked.emit(names[c], float(r.levels[j]))  # as a click on that point does
    sample = int(wrong[0])
    qtbot.waitUntil(lambda: window.session.result.request.sample == sample and not window.runner.busy, timeout=30000)
    spec = f"{r.modality[c]}={r.kind[c]}:{r.levels[j]:g}"
    assert window.session.result.request.corruption_specs() == ([spec] if r.levels[j] > 0 else [])
    assert str(sample) in win.hint.text()


def test_cancelled_sweep_keeps_its_partial_results(window, qtbot, tmp_path):
    win = window.start_analysis("robustness", kinds=("all",))
    qtbot.addWidget(win)
    win.cancel()
    _finished(qtbot, win)
    r = win.result
    assert not r.complete and "partial" in win.status.text()
    assert np.isnan(r.accuracy).any()  # the curves after the cancel are empty ...
    done = np.isfinite(r.accuracy)
    assert (r.extra["predictions"][done] >= 0).all()  # ... and those before it are kept, sample by sample
    files = win.export_to(str(tmp_path / "partial"))
    assert (tmp_path / "partial.csv").exists() and (tmp_path / "partial.h5").exists()
    assert any(str(f).endswith("robustnessplot.svg") for f in files)


def test_convergence_window_histogram_click_opens_the_sample(window, qtbot):
    win = window.start_analysis("convergence")
    qtbot.addWidget(win)
    _finished(qtbot, win)
    stats = win.result
    assert list(stats.solvers) == ["anderson", "fixed_point", "broyden"]
    slowest = int(np.argmax(stats.steps[0]))
    win.plots[0].point_clicked.emit("anderson", float(stats.steps[0, slowest]))
    target = int(stats.sample_ids[slowest])
    qtbot.waitUntil(lambda: window.session.result.request.sample == target, timeout=30000)
    header, rows = win.plots[0].data_table()
    assert header[:3] == ["solver", "sample", "steps"] and len(rows) == stats.steps.size


def test_an_analysis_of_a_model_no_longer_open_keeps_its_results_but_opens_nothing(window, qtbot, small_files):
    import asyncio

    win = window.start_analysis("robustness")
    qtbot.addWidget(win)
    _finished(qtbot, win)
    done = asyncio.ensure_future(window.open_files(small_files[0], small_files[1]))  # a new engine
    qtbot.waitUntil(done.done, timeout=60000)
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30000)
    assert win.stale and "no longer" in win.hint.text()
    sample = window.session.sample
    name = next(iter(win.plots[0].curve_of))
    win.plots[0].point_clicked.emit(name, 5.0)
    assert window.session.sample == sample and window.session.result.request.corruption_specs() == []


def test_sessions_store_absolute_paths(tmp_path, monkeypatch, small_files):
    import json
    import os

    from deqstudio.session.state import Session

    monkeypatch.chdir(small_files[0].parent)
    s = Session()
    s.open(small_files[0].name, small_files[1].name)  # relative, as typed on a command line
    s.save(tmp_path / "s.json")
    saved = json.loads((tmp_path / "s.json").read_text())
    assert os.path.isabs(saved["checkpoint"]) and os.path.isabs(saved["dataset"])
    monkeypatch.chdir(tmp_path)
    again = Session()
    again.load(tmp_path / "s.json")
    assert again.ready
