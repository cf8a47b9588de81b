"""File › Open model and data: switching between pairs that do not fit each other's halves, and the dataset a
checkpoint records offered beside it, among the recent files or the bundled ones (issue 15 item 1)."""

import asyncio
import shutil

from PySide6 import QtCore, QtWidgets

from deqstudio.paths import datasets_dir, models_dir

BC_MODEL = models_dir() / "breast_cancer_deq_udml.pt"
BC_DATA = datasets_dir() / "breast_cancer.h5"


def _menu_action(window, menu_title: str, text: str):
    menu = next(m for m in window.menuBar().findChildren(QtWidgets.QMenu) if m.title().replace("&", "") == menu_title)
    return next(a for a in menu.actions() if a.text().replace("&", "").startswith(text))


def _wait_lookup(qtbot, dialog):
    qtbot.waitUntil(lambda: dialog.lookup is not None and dialog.lookup.done(), timeout=60000)


def test_open_model_and_data_switches_to_a_pair_that_fits_neither_open_half(window, qtbot):
    assert window.session.dataset.name == "synthetic-0"
    _menu_action(window, "File", "Open model and data").trigger()
    dialog = window.files.pair_dialog
    assert dialog.isVisible() and not dialog.isModal()
    dialog.checkpoint.setText(str(BC_MODEL))
    dialog.checkpoint.editingFinished.emit()  # as leaving the field does
    _wait_lookup(qtbot, dialog)
    assert dialog.dataset.text().endswith("breast_cancer.h5")
    assert "breast-cancer-wisconsin" in dialog.note.text() and "found among the bundled datasets" in dialog.note.text()
    qtbot.mouseClick(dialog.open_button, QtCore.Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    qtbot.waitUntil(lambda: window.session.dataset.name == "breast-cancer-wisconsin"
                    and window.session.result is not None and window.session.result.modality_names == (
                        "mean", "se", "worst") and not window.runner.busy, timeout=60000)
    assert "breast_cancer_deq_udml.pt" in window.windowTitle() and not window.banner.isVisible()
    assert list(window.corruption.controls) == ["mean", "se", "worst"]
    assert window.residual.series_names()  # drawn
    assert {str(BC_MODEL.resolve()), str(BC_DATA.resolve())} <= set(window.recent.paths())  # both in Open recent


def test_a_checkpoint_that_does_not_fit_offers_its_dataset_found_beside_it(window, qtbot, tmp_path):
    pair = tmp_path / "pair"
    pair.mkdir()
    shutil.copyfile(BC_MODEL, pair / "model.pt")
    shutil.copyfile(BC_DATA, pair / "data-copy.h5")
    shutil.copyfile(window.session.dataset.path, pair / "another.h5")  # a dataset of another name: not offered
    opening = asyncio.ensure_future(window.files.open_files(checkpoint=pair / "model.pt"))  # File › Open checkpoint
    qtbot.waitUntil(opening.done, timeout=60000)
    assert opening.result() is False
    assert window.banner.isVisible() and "does not fit" in window.banner.text()
    assert window.session.dataset.name == "synthetic-0"  # refused: what was open stays open
    dialog = window.files.pair_dialog
    assert dialog.isVisible() and "does not fit the open dataset" in dialog.intro.text()
    _wait_lookup(qtbot, dialog)
    assert dialog.checkpoint.text() == str(pair / "model.pt")
    assert dialog.dataset.text() == str((pair / "data-copy.h5").resolve())
    assert "found beside the checkpoint" in dialog.note.text()
    qtbot.mouseClick(dialog.open_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.session.dataset.name == "breast-cancer-wisconsin"
                    and window.session.result is not None and not window.runner.busy, timeout=60000)
    assert not window.banner.isVisible()  # the success clears the refusal


def test_the_recorded_dataset_is_found_among_the_recent_files(window, qtbot, tmp_path):
    lonely, elsewhere = tmp_path / "lonely", tmp_path / "elsewhere"
    lonely.mkdir()
    elsewhere.mkdir()
    shutil.copyfile(BC_MODEL, lonely / "bc.pt")
    shutil.copyfile(BC_DATA, elsewhere / "bc.h5")
    window.recent.add(str(elsewhere / "bc.h5"))
    dialog = window.files.ask_pair(str(lonely / "bc.pt"))
    _wait_lookup(qtbot, dialog)
    assert dialog.dataset.text() == str((elsewhere / "bc.h5").resolve())
    assert "found among the recent files" in dialog.note.text()


def test_a_recorded_dataset_found_nowhere_is_said_and_nothing_opens_without_one(window, qtbot, tmp_path, small_files):
    ck, _ = small_files
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(ck, alone / "syn.pt")  # records 'synthetic-0': no such dataset beside it, recent or bundled
    window.recent.path.write_text("{}")
    dialog = window.files.ask_pair(str(alone / "syn.pt"))
    _wait_lookup(qtbot, dialog)
    assert "'synthetic-0'" in dialog.note.text() and "was not found" in dialog.note.text()
    assert dialog.dataset.text() == ""
    qtbot.mouseClick(dialog.open_button, QtCore.Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and "Choose a dataset file to open." in dialog.note.text()
    dialog.dataset.setText(str(tmp_path / "missing.h5"))
    qtbot.mouseClick(dialog.open_button, QtCore.Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and "No such file" in dialog.note.text()


def test_a_dataset_that_does_not_fit_offers_to_choose_a_model_for_it(window, qtbot):
    opening = asyncio.ensure_future(window.files.open_files(dataset=BC_DATA))
    qtbot.waitUntil(opening.done, timeout=60000)
    assert opening.result() is False and window.session.dataset.name == "synthetic-0"
    dialog = window.files.pair_dialog
    assert dialog.isVisible() and dialog.dataset.text() == str(BC_DATA) and dialog.checkpoint.text() == ""
    assert "choose a model for it" in dialog.intro.text()
    dialog.checkpoint.setText(str(BC_MODEL))
    qtbot.mouseClick(dialog.open_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.session.dataset.name == "breast-cancer-wisconsin"
                    and window.session.result is not None and not window.runner.busy, timeout=60000)
