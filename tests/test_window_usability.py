"""The studio as a user meets it, through the real widgets (issue 15 items 3-7 and 9-12): never stale without
saying so, a banner that goes away, small screens, the keyboard, analysis clicks with undo, one final residual,
exports, colours, and the smaller items."""

import itertools
import json
import time

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from deqstudio.core.corruptions import Corruption
from deqstudio.core.solvers.settings import SolverSettings
from deqstudio.gui import palette
from deqstudio.gui.panels import SLIDER_SCALE


def _idle(qtbot, window, timeout=30000):
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=timeout)


def _menu(window, title):
    return next(m for m in window.menuBar().findChildren(QtWidgets.QMenu) if m.title().replace("&", "") == title)


def _action(window, title, text):
    return next(a for a in _menu(window, title).actions() if a.text().replace("&", "").startswith(text))


# -- item 3: never stale without saying so --------------------------------------------------------------------
def test_plots_say_they_are_stale_while_a_slow_solve_is_pending(window, qtbot, monkeypatch):
    engine = window.session.engine
    real = engine.solve

    def slow(request):
        time.sleep(0.6)
        return real(request)

    monkeypatch.setattr(engine, "solve", slow)
    assert not window.view.stale and not window.status.busy.isVisible()
    window.corruption.controls["strong"].slider.setValue(3 * SLIDER_SCALE)
    assert "level 3" in window.corruption.controls["strong"].value.text()  # the label shows the new value at once
    qtbot.waitUntil(lambda: window.view.stale, timeout=5000)
    assert all(p.stale for p in window.plots) and window.residual.badge.text() == "updating …"
    assert window.status.busy.isVisible() and window.session.result.severities["strong"] == 0.0  # old result shown
    qtbot.waitUntil(lambda: window.session.result.severities["strong"] == 3.0, timeout=30000)
    assert not window.view.stale and not window.status.busy.isVisible()


def test_a_fast_solve_never_flickers_the_stale_mark(window, qtbot):
    marks = []
    window.busy.changed.connect(marks.append)
    window.corruption.controls["weak"].slider.setValue(2 * SLIDER_SCALE)
    qtbot.waitUntil(lambda: window.session.result.severities["weak"] == 2.0, timeout=30000)
    _idle(qtbot, window)
    assert not window.view.stale and (marks == [] or marks[-1] is False)


# -- item 4: the banner ---------------------------------------------------------------------------------------
def test_the_banner_can_be_dismissed_and_goes_away_after_the_next_success(window, qtbot):
    window.solver_panel.max_iter.setValue(2)
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=30000)
    assert "did not converge" in window.banner.text()
    qtbot.mouseClick(window.banner.close_button, QtCore.Qt.MouseButton.LeftButton)
    assert not window.banner.isVisible()
    window.session.message.emit("something went wrong", True)
    assert window.banner.isVisible()
    window.solver_panel.max_iter.setValue(50)  # a success: the problem is over
    qtbot.waitUntil(lambda: window.session.result.request.solver.max_iter == 50 and not window.runner.busy,
                    timeout=30000)
    assert window.session.result.corrupted.converged and not window.banner.isVisible()


# -- item 5: small screens --------------------------------------------------------------------------------------
def test_docks_close_and_come_back_from_the_view_menu(window, qtbot):
    samples = _action(window, "View", "Samples panel")
    side = _action(window, "View", "Corruption and solver panel")
    assert samples.isCheckable() and samples.isChecked() and side.isChecked()
    window.docks.samples.close()
    qtbot.waitUntil(lambda: not window.docks.samples.isVisible(), timeout=5000)
    assert not samples.isChecked()
    samples.trigger()
    qtbot.waitUntil(lambda: window.docks.samples.isVisible(), timeout=5000)
    side.trigger()
    qtbot.waitUntil(lambda: not window.docks.side.isVisible(), timeout=5000)
    _action(window, "View", "Reset layout").trigger()
    qtbot.waitUntil(lambda: window.docks.side.isVisible() and window.docks.samples.isVisible(), timeout=5000)


