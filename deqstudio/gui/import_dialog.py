"""File › Import official checkpoint…: convert an official DEQ fusion file and open it, saying first what was found.

The dialog asks for the official file, the dataset of features (or raw inputs) and where to write the DEQ
Studio checkpoint, with the importer's options; "Detect" reads the file (never running anything in it) and shows
what was detected — block, mixing, variant, head, modality order, inputs — or the one line that says what to
pass; "Import and open" writes the checkpoint and opens it with the dataset. Reading and writing run on the solve
worker, off the UI thread. The dialog is modeless: it is shown, never ``exec``'d.
"""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtWidgets

from ..errors import DeqStudioError, printable

SOURCE_FILTER = "Official checkpoints (*.pt *.pth *.bin *.ckpt);;All files (*)"
DATASET_FILTER = "DEQ Studio datasets (*.h5 *.hdf5);;All files (*)"
AUTO = "detect"


def _plan(source: str, features: str, options):
    from ..io.dataset import read_dataset
    from ..workflows.import_deqfusion import plan_import

    return plan_import(source, read_dataset(features), options)


def _write(plan, out: str, command: str):
    from ..workflows.import_deqfusion import write_import

    return write_import(plan, out, evaluate=False, command=command)


class ImportDialog(QtWidgets.QDialog):
    """Paths, options, what was detected, and the import. ``files`` is the window's ``FileActions``."""

    def __init__(self, files, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import official checkpoint")
        self.setObjectName("ImportDialog")
        self.setModal(False)
        self.resize(720, 560)
        self.files = files
        self.plan = None
        self.busy = False
        layout = QtWidgets.QVBoxLayout(self)
        form = QtWidgets.QFormLayout()
        self.source = self._path_row(form, "Official checkpoint", self._browse_source)
        self.features = self._path_row(form, "Features dataset", self._browse_features)
        self.out = self._path_row(form, "Write to", self._browse_out)
        layout.addLayout(form)
        options = QtWidgets.QGroupBox("Options (leave empty to detect)")
        grid = QtWidgets.QFormLayout(options)
        self.modalities = QtWidgets.QLineEdit()
        self.modalities.setPlaceholderText("the dataset's modalities in the block's branch order (default: its order)")
        self.prefix = QtWidgets.QLineEdit()
        self.prefix.setPlaceholderText("the block's key prefix, when the file has several")
        self.head_key = QtWidgets.QLineEdit()
        self.head_key.setPlaceholderText("the classifier's key, when several fit")
        self.variant = self._choice(("root", "mmimdb"))
        self.task = self._choice(("multiclass", "multilabel"))
        self.inputs = self._choice(("features", "raw"))
        for label, widget in (("modalities", self.modalities), ("prefix", self.prefix), ("head key", self.head_key),
                              ("variant", self.variant), ("task", self.task), ("inputs", self.inputs)):
            grid.addRow(label, widget)
        layout.addWidget(options)
        self.detected = QtWidgets.QPlainTextEdit()
        self.detected.setReadOnly(True)
        self.detected.setObjectName("detected")
        self.detected.setPlaceholderText("Choose the official file and the dataset, then Detect: what was found in the "
                                         "file is shown here before anything is written.")
        layout.addWidget(self.detected, 1)
        buttons = QtWidgets.QHBoxLayout()
        self.detect_button = QtWidgets.QPushButton("Detect")
        self.import_button = QtWidgets.QPushButton("Import and open")
        self.import_button.setEnabled(False)
        close = QtWidgets.QPushButton("Close")
        buttons.addStretch(1)
        for b in (self.detect_button, self.import_button, close):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.detect_button.clicked.connect(self.detect)
        self.import_button.clicked.connect(self.import_and_open)
        close.clicked.connect(self.close)
        for w in (self.source, self.features, self.modalities, self.prefix, self.head_key):
            w.textChanged.connect(self._invalidate)
        for w in (self.variant, self.task, self.inputs):
            w.currentTextChanged.connect(self._invalidate)
        self.source.textChanged.connect(self._suggest_out)

    # -- widgets ------------------------------------------------------------------------------------
    def _path_row(self, form, label: str, browse) -> QtWidgets.QLineEdit:
        row = QtWidgets.QHBoxLayout()
        edit = QtWidgets.QLineEdit()
        button = QtWidgets.QPushButton("Browse…")
        button.clicked.connect(browse)
        row.addWidget(edit, 1)
        row.addWidget(button)
        form.addRow(label, row)
        return edit

    @staticmethod
    def _choice(values) -> QtWidgets.QComboBox:
        box = QtWidgets.QComboBox()
        box.addItems([AUTO, *values])
        return box

    def _browse_source(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Official checkpoint", "", SOURCE_FILTER)
        if path:
            self.source.setText(path)

    def _browse_features(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Features dataset", "", DATASET_FILTER)
        if path:
            self.features.setText(path)

    def _browse_out(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Write the DEQ Studio checkpoint", self.out.text(),
                                                        "DEQ Studio checkpoints (*.pt)")
        if path:
            self.out.setText(path)

    def _suggest_out(self, source: str) -> None:
        if source and not self.out.isModified():
            p = Path(source)
            self.out.setText(str(p.with_name(f"{p.stem}.deqstudio.pt")))

    def _invalidate(self, *_) -> None:
        self.plan = None
        self.import_button.setEnabled(False)

    # -- what the user asked ------------------------------------------------------------------------
    def options(self):
        from ..workflows.import_deqfusion import ImportOptions

        def text(edit):
            return edit.text().strip() or None

        def choice(box):
            return None if box.currentText() == AUTO else box.currentText()

        names = text(self.modalities)
        return ImportOptions(modalities=tuple(n.strip() for n in names.split(",") if n.strip()) if names else None,
                             head_key=text(self.head_key), prefix=text(self.prefix), variant=choice(self.variant),
                             task=choice(self.task), inputs=choice(self.inputs))

    def show_problem(self, text: str) -> None:
        self.detected.setPlainText(f"error: {printable(text)}")
        self.import_button.setEnabled(False)

    # -- detect and import ----------------------------------------------------------------------------
    def detect(self) -> None:
        if self.busy:
            return
        source, features = self.source.text().strip(), self.features.text().strip()
        if not source or not features:
            self.show_problem("choose the official checkpoint and the features dataset first")
            return
        try:
            options = self.options()
        except DeqStudioError as exc:
            self.show_problem(str(exc))
            return
        self.detected.setPlainText("reading the file (nothing in it is run) …")
        self.files.in_background(self._detect(source, features, options))

    async def _detect(self, source: str, features: str, options) -> None:
        self.busy = True
        try:
            plan = await self.files.session.start_solving().run_exclusive(_plan, source, features, options)
        except DeqStudioError as exc:
            self.show_problem(str(exc))
            return
        except OSError as exc:
            self.show_problem(f"cannot read the file: {exc.strerror or exc}")
            return
        finally:
            self.busy = False
        self.plan = plan
        self.detected.setPlainText("\n".join(printable(line) for line in plan.summary()))
        self.import_button.setEnabled(True)

    def import_and_open(self) -> None:
        if self.plan is None or self.busy:
            return
        out = self.out.text().strip()
        if not out:
            self.show_problem("choose where to write the DEQ Studio checkpoint")
            return
        self.files.in_background(self._import(self.plan, out, self.features.text().strip()))

    async def _import(self, plan, out: str, features: str) -> None:
        from ..workflows.import_deqfusion import command_line

        self.busy = True
        command = command_line(plan.source, features, out, self.options())
        try:
            path = await self.files.session.start_solving().run_exclusive(_write, plan, out, command)
        except DeqStudioError as exc:
            self.show_problem(str(exc))
            return
        except OSError as exc:
            self.show_problem(f"cannot write {out}: {exc.strerror or exc}")
            return
        finally:
            self.busy = False
        self.detected.appendPlainText(f"\nsaved {printable(str(path))}; opening it …")
        if await self.files.open_files(str(path), features):
            self.close()
        else:
            self.detected.appendPlainText("it could not be opened: see the window's message")


def show_import_dialog(files, parent=None, dialog: ImportDialog | None = None) -> ImportDialog:
    """Show the dialog (modeless), made once and reused: what was typed in it stays for the next import."""
    dialog = dialog or ImportDialog(files, parent)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog
