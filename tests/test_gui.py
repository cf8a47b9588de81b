"""The studio through its real widgets, offscreen: load, corrupt, scrub, play, switch solver, errors."""

import asyncio
import os
import subprocess
import sys

import numpy as np
import pytest
from PySide6 import QtCore

from deqstudio.gui.panels import SLIDER_SCALE


def _wait_idle(qtbot, win, timeout=30000):
    qtbot.waitUntil(lambda: not win.runner.busy, timeout=timeout)


def _curve(plot, name, tag="corrupted"):
    """(x, y) of a drawn curve in data coordinates: the corrupted run is named by its block or modality,
    the clean run's dashed curve adds " (clean)"."""
    return plot.series(name if tag == "corrupted" else f"{name} ({tag})")


def _item(plot, series):
    """The drawn item of a series (pyqtgraph's own API), to see how it is drawn."""
    return next(it for it in plot.getPlotItem().listDataItems() if getattr(it, "series", None) == series)


def _class_series(r, c=0):
    return f"class {r.class_names[c]}"


def _status_state(run):
    return "converged" if run.converged else f"NOT converged ({run.reason})"


def _assert_every_plot_shows(window, r):
    """Every plot holds ``r`` and draws its corrupted run (not only: was asked to redraw)."""
    run = r.corrupted
    assert all(p.result is r for p in window.plots)
    steps = np.arange(1, run.nstep + 1)
    for i, name in enumerate(r.block_names):
        x, y = _curve(window.residual, name)
        np.testing.assert_array_equal(x, steps)
        np.testing.assert_array_equal(y, np.clip(run.block_rel[:, i], 1e-12, None))
    for i, name in enumerate(r.modality_names):
        np.testing.assert_array_equal(_curve(window.gates, name)[1], run.gate_share[:, i])
    for c in range(len(r.class_names)):
        np.testing.assert_array_equal(window.probabilities.series(_class_series(r, c))[1], run.probabilities[:, c])
    _, rows = window.shift.data_table()
    assert [row[0] for row in rows] == list(r.block_names)
    np.testing.assert_array_equal([row[1] for row in rows], r.shift)
    cells = [window.udml.table.item(5, i).text() for i in range(len(r.modality_names))]  # "weight w, now"
    assert cells == [f"{w:.3f}" for w in run.weights]
    assert f"{run.nstep} steps · {_status_state(run)}" in window.status_solve.text()


def test_window_opens_with_every_plot_drawn(window, qtbot, converging_sample, show_sample):
    r = window.session.result
    assert r.block_names == ("strong", "weak", "picture", "fused")
    x, y = _curve(window.residual, "fused")
    assert len(x) == r.corrupted.nstep > 1 and np.all(y > 0)
    assert sorted(n for n in window.probabilities.series_names() if n.startswith("class ")) == \
        sorted(f"class {c}" for c in r.class_names)
    assert window.udml.table.columnCount() == 3
    assert window.udml.table.item(0, 0).text() == "clean"
    _assert_every_plot_shows(window, r)
    assert window.browser.model.rowCount() == len(window.session.dataset.split("test"))
    assert window.scrubber.steps == r.corrupted.nstep
    assert "picture" in window.corruption.controls and window.corruption.controls["picture"].image is not None
    # a sample the model converges on says so, and only so ("converged" is also inside "NOT converged")
    r = show_sample(window, qtbot, converging_sample(window, qtbot))
    assert r.corrupted.converged
    assert f"{r.corrupted.nstep} steps · converged" in window.status_solve.text()
    assert "NOT converged" not in window.status_solve.text() and not window.banner.isVisible()