def test_at_1024_by_700_the_plots_keep_room_and_nothing_is_cut(window, qtbot):
    window.resize(1024, 700)
    qtbot.waitUntil(lambda: window.width() == 1024, timeout=5000)
    qtbot.wait(200)
    docks = window.docks
    assert docks.samples in window.tabifiedDockWidgets(docks.side)  # the two panels share one column as tabs
    assert docks.side.isVisible() and docks.side.width() >= docks.side.widget().minimumWidth()
    assert window.view.width() >= 0.7 * window.width()  # the plots keep most of the window
    for plot in window.plots:
        assert plot.width() >= plot.minimumSizeHint().width() and plot.height() >= plot.minimumHeight(), plot
        # nothing drawn wider than the plot: its scene fits its view (a long note is not allowed to widen it)
        if hasattr(plot, "getPlotItem"):
            assert plot.getPlotItem().width() <= plot.width() + 1, plot
    docks.samples.raise_()
    qtbot.waitUntil(window.browser.isVisible, timeout=5000)  # its tab brings the samples back
    # texts fit where they are: the scrubber's step label, every corruption label, the solver's form
    window.corruption.controls["weak"].kind.setCurrentText("mask")
    window.corruption.controls["weak"].slider.setValue(3 * SLIDER_SCALE)  # the longest label: "fraction of features"
    labels = [window.scrubber.label, *(c.value for c in window.corruption.controls.values())]
    panel = window.solver_panel
    labels += [panel.form.labelForField(w) for w in (panel.solver, panel.max_iter, panel.tol, panel.stop_mode)]
    docks.side.raise_()
    qtbot.waitUntil(window.solver_panel.isVisible, timeout=5000)
    def fits(label):
        if label.wordWrap():  # wrapped: all its lines fit in its height
            return label.heightForWidth(label.width()) <= label.height() + 1
        return label.width() >= label.fontMetrics().horizontalAdvance(label.text())

    for label in labels:  # once the layout has followed the new texts
        qtbot.waitUntil(lambda label=label: fits(label), timeout=3000)
    udml = window.udml  # short: the UDML table keeps every row (the weights are in it); the bars give way
    assert udml.table.height() >= udml.table.minimumHeight()
    window.resize(1400, 900)  # wide again: side by side
    qtbot.waitUntil(lambda: window.dockWidgetArea(docks.samples) == QtCore.Qt.DockWidgetArea.LeftDockWidgetArea,
                    timeout=5000)
    qtbot.waitUntil(lambda: docks.samples.isVisible() and docks.side.isVisible(), timeout=5000)


# -- item 6: the keyboard ---------------------------------------------------------------------------------------
def test_step_keys_reach_the_scrubber_wherever_the_focus_is_and_plots_never_pan(window, qtbot):
    r = window.session.result
    sc = window.scrubber
    table = window.browser.view
    table.setFocus()
    qtbot.waitUntil(table.hasFocus, timeout=5000)
    sc.set_value(3)
    qtbot.keyClick(table, QtCore.Qt.Key.Key_Right)
    assert sc.value() == 4 and window.session.step == 4
    qtbot.keyClick(table, QtCore.Qt.Key.Key_Left)
    assert sc.value() == 3
    qtbot.keyClick(table, QtCore.Qt.Key.Key_Home)
    assert sc.value() == 0
    sample = window.session.sample
    qtbot.keyClick(table, QtCore.Qt.Key.Key_Space)  # Space plays from the table ...
    assert sc.play.isChecked()
    qtbot.keyClick(table, QtCore.Qt.Key.Key_Space)  # ... and pauses
    assert not sc.play.isChecked() and window.session.sample == sample
    # the plots take no focus, so no key moves them; their ranges stay where the result put them
    vb = window.residual.getPlotItem().vb
    before = [list(r_) for r_ in vb.viewRange()]
    assert all(p.focusPolicy() == QtCore.Qt.FocusPolicy.NoFocus for p in window.plots)
    qtbot.mouseClick(window.residual.viewport(), QtCore.Qt.MouseButton.LeftButton)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Right)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Up)
    assert [list(r_) for r_ in vb.viewRange()] == before
    assert not vb.state["mouseEnabled"][0] and not vb.state["mouseEnabled"][1]
    # a text field keeps its own keys
    search = window.browser.search
    search.setFocus()
    qtbot.waitUntil(search.hasFocus, timeout=5000)
    qtbot.keyClicks(search, "1 2")
    at = sc.value()
    qtbot.keyClick(search, QtCore.Qt.Key.Key_Left)
    assert search.text() == "1 2" and search.cursorPosition() == 2 and sc.value() == at and not sc.play.isChecked()
    search.clear()
    assert r is window.session.result


