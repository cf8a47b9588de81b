"""The studio on imported models: File › Import official checkpoint… detects before it writes, then opens the
result; the corruption panel says corruptions act on imported features; a multilabel model's samples table and
probability plot show label sets, F1 and sigmoid probabilities; what the model lacks is "not provided"."""

from __future__ import annotations

import asyncio

import pytest

from deqstudio.gui.panels.samples import BrowseModel
from official_files import imported_user_model


def _wait_idle(qtbot, win, timeout=60000):
    qtbot.waitUntil(lambda: not win.runner.busy, timeout=timeout)


@pytest.fixture(scope="module")
def multilabel_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("studio_ml")
    ck, data, _, _ = imported_user_model(folder, multilabel=True, seed=6, n=3, classes=5)
    return folder, ck, data


def test_the_import_dialog_detects_then_writes_and_opens(window, qtbot, multilabel_files, tmp_path, small_files):
    folder, _, data = multilabel_files
    files = window.files
    dialog = files.ask_import()
    assert dialog.isVisible() and not dialog.isModal()
    out = tmp_path / "via_dialog.pt"
    dialog.source.setText(str(folder / "official.pt"))
    dialog.features.setText(str(data))
    dialog.out.setText(str(out))
    assert not dialog.import_button.isEnabled()
    dialog.detect_button.click()
    qtbot.waitUntil(lambda: "block:" in dialog.detected.toPlainText(), timeout=30000)
    shown = dialog.detected.toPlainText()
    for words in ("under 'fusion.'", "variant: root", "head: classifier", "multilabel", "branch 0 ← m0",
                  "corruptions act on imported features"):
        assert words in shown, words
    assert dialog.import_button.isEnabled() and not out.exists()  # nothing written before the import
    dialog.modalities.setText("m1,m0,m2")  # any change asks for a new detection first
    assert not dialog.import_button.isEnabled()
    dialog.detect_button.click()
    qtbot.waitUntil(lambda: "branch 0 ← m1" in dialog.detected.toPlainText(), timeout=30000)
    dialog.import_button.click()
    qtbot.waitUntil(lambda: window.session.checkpoint is not None and window.session.checkpoint.path == out
                    and window.session.result is not None, timeout=60000)
    _wait_idle(qtbot, window)
    assert out.exists() and not dialog.isVisible()
    info = window.session.info
    assert info.source == "imported from official.pt" and info.modality_names == ("m1", "m0", "m2")
    assert "(imported from official.pt)" in window.windowTitle()
    assert window.session.checkpoint.imported["modality_order"] == ["m1", "m0", "m2"]
    note = window.corruption.input_note
    assert note.isVisibleTo(window) and "Corruptions act on imported features" in note.text()
    assert "not provided by this model" in window.udml.title.text()
    native, _ = small_files  # a DEQ Studio model again: its inputs are the raw data, and no note says otherwise
    task = asyncio.ensure_future(window.open_files(native, small_files[1]))
    qtbot.waitUntil(task.done, timeout=60000)
    _wait_idle(qtbot, window)
    assert not note.isVisibleTo(window)


def test_the_import_dialog_says_what_is_wrong_in_one_line(window, qtbot, tmp_path, small_files):
    _, data = small_files
    bad = tmp_path / "notes.pt"
    bad.write_text("not a torch file")
    dialog = window.files.ask_import()
    dialog.source.setText(str(bad))
    dialog.features.setText(str(data))
    dialog.out.setText(str(tmp_path / "never.pt"))
    dialog.detect_button.click()
    qtbot.waitUntil(lambda: dialog.detected.toPlainText().startswith("error:"), timeout=30000)
    assert len(dialog.detected.toPlainText().splitlines()) == 1 and "notes.pt" in dialog.detected.toPlainText()
    assert not dialog.import_button.isEnabled() and not (tmp_path / "never.pt").exists()
    assert window.session.checkpoint.path.name == "syn.pt"  # what was open stays open
    dialog.close()


def test_a_multilabel_model_in_the_window(window, qtbot, multilabel_files):
    _, ck, data = multilabel_files
    task = asyncio.ensure_future(window.open_files(ck, data))
    qtbot.waitUntil(task.done, timeout=60000)
    assert task.result() is True
    qtbot.waitUntil(lambda: window.session.result is not None and window.session.result.multilabel
                    and window.session.table is not None, timeout=60000)
    _wait_idle(qtbot, window)
    browser = window.browser
    assert browser.model.headers == BrowseModel.MULTILABEL_HEADERS
    assert "micro F1" in browser.summary.text() and "macro F1" in browser.summary.text()
    model = browser.model
    f1_cell = model.data(model.index(0, 3))
    assert 0.0 <= float(f1_cell) <= 1.0
    table = window.session.table
    labels_cell = model.data(model.index(0, 1))
    expected = ", ".join(f"label{i}" for i in range(5) if table.labels[0, i]) or "none"
    assert labels_cell == expected
    result = window.session.result
    plot = window.probabilities
    assert plot._threshold is not None and "sigmoid" in plot.getPlotItem().getAxis("left").labelText
    window.session.set_step(-1)
    plot.show_step(len(result.corrupted.probabilities) - 1)
    assert "predicts" in plot.note and f"true {result.label_text()}" in plot.note
    assert f"true {result.label_text()}" in window.status.solve.text()