def test_moving_a_slider_resolves_and_every_plot_follows(window, qtbot):
    clean_y = _curve(window.residual, "fused")[1].copy()
    slider = window.corruption.controls["strong"].slider
    slider.setValue(4 * SLIDER_SCALE)
    qtbot.waitUntil(lambda: window.session.result.severities["strong"] == 4.0, timeout=30000)
    _wait_idle(qtbot, window)
    r = window.session.result
    assert r.shift[0] > 0  # the corrupted modality's equilibrium moved
    _assert_every_plot_shows(window, r)
    dashed = _curve(window.residual, "fused", "clean")[1]
    np.testing.assert_allclose(dashed, clean_y)  # the clean run stays, dashed
    assert window.udml.table.item(0, 0).text().startswith("gaussian 4")
    assert "level 4" in window.corruption.controls["strong"].value.text()


def test_image_modality_is_drawn_before_and_after(window, qtbot):
    ctl = window.corruption.controls["picture"]
    ctl.kind.setCurrentText("impulse")
    ctl.slider.setValue(5 * SLIDER_SCALE)
    qtbot.waitUntil(lambda: window.session.result.severities["picture"] == 5.0, timeout=30000)
    (_, before), (_, after) = ctl.image.items
    assert before.image.shape == (8, 8) and not np.array_equal(before.image, after.image)


def test_slider_snaps_to_levels(window, qtbot):
    slider = window.corruption.controls["weak"].slider
    slider.setValue(2 * SLIDER_SCALE + 5)
    assert slider.value() == 2 * SLIDER_SCALE
    slider.setValue(2 * SLIDER_SCALE + 40)
    assert slider.value() == 2 * SLIDER_SCALE + 40
    _wait_idle(qtbot, window)


def test_scrub_and_play_replay_the_stored_trace(window, qtbot, count_solves):
    r = window.session.result
    solves = count_solves(window)
    window.scrubber.set_value(0)
    assert window.session.step == 0
    assert window.residual.marker.value() == 1
    assert window.probabilities.note.startswith("step 1:")
    run = r.corrupted  # the note names the step's residual and the one final residual (the returned state's)
    returned = f"final residual {run.final_rel:.1e} (step {run.best_step + 1})"
    assert window.residual.note == f"step 1: rel {run.rel[0]:.2e} · {returned}"
    window.scrubber.speed.setCurrentText("60 steps/s")
    window.scrubber.play.setChecked(True)
    qtbot.waitUntil(lambda: window.scrubber.value() == r.corrupted.nstep - 1, timeout=10000)
    qtbot.waitUntil(lambda: not window.scrubber.play.isChecked(), timeout=5000)
    last = r.corrupted.nstep - 1
    assert window.residual.note == f"step {last + 1}: rel {r.corrupted.rel[last]:.2e} · {returned}"
    assert solves.started == 0 and window.session.result is r  # playback never re-solves
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Left)
    assert window.scrubber.value() == r.corrupted.nstep - 2


def test_switching_solver_resolves_with_it(window, qtbot):
    window.solver_panel.solver.setCurrentText("fixed_point")
    qtbot.waitUntil(lambda: window.session.result.request.solver.solver == "fixed_point", timeout=30000)
    _wait_idle(qtbot, window)
    assert not window.solver_panel.options["lam"].isEnabled() and window.solver_panel.options["tau"].isEnabled()
    window.solver_panel.max_iter.setValue(3)
    qtbot.waitUntil(lambda: window.session.result.request.solver.max_iter == 3, timeout=30000)
    r = window.session.result
    assert r.corrupted.nstep == 3 and not r.corrupted.converged
    assert "NOT converged" in window.status_solve.text()
    assert window.banner.isVisible() and "did not converge" in window.banner.text()