def test_tab_leaves_the_table_without_changing_the_sample_and_help_lists_the_keys(window, qtbot):
    table = window.browser.view
    sample = window.session.sample
    window.browser.search.setFocus()
    qtbot.waitUntil(window.browser.search.hasFocus, timeout=5000)
    visited = []
    for _ in range(6):
        qtbot.keyClick(QtWidgets.QApplication.focusWidget(), QtCore.Qt.Key.Key_Tab)
        visited.append(QtWidgets.QApplication.focusWidget())
    assert table in visited and visited[-1] is not table  # Tab goes into the table and out again
    assert visited.index(table) == 1  # search → filter mode → table
    assert window.session.sample == sample  # entering the table with Tab does not choose another sample
    assert window.keys.chain[-1] is window.scrubber.loop
    dialog = window.keys.show_help()
    assert dialog.isVisible() and not dialog.isModal()
    shortcuts = dialog.findChild(QtWidgets.QTableWidget, "shortcuts")
    keys = [shortcuts.item(r, 0).text() for r in range(shortcuts.rowCount())]
    assert {"Space", "Left", "Right", "Ctrl+Z", "Tab / Shift+Tab"} <= set(keys)
    assert _action(window, "Help", "Keyboard shortcuts").shortcut() == QtGui.QKeySequence(QtGui.QKeySequence.StandardKey.HelpContents)
    playback = [a.shortcut().toString() for a in _menu(window, "Playback").actions()]
    assert playback[:3] == ["Space", "Left", "Right"]


# -- item 7: analysis clicks, undo and redo -----------------------------------------------------------------------
def test_undo_and_redo_of_corruption_and_solver_changes(window, qtbot):
    slider = window.corruption.controls["strong"].slider
    slider.setValue(3 * SLIDER_SCALE)
    qtbot.waitUntil(lambda: window.session.result.severities["strong"] == 3.0, timeout=30000)
    window.solver_panel.solver.setCurrentText("broyden")
    qtbot.waitUntil(lambda: window.session.result.request.solver.solver == "broyden", timeout=30000)
    assert window.undo_action.isEnabled() and "solver" in window.undo_action.text()
    window.undo_action.trigger()
    assert window.session.solver.solver == "anderson" and window.solver_panel.solver.currentText() == "anderson"
    assert window.session.corruptions["strong"].severity == 3.0
    window.undo_action.trigger()
    assert window.session.corruptions["strong"].severity == 0.0 and slider.value() == 0
    qtbot.waitUntil(lambda: window.session.result.severities["strong"] == 0.0 and not window.runner.busy,
                    timeout=30000)
    window.redo_action.trigger()
    assert slider.value() == 3 * SLIDER_SCALE and window.session.corruptions["strong"].severity == 3.0
    _idle(qtbot, window)


