"""File › Open model and data…: a checkpoint and a dataset chosen together, so that one can switch between pairs
that do not fit each other's halves. Choosing a checkpoint looks for the dataset it records (beside it, among the
recent files, among the bundled datasets) and fills it in, saying where it was found.

The dialog is not modal (``show``): nothing waits in a nested event loop, and tests drive its widgets directly.
"""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtWidgets

from ..errors import printable
from ..session.pairing import recorded_dataset_of


class OpenPairDialog(QtWidgets.QDialog):
    chosen = QtCore.Signal(str, str)  # checkpoint, dataset
    INTRO = "Open a model and a dataset together (either may not fit what is open now)."

    def __init__(self, files, parent=None) -> None:
        super().__init__(parent)
        self.files = files
        self.setWindowTitle("Open model and data")
        self.setMinimumWidth(560)
        grid = QtWidgets.QGridLayout(self)
        self.intro = QtWidgets.QLabel(self.INTRO)
        self.intro.setWordWrap(True)
        grid.addWidget(self.intro, 0, 0, 1, 3)
        self.checkpoint = QtWidgets.QLineEdit()
        self.checkpoint.setObjectName("pair_checkpoint")
        self.checkpoint.setPlaceholderText("model file (.pt)")
        self.dataset = QtWidgets.QLineEdit()
        self.dataset.setObjectName("pair_dataset")
        self.dataset.setPlaceholderText("dataset file (.h5)")
        self.browse_checkpoint = QtWidgets.QPushButton("Browse…")
        self.browse_dataset = QtWidgets.QPushButton("Browse…")
        for row, (label, field, button) in enumerate((("Model", self.checkpoint, self.browse_checkpoint),
                                                      ("Dataset", self.dataset, self.browse_dataset)), start=1):
            grid.addWidget(QtWidgets.QLabel(label), row, 0)
            grid.addWidget(field, row, 1)
            grid.addWidget(button, row, 2)
        self.note = QtWidgets.QLabel("")
        self.note.setObjectName("pair_note")
        self.note.setWordWrap(True)
        self.note.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        grid.addWidget(self.note, 3, 0, 1, 3)
        self.buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Open
                                                  | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.open_button = self.buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Open)
        grid.addWidget(self.buttons, 4, 0, 1, 3)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.browse_checkpoint.clicked.connect(self._browse_checkpoint)
        self.browse_dataset.clicked.connect(self._browse_dataset)
        self.checkpoint.editingFinished.connect(lambda: self.look_up(self.checkpoint.text()))
        self.dataset.textEdited.connect(lambda _text: setattr(self, "_filled", ""))
        self._filled = ""  # the dataset path this dialog filled in (replaced when another checkpoint is chosen)
        self._looked_up = ""
        self.lookup = None  # the running look-up (an asyncio task), for tests

    # -- choosing ----------------------------------------------------------------------------------------------
    def set_paths(self, checkpoint: str = "", dataset: str = "", note: str = "") -> None:
        self.dataset.setText(dataset)
        self._filled = self._looked_up = ""
        self.checkpoint.setText(checkpoint)
        self.intro.setText(note or self.INTRO)
        self.note.setText("")
        if checkpoint and not dataset:
            self.look_up(checkpoint)

    def _browse_checkpoint(self) -> None:
        from .file_actions import CHECKPOINT_FILTER

        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Model file", self.checkpoint.text(), CHECKPOINT_FILTER)
        if path:
            self.checkpoint.setText(path)
            self.look_up(path)

    def _browse_dataset(self) -> None:
        from .file_actions import DATASET_FILTER

        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Dataset file", self.dataset.text(), DATASET_FILTER)
        if path:
            self.dataset.setText(path)
            self._filled = ""

    def look_up(self, checkpoint: str) -> None:
        """Find the dataset ``checkpoint`` records (off the UI thread) and fill it in if the field is free."""
        checkpoint = checkpoint.strip()
        if not checkpoint or checkpoint == self._looked_up:
            return
        self._looked_up = checkpoint
        self.note.setText("Looking for the dataset this model was trained on …")
        self.lookup = self.files.in_background(self._look_up(checkpoint))

    async def _look_up(self, checkpoint: str) -> None:
        runner = self.files.session.start_solving()
        try:
            found = await runner.run_exclusive(recorded_dataset_of, checkpoint, self.files.recent.paths())
        except Exception as exc:  # noqa: BLE001 — a look-up that fails only means nothing is suggested
            found, problem = None, str(exc)
        else:
            problem = ""
        if self.checkpoint.text().strip() != checkpoint:
            return  # another checkpoint was chosen meanwhile
        if found is None:
            self.note.setText(problem or "This model does not record its dataset (or it cannot be read): choose one.")
            return
        self.note.setText(found.describe())
        self.adjustSize()  # the note may take several lines
        if found.path is not None and (not self.dataset.text().strip() or self.dataset.text() == self._filled):
            self._filled = str(found.path)
            self.dataset.setText(self._filled)

    def accept(self) -> None:
        checkpoint, dataset = self.checkpoint.text().strip(), self.dataset.text().strip()
        missing = [what for what, path in (("model", checkpoint), ("dataset", dataset)) if not path]
        if missing:
            self.note.setText(f"Choose a {' and a '.join(missing)} file to open.")
            return
        absent = [printable(p) for p in (checkpoint, dataset) if not Path(p).exists()]
        if absent:
            self.note.setText(f"No such file: {', '.join(absent)}")
            return
        self.chosen.emit(checkpoint, dataset)
        super().accept()