def test_mismatched_dataset_is_a_message_and_the_old_files_stay(window, qtbot, tmp_path):
    from deqstudio.io.dataset import write_dataset
    from deqstudio.io.synthetic import SyntheticModality, make_synthetic

    other = write_dataset(make_synthetic(n=60, num_classes=4, modalities=(SyntheticModality("audio", 5),), seed=2),
                          tmp_path / "other.h5")
    old = window.session.dataset
    task = asyncio.ensure_future(window.open_files(dataset=other))
    qtbot.waitUntil(task.done, timeout=30000)
    assert task.result() is False
    assert window.banner.isVisible() and "does not fit this checkpoint" in window.banner.text()
    assert "'strong' is missing" in window.banner.text()
    assert window.session.dataset is old
    (tmp_path / "junk.pt").write_bytes(b"junk")
    task = asyncio.ensure_future(window.open_files(checkpoint=tmp_path / "junk.pt"))
    qtbot.waitUntil(task.done, timeout=30000)
    assert "not a torch zip" in window.banner.text()
    # the app keeps working with what it had open
    window.corruption.controls["weak"].slider.setValue(3 * SLIDER_SCALE)
    qtbot.waitUntil(lambda: window.session.result.severities["weak"] == 3.0, timeout=30000)


def test_slider_spam_ends_on_the_last_value_without_backlog(window, qtbot, count_solves):
    slider = window.corruption.controls["strong"].slider
    solves = count_solves(window)
    values = [((i * 37) % 500) for i in range(199)] + [333]
    for v in values:
        slider.setValue(v)
    assert window.runner.busy
    _wait_idle(qtbot, window, timeout=60000)
    r = window.session.result
    assert r.severities["strong"] == pytest.approx(3.33)
    # not one solve per move: at most the one in flight and the last one waiting
    assert solves.started <= 2 and solves.requests[-1].generation == r.request.generation
    assert not window.runner.busy


def test_selecting_a_sample_in_the_browser_solves_it(window, qtbot):
    view = window.browser.view
    view.selectRow(5)
    target = window.browser.model.table.indices[window.browser.proxy.mapToSource(window.browser.proxy.index(5, 0)).row()]
    qtbot.waitUntil(lambda: window.session.result.request.sample == target, timeout=30000)
    # five solver steps are too few for any sample: the table is re-made (in the background, once the settings
    # are still) and "not converged" lists them
    before = window.session.table
    window.solver_panel.max_iter.setValue(5)
    qtbot.waitUntil(lambda: window.session.table is not before and window.session.table.complete
                    and not window.runner.busy, timeout=30000)
    table = window.session.table
    assert (table.steps <= 5).all() and not table.converged.all()
    for mode, hidden in (("wrong", table.correct), ("not converged", table.converged)):
        window.browser.mode.setCurrentText(mode)
        assert window.browser.proxy.rowCount() == int((~hidden).sum())
    assert window.browser.proxy.rowCount() > 0