def test_a_robustness_click_applies_exactly_its_setting_says_so_and_can_be_undone(window, qtbot):
    s = window.session
    window.corruption.controls["weak"].slider.setValue(2 * SLIDER_SCALE)  # the user's own corruption ...
    window.solver_panel.solver.setCurrentText("broyden")  # ... and solver
    qtbot.waitUntil(lambda: s.result.request.solver.solver == "broyden" and not window.runner.busy, timeout=30000)
    win = window.start_analysis("robustness")
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.job.done and win.result is not None, timeout=120000)
    r = win.result
    c = int(np.flatnonzero(r.modality == "strong")[0])
    j = int(np.argmin(r.accuracy[c]))  # the worst level of the strong modality: misclassified samples exist
    name = next(n for n, i in win.plots[0].curve_of.items() if i == c)
    win.plots[0].point_clicked.emit(name, float(r.levels[j]))  # as a click on that point does
    sample = int(r.misclassified(c, j)[0])
    qtbot.waitUntil(lambda: s.result.request.sample == sample and not window.runner.busy, timeout=30000)
    level = float(r.levels[j])
    assert s.corruptions["strong"] == Corruption("gaussian", level, 0)
    assert not s.corruptions["weak"].active and not s.corruptions["picture"].active  # the others exactly clean
    assert s.solver == s.info.solver_defaults  # the sweep ran with the model's own solver settings
    assert window.solver_panel.solver.currentText() == s.info.solver_defaults.solver
    message = window.statusBar().currentMessage()
    assert f"Opened sample {sample} as in the robustness sweep: strong=gaussian:{level:g}" in message
    assert "(replaced weak=gaussian:2)" in message and "Undo" in message
    window.undo_action.trigger()  # one step back: the user's own setting
    assert s.corruptions["weak"] == Corruption("gaussian", 2.0) and not s.corruptions["strong"].active
    assert s.solver.solver == "broyden" and window.corruption.controls["weak"].slider.value() == 2 * SLIDER_SCALE
    _idle(qtbot, window)


def test_a_convergence_click_applies_the_clicked_solver_and_clean_inputs(window, qtbot):
    s = window.session
    window.corruption.controls["strong"].slider.setValue(4 * SLIDER_SCALE)
    _idle(qtbot, window)
    win = window.start_analysis("convergence")
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.job.done and win.result is not None, timeout=120000)
    stats = win.result
    k = list(stats.solvers).index("broyden")
    slowest = int(np.argmax(stats.steps[k]))
    win.plots[0].point_clicked.emit("broyden", float(stats.steps[k, slowest]))
    target = int(stats.sample_ids[slowest])
    qtbot.waitUntil(lambda: s.result.request.sample == target and not window.runner.busy, timeout=30000)
    assert s.solver == SolverSettings("broyden", max_iter=int(stats.max_iter), tol=float(stats.tol), stop_mode="rel")
    assert not any(c.active for c in s.corruptions.values())  # the statistics were computed on clean inputs
    assert abs(s.result.corrupted.nstep - int(stats.steps[k, slowest])) <= 2  # that solve (batched: ±rounding)
    assert "as in the convergence statistics" in window.statusBar().currentMessage()


# -- item 9: one final residual -------------------------------------------------------------------------------------
def test_one_final_residual_in_the_table_status_note_plot_and_banner(window, qtbot):
    s = window.session
    qtbot.waitUntil(lambda: s.table.complete, timeout=60000)
    run = s.result.corrupted
    text = f"{run.final_rel:.1e}"
    row = int(window.browser.proxy.inverse[s.table.row_of(s.sample)])
    assert window.browser.proxy.data(window.browser.proxy.index(row, 5)) == text  # the table
    assert f"final residual {text} (returned state: step {run.best_step + 1}" in window.status_solve.text()
    window.scrubber.set_value(0)
    assert f"final residual {text} (step {run.best_step + 1})" in window.residual.note  # also at another step
    x, y = window.residual.series("returned state (best step)")  # the best step, marked
    assert list(x) == [run.best_step + 1] and y[0] == pytest.approx(run.final_rel)
    # the table's batched solve and this one agree to rounding (the same quantity, the returned state's residual)
    assert s.table.clean.final_rel[s.table.row_of(s.sample)] == pytest.approx(run.final_rel, rel=1e-2)
    window.solver_panel.max_iter.setValue(3)
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=30000)
    run = s.result.corrupted
    assert f"final residual {run.final_rel:.1e}" in window.banner.text()


def test_a_tolerance_below_the_float32_floor_is_said(window, qtbot):
    panel = window.solver_panel
    assert not panel.floor_note.isVisible()
    field = panel.tol.lineEdit()
    field.setFocus()
    field.selectAll()
    qtbot.keyClicks(field, "1e-9")
    qtbot.keyClick(field, QtCore.Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.session.result.request.solver.tol == 1e-9 and not window.runner.busy,
                    timeout=30000)
    assert panel.floor_note.isVisible() and "float32 floor" in panel.floor_note.text()
    run = window.session.result.corrupted
    if not run.converged:  # a float32 model does not get there: the banner says why
        assert "below the float32 floor" in window.banner.text()


# -- item 10: exports ----------------------------------------------------------------------------------------------
def _colour_fraction(png: bytes, colour: str) -> float:
    image = QtGui.QImage.fromData(png).convertToFormat(QtGui.QImage.Format.Format_RGB32)
    ptr = image.constBits()
    arr = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())[:, : image.width() * 4]
    bgr = arr.reshape(image.height(), image.width(), 4)[..., :3].astype(int)
    target = np.array([int(colour[i : i + 2], 16) for i in (5, 3, 1)])
    return float((np.abs(bgr - target).sum(axis=2) < 60).mean())


def test_png_export_scales_line_widths_with_the_fonts(window, qtbot):
    from deqstudio.gui.export import png_bytes

    plot = window.residual
    colour = palette.modality_colour(0)
    small = _colour_fraction(png_bytes(plot, plot.width()), colour)
    large = _colour_fraction(png_bytes(plot, plot.width() * 4), colour)
    assert small > 0 and large > 0.6 * small  # a line 4x as long and 4x as wide covers the same share
    pen = plot.getPlotItem().listDataItems()[0].opts["pen"]
    assert pen.widthF() == 2.0  # drawn back at the screen's width afterwards


def test_export_dialogs_start_in_the_last_export_folder(window, qtbot, tmp_path, monkeypatch):
    asked = []
    target = tmp_path / "figures"
    target.mkdir()

    def save_name(parent, caption, start, filter_):
        asked.append(start)
        return str(target / "residual.png"), filter_

    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", save_name)
    monkeypatch.setattr(QtWidgets.QInputDialog, "getInt", lambda *a, **k: (800, True))
    window.exports.ask_export_plot("residual", "Relative residual per block")
    assert (target / "residual.png").exists()
    window.exports.ask_export_trace()
    assert asked[0] == "residual.png" and asked[1] == str(target / f"trace-sample-{window.session.sample}.h5")
    stored = json.loads(window.recent.path.read_text())
    assert stored["folders"]["export"] == str(target)


# -- item 11: colours -------------------------------------------------------------------------------------------
def test_palettes_are_colour_blind_safe_separate_and_drawn(window):
    for theme in palette.THEMES.values():
        mods, classes, solvers = theme.modalities, theme.classes, theme.solvers
        assert not (set(mods) & set(classes) or set(mods) & set(solvers) or set(classes) & set(solvers))
        for colours, least in ((mods, 15.0), (classes, 10.0), (solvers, 15.0)):
            gaps = [palette.deuteranope_distance(a, b) for a, b in itertools.combinations(colours, 2)]
            assert min(gaps) >= least, (theme.name, colours)
    # the old red and green of pix and zer were 7 apart for a deuteranope: now each modality has its own style too
    r = window.session.result
    drawn = {}
    for i, name in enumerate(r.modality_names):
        pen = next(it for it in window.residual.getPlotItem().listDataItems() if getattr(it, "series", "") == name
                   ).opts["pen"]
        drawn[name] = (pen.color().name().lower(), pen.style())
        assert drawn[name][0] == palette.LIGHT.modalities[i].lower()
    assert len({style for _, style in drawn.values()}) == len(drawn)  # told apart by line style as well