def test_screenshot_command_writes_the_window(small_files, tmp_path):
    ck, data = small_files
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DEQSTUDIO_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = subprocess.run(
        [sys.executable, "-m", "deqstudio", "gui", "--checkpoint", str(ck), "--dataset", str(data),
         "--screenshot", str(out), "--corrupt", "strong=gaussian:3", "--step", "2"],
        capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    from PySide6 import QtGui

    image = QtGui.QImage(str(out))
    assert image.width() >= 1200 and image.height() >= 800
    # a screenshot is not a working session: the user's recent files and last session stay as they were
    assert not (tmp_path / "cfg" / "recent.json").exists() and not (tmp_path / "cfg" / "last-session.json").exists()


def _assert_every_curve_in_view(plot, log_y=False):
    (x0, x1), (y0, y1) = plot.getPlotItem().getViewBox().viewRange()
    for curve in plot.getPlotItem().listDataItems():
        x, y = np.asarray(curve.xData), np.asarray(curve.yData)
        if x.size == 0:
            continue
        y = np.log10(y) if log_y else y
        assert x0 <= x.min() and x.max() <= x1, (plot, curve.name())
        assert y0 <= np.nanmin(y) and np.nanmax(y) <= y1, (plot, curve.name())


def test_plots_fit_every_curve_and_back_to_clean_redraws_the_corrupted_run(window, qtbot):
    """The plots set their own ranges (no autorange during paint): every curve must still be in view."""
    slider = window.corruption.controls["strong"].slider
    for value in (5 * SLIDER_SCALE, 0):
        slider.setValue(value)
        qtbot.waitUntil(lambda value=value: window.session.result.severities["strong"] == value / SLIDER_SCALE,
                        timeout=30000)
        _wait_idle(qtbot, window)
        _assert_every_curve_in_view(window.residual, log_y=True)
        _assert_every_curve_in_view(window.gates)
        _assert_every_curve_in_view(window.probabilities)
        shift_top = window.shift.getPlotItem().getViewBox().viewRange()[1][1]
        assert np.nan_to_num(window.session.result.shift).max() <= shift_top
    r = window.session.result
    assert r.corrupted is r.clean
    for name in r.block_names:  # the corrupted (solid) curves are the clean run again, not the level-5 one
        np.testing.assert_allclose(_curve(window.residual, name)[1], _curve(window.residual, name, "clean")[1])
    for name in r.modality_names:
        np.testing.assert_allclose(_curve(window.gates, name)[1], _curve(window.gates, name, "clean")[1])


def test_nice_ranges():
    from deqstudio.gui.plots import nice_ceiling, step_range

    assert [nice_ceiling(v) for v in (0.7, 1.0, 1.1, 2.2, 5.7, 7.0, 9.0, 1234)] == [0.8, 1.0, 1.5, 2.5, 6.0, 8.0, 10.0, 1500]
    assert nice_ceiling(0) == 1.0 and nice_ceiling(float("nan")) == 1.0
    assert step_range(1) == (1.0, 5.0) and step_range(12) == (1.0, 15.0) and step_range(15) == (1.0, 15.0)


def test_a_model_without_solver_says_so_in_each_plot(window, qtbot, small_files, tmp_path):
    """A concat baseline has no iterations, gates or equilibrium: each plot says why it is empty."""
    import torch

    from deqstudio.core.model import FusionModel
    from deqstudio.io.checkpoint import save_checkpoint
    from deqstudio.io.dataset import read_dataset
    from deqstudio.workflows.training import TrainRequest, build_config

    ck, data = small_files
    ds = read_dataset(data)
    torch.manual_seed(0)
    concat = save_checkpoint(tmp_path / "concat.pt", FusionModel(build_config(ds, TrainRequest(fusion="concat", hidden=8))),
                             dataset=ds.identity())
    task = asyncio.ensure_future(window.open_files(checkpoint=concat))
    qtbot.waitUntil(task.done, timeout=30000)
    assert task.result() is not False
    qtbot.waitUntil(lambda: window.session.result is not None and window.session.result.fusion == "concat", timeout=30000)
    _wait_idle(qtbot, window)
    assert "no solver: the concat model" in window.residual.note
    assert "no gate" in window.gates.note
    assert "no equilibrium" in window.shift.note
    assert window.probabilities.note.startswith("one pass: predicts")
    r = window.session.result
    curve = _item(window.probabilities, _class_series(r))
    assert curve.opts["symbol"] == "o" and len(window.probabilities.series(_class_series(r))[0]) == 1  # a point
    (x0, x1), _ = window.probabilities.getPlotItem().getViewBox().viewRange()
    assert x0 < 1.0 < x1
    # another model without a solver: the notes name it, not the one before
    torch.manual_seed(1)
    late = save_checkpoint(tmp_path / "late.pt", FusionModel(build_config(ds, TrainRequest(fusion="late", hidden=8))),
                           dataset=ds.identity())
    task = asyncio.ensure_future(window.open_files(checkpoint=late))
    qtbot.waitUntil(task.done, timeout=30000)
    qtbot.waitUntil(lambda: window.session.result is not None and window.session.result.fusion == "late", timeout=30000)
    _wait_idle(qtbot, window)
    assert "the late model" in window.shift.note and "the late model" in window.residual.note
    # back to the DEQ model: lines again, and the shift plot's note is gone
    task = asyncio.ensure_future(window.open_files(checkpoint=ck))
    qtbot.waitUntil(task.done, timeout=30000)
    qtbot.waitUntil(lambda: window.session.result is not None and window.session.result.fusion == "deq-udml", timeout=30000)
    _wait_idle(qtbot, window)
    assert _item(window.probabilities, _class_series(window.session.result)).opts["symbol"] is None
    assert window.shift.note == "" and window.residual.note.startswith("step ")


def test_a_one_step_solve_is_drawn_as_points_and_abs_mode_hides_the_relative_tolerance(window, qtbot):
    window.solver_panel.max_iter.setValue(1)
    qtbot.waitUntil(lambda: window.session.result.request.solver.max_iter == 1, timeout=30000)
    _wait_idle(qtbot, window)
    r = window.session.result
    assert r.corrupted.nstep == 1
    for plot, series in ((window.residual, "fused"), (window.probabilities, _class_series(r))):
        assert _item(plot, series).opts["symbol"] == "o" and len(plot.series(series)[0]) == 1  # a dot, not a line
    # the one step is the zero start, where z_fuse = 0 admits nothing: its gate share is undefined (NaN),
    # so the gate plot is in point mode with no point rather than a made-up share
    assert np.isnan(r.corrupted.gate_share).all()
    assert _item(window.gates, "strong").opts["symbol"] == "o" and len(window.gates.series("strong")[0]) == 0
    assert window.probabilities.note.startswith("step 1:")  # a DEQ's first step, not a model without a solver
    assert window.residual.tol_line.isVisible()
    window.solver_panel.max_iter.setValue(50)
    window.solver_panel.stop_mode.setCurrentText("abs")
    qtbot.waitUntil(lambda: window.session.result.request.solver.stop_mode == "abs", timeout=30000)
    _wait_idle(qtbot, window)
    assert _item(window.residual, "fused").opts["symbol"] is None
    assert not window.residual.tol_line.isVisible()  # abs mode bounds ‖f(z) − z‖, not what this plot draws


def test_without_a_display_the_app_says_so_instead_of_aborting(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["DEQSTUDIO_CONFIG_DIR"] = str(tmp_path / "cfg")
    proc = subprocess.run([sys.executable, "-m", "deqstudio", "gui"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no display") and "--screenshot" in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line, not Qt's plugin abort


def test_the_probability_legend_names_the_bold_classes_and_the_true_one_for_every_sample(window, qtbot):
    """The legend is rebuilt only when the bold classes or the true ones change; whatever the order of samples
    and corruptions, it names exactly the bold classes in class order, the true one marked, and only those are
    drawn boldly."""
    from deqstudio.core.corruptions import Corruption
    from deqstudio.gui.plots.probabilities import ProbabilityPlot

    s = window.session
    plot = window.probabilities
    samples = [int(i) for i in s.dataset.split("test")[:12]]
    settings = [(i, level) for i in samples for level in (0.0, 2.5)]
    for sample, level in settings:
        s.set_sample(sample)
        s.set_corruption("strong", Corruption("gaussian", level))
        qtbot.waitUntil(lambda sample=sample, level=level: s.result is not None and s.result.request.sample == sample
                        and s.result.severities["strong"] == level and not window.runner.busy, timeout=30000)
        r = s.result
        bold = sorted(ProbabilityPlot.shown_classes(r))
        expected = [f"{r.class_names[c]}{' (true)' if c == r.label else ''}" for c in bold]
        assert [label.text for _, label in plot.legend.items] == expected
        assert [sample.item for sample, _ in plot.legend.items] == [_item(plot, _class_series(r, c)) for c in bold]
        widths = [_item(plot, _class_series(r, c)).opts["pen"].widthF() for c in range(len(r.class_names))]
        assert [c for c, w in enumerate(widths) if w > 1.0] == bold