def test_the_dark_theme_keeps_contrast(window, qtbot):
    dark = _action(window, "View", "Dark theme")
    dark.trigger()
    try:
        assert palette.theme().name == "dark"
        t = palette.DARK
        for plot in (window.residual, window.gates, window.probabilities, window.shift):
            assert plot.backgroundBrush().color().name() == t.background
            axis = plot.getPlotItem().getAxis("left")
            assert palette.contrast(axis.textPen().color().name(), t.background) >= 7
            for item in plot.getPlotItem().listDataItems():
                pen = item.opts.get("pen")
                if pen is not None and item.xData is not None and len(item.xData):
                    colour = QtGui.QPen(pen).color().name()
                    # the named (legend) curves: 3:1 as WCAG asks of graphics; the clean runs are faded on purpose
                    least = 3 if item.name() else 1.5
                    assert palette.contrast(colour, t.background) >= least, (plot, item.name(), colour)
        window_colour = QtWidgets.QApplication.instance().palette().color(QtGui.QPalette.ColorRole.Window).name()
        text = QtWidgets.QApplication.instance().palette().color(QtGui.QPalette.ColorRole.WindowText).name()
        assert palette.contrast(window_colour, text) >= 7
    finally:
        dark.trigger()
    assert palette.theme().name == "light" and window.residual.backgroundBrush().color().name() == "#ffffff"


# -- item 12: the smaller items ---------------------------------------------------------------------------------
def test_a_severity_slider_dragged_by_mouse_snaps_to_levels(window, qtbot):
    ctl = window.corruption.controls["strong"]
    ctl.slider.setSliderDown(True)  # a drag in progress
    ctl.slider.setValue(3 * SLIDER_SCALE - 5)
    assert ctl.value.text().startswith("level 3") and window.session.corruptions["strong"].severity == 3.0
    ctl.slider.setValue(3 * SLIDER_SCALE + 40)
    assert window.session.corruptions["strong"].severity == 3.4
    ctl.slider.setValue(4 * SLIDER_SCALE + 6)
    ctl.slider.setSliderDown(False)  # released near level 4: the handle lands on it
    assert ctl.slider.value() == 4 * SLIDER_SCALE and window.session.corruptions["strong"].severity == 4.0
    _idle(qtbot, window)


def test_step_plots_share_their_x_axis_one_crosshair_and_a_readout_of_every_curve(window, qtbot):
    r = window.session.result
    lead = window.residual.getPlotItem().vb
    for plot in (window.gates, window.probabilities):
        assert plot.getPlotItem().vb.linkedView(0) is lead
        assert plot.getPlotItem().vb.viewRange()[0] == pytest.approx(lead.viewRange()[0])
    hover = window.view.hover
    vb = window.gates.getPlotItem().vb
    y = np.mean(vb.viewRange()[1])
    hover.moved(window.gates, vb.mapViewToScene(QtCore.QPointF(3.2, y)))
    assert hover.step == 3 and all(line.isVisible() and line.value() == 3 for line in hover.lines.values())
    readout = hover.readouts[window.gates]
    assert readout.isVisible() and readout.text().startswith("step 3")
    for i, name in enumerate(r.modality_names):
        assert f"{name} {r.corrupted.gate_share[2, i]:.3f}" in readout.text()
    hover.clear()
    assert not any(line.isVisible() for line in hover.lines.values())


def test_whole_step_ticks_one_format_per_axis_and_titles_aligned_alike(window):
    bottom = window.residual.getPlotItem().getAxis("bottom")
    for lo, hi in ((1, 3), (1, 5), (1, 50), (0.6, 7.4)):
        for _, values in bottom.tickValues(lo, hi, 400):
            assert all(float(v).is_integer() for v in values)
    left = window.residual.getPlotItem().getAxis("left")
    strings = [s for s in left.tickStrings(list(np.arange(-8, 1, 0.5)), 1.0, 1.0) if s]
    assert strings and all(s.startswith("1e") for s in strings)  # never "0.01" beside "1e-05"
    for plot in (window.residual, window.gates, window.probabilities, window.shift):
        assert plot.getPlotItem().titleLabel.opts.get("justify", "center") == "center"
    assert window.udml.title.alignment() & QtCore.Qt.AlignmentFlag.AlignHCenter


def test_a_model_without_solver_hides_the_solver_fields_and_empty_legends(window, qtbot, small_files, tmp_path):
    import asyncio

    import torch

    from deqstudio.core.model import FusionModel
    from deqstudio.io.checkpoint import save_checkpoint
    from deqstudio.io.dataset import read_dataset
    from deqstudio.workflows.training import TrainRequest, build_config

    ck, data = small_files
    ds = read_dataset(data)
    torch.manual_seed(0)
    concat = save_checkpoint(tmp_path / "concat.pt", FusionModel(build_config(ds, TrainRequest(fusion="concat",
                                                                                               hidden=8))))
    task = asyncio.ensure_future(window.open_files(checkpoint=concat))
    qtbot.waitUntil(lambda: task.done() and window.session.result is not None
                    and window.session.result.fusion == "concat" and not window.runner.busy, timeout=30000)
    panel = window.solver_panel
    assert panel.no_solver.isVisible() and "no solver" in panel.no_solver.text()
    assert not any(panel.form.isRowVisible(w) for w in (panel.solver, panel.max_iter, panel.tol, panel.stop_mode,
                                                         *panel.options.values()))
    assert panel.form.isRowVisible(panel.device)
    assert not window.residual.legend.isVisible() and not window.gates.legend.isVisible()
    task = asyncio.ensure_future(window.open_files(checkpoint=ck))
    qtbot.waitUntil(lambda: task.done() and window.session.result is not None
                    and window.session.result.fusion == "deq-udml" and not window.runner.busy, timeout=30000)
    assert not panel.no_solver.isVisible() and panel.form.isRowVisible(panel.solver)
    assert window.residual.legend.isVisible() and window.gates.legend.isVisible()


def test_a_cached_clean_run_says_cached_not_0_ms(window, qtbot):
    window.corruption.controls["strong"].slider.setValue(2 * SLIDER_SCALE)
    qtbot.waitUntil(lambda: window.session.result.severities["strong"] == 2.0 and not window.runner.busy,
                    timeout=30000)
    window.corruption.reset.click()
    qtbot.waitUntil(lambda: window.session.result.severities["strong"] == 0.0 and not window.runner.busy,
                    timeout=30000)
    assert window.session.result.from_cache
    assert window.status_solve.text().endswith("· cached") and " 0 ms" not in window.status_solve.text()


def test_every_solver_field_has_a_tooltip(window):
    panel = window.solver_panel
    for widget in (panel.solver, panel.max_iter, panel.tol, panel.stop_mode, panel.device, *panel.options.values()):
        assert widget.toolTip(), widget.objectName()
        assert panel.form.labelForField(widget).toolTip(), widget.objectName()


def test_load_session_adds_it_to_the_recent_files(window, qtbot, tmp_path):
    path = tmp_path / "mine.json"
    window.session.save(path)
    window.load_session(str(path))
    _idle(qtbot, window)
    assert window.recent.paths()[0] == str(path.resolve())


def test_bench_gui_only_makes_no_claim_about_torchdeq(monkeypatch, capsys):
    from deqstudio.cli import main
    from deqstudio.gui import bench

    fake = {"slider_to_plot_ms_p50": 10.0, "slider_to_plot_ms_p95": 20.0, "slider_moves": 20, "playback_fps": 60.0,
            "playback_frames": 300, "solver_steps_per_frame_set": 12, "device": "cpu", "window_shown_s": 1.0,
            "first_plot_s": 1.5, "table_fill_s": 2.0, "platform": "offscreen"}
    monkeypatch.setattr(bench, "bench_gui", lambda **kwargs: dict(fake, asked=kwargs))
    assert main(["bench", "--gui-only", "--json", "--checkpoint", __file__, "--dataset", __file__]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["torchdeq"] is None and "torchdeq_hint" not in report and report["solver"] == []
    assert report["gui"]["first_plot_s"] == 1.5
    assert report["gui"]["asked"]["checkpoint"] == __file__
    assert main(["bench", "--gui-only"]) == 0
    out = capsys.readouterr()
    assert "torchdeq" not in out.out + out.err and "first solve plotted 1.50 s" in out.out


def test_bench_measures_the_first_plot_in_a_fresh_process(small_files):
    from deqstudio.gui.bench import startup_seconds

    ck, data = small_files
    shown, first_plot = startup_seconds(1, ck, data, timeout=120)
    assert 0 < shown < first_plot < 120
