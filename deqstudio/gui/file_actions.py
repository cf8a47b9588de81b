"""File › Open checkpoint / dataset / model and data / recent, drag and drop, Save / Load session, Reopen last
session.

Files are read off the UI thread (on the solve worker); a file that cannot be used is a message in the banner
and whatever was open stays open. A checkpoint that does not fit the open dataset (or the reverse) opens the
Open model and data dialog, with the dataset the checkpoint records filled in when it is found.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6 import QtGui, QtWidgets

from ..errors import LoadError, printable
from ..io.guard import open_regular
from ..io.inspect import HDF5_MAGIC
from ..session.startup import show_first_solve
from .open_pair import OpenPairDialog
from .painted import next_paint

CHECKPOINT_FILTER = "DEQ Studio models (*.pt *.pth *.ckpt *.zip);;All files (*)"
DATASET_FILTER = "DEQ Studio datasets (*.h5 *.hdf5);;All files (*)"
SESSION_FILTER = "DEQ Studio sessions (*.json);;All files (*)"
# the start-up helper's first solve is waited for this long; a slower one is stopped and the model loads here
FIRST_SOLVE_WAIT_S = 20.0
FIRST_PAINT_WAIT_S = 1.0


class FileActions:
    """The window's file menu: opening, recent files, sessions. ``remember`` False leaves no trace (screenshots)."""

    def __init__(self, window, session, recent, status, remember: bool = True) -> None:
        self.window, self.session, self.recent, self.status = window, session, recent, status
        self.remember = remember
        self._tasks: set[asyncio.Task] = set()
        self._pair_dialog: OpenPairDialog | None = None
        self.import_dialog = None

    def in_background(self, coroutine) -> asyncio.Task:
        """Run ``coroutine`` on the event loop, keeping a reference until it is done (asyncio keeps weak ones)."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def add_to_menu(self, menu: QtWidgets.QMenu) -> None:
        menu.addAction("Open &checkpoint…", QtGui.QKeySequence.StandardKey.Open, self.ask_checkpoint)
        menu.addAction("Open DEQ &package folder…", self.ask_package_folder)
        menu.addAction("Open &dataset…", self.ask_dataset)
        menu.addAction("Open &model and data…", "Ctrl+Shift+O", lambda: self.ask_pair())
        menu.addAction("&Import official checkpoint…", self.ask_import)
        self.recent_menu = menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        menu.addSeparator()
        menu.addAction("&Save session…", QtGui.QKeySequence.StandardKey.Save, self.ask_save_session)
        menu.addAction("&Load session…", self.ask_load_session)
        menu.addAction("Reopen &last session", self.restore_last_session)

    # -- opening ----------------------------------------------------------------------------------
    async def open_files(self, checkpoint=None, dataset=None) -> bool:
        """Load off the UI thread; on failure show the reason and keep what was open."""
        bar = self.window.statusBar()
        bar.showMessage("loading …")
        runner = self.session.start_solving()
        previewed = False
        try:
            to_read = dataset
            first = self.session.take_first_solve(checkpoint, dataset)
            if first is not None and await show_first_solve(self.session, first, FIRST_SOLVE_WAIT_S):
                previewed = True
                bar.showMessage("loading the model …")
                to_read = None  # open already, with the first solve: the model joins it
                if self.window.isVisible():  # drawn before this process imports torch, which holds it up for seconds
                    await next_paint(self.window.residual.viewport(), FIRST_PAINT_WAIT_S)
            early = self.session.take_early(checkpoint, dataset)
            prepared = await (asyncio.wrap_future(early) if early is not None else
                              runner.run_exclusive(self.session.prepare, checkpoint, to_read))
        except LoadError as exc:
            self._preview_failed(previewed)
            kept = (" Nothing was changed: what was open stays open." if self.session.ready else
                    " Open a DEQ Studio checkpoint (.pt) and dataset (.h5) to begin.")
            self.status.show_message(f"Could not open it. {str(exc).rstrip('.')}.{kept}", True)
            bar.clearMessage()
            if "does not fit" in str(exc) and (checkpoint is None) != (dataset is None):
                self._offer_pair(checkpoint, dataset, str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 — an unexpected failure is still a message
            self._preview_failed(previewed)
            self.status.show_message(f"could not open: {exc}", True)
            bar.clearMessage()
            return False
        if previewed and self.session.preview is None:
            bar.clearMessage()
            return False  # something else was opened while the model loaded: that stays
        self.session.install(*prepared)
        for p in (checkpoint, dataset):
            if p is not None:
                self.remember_file(p)
        bar.clearMessage()
        if self.session.ready:
            self.status.hide_message()
        return True

    def _preview_failed(self, previewed: bool) -> None:
        """The model whose start-up solve is shown did not open here: the window says nothing is open."""
        if previewed and self.session.preview is not None:
            self.session.drop_preview()
            self.window.setWindowTitle("DEQ Studio")
            self.window.busy.settle()

    # -- a model with its data ---------------------------------------------------------------------------------
    @property
    def pair_dialog(self) -> OpenPairDialog:
        if self._pair_dialog is None:
            self._pair_dialog = OpenPairDialog(self, self.window)
            self._pair_dialog.chosen.connect(lambda ck, ds: self.open_in_background(ck, ds))
        return self._pair_dialog

    def ask_pair(self, checkpoint: str = "", dataset: str = "", note: str = "") -> OpenPairDialog:
        """Show File › Open model and data (not modal), optionally filled in."""
        dialog = self.pair_dialog
        dialog.set_paths(str(checkpoint or ""), str(dataset or ""), note)
        dialog.show()
        dialog.raise_()
        return dialog

    def _offer_pair(self, checkpoint, dataset, problem: str) -> None:
        """A file that does not fit what is open: offer to open it with a partner (its recorded dataset, when found)."""
        if checkpoint is not None:
            note = ("This model does not fit the open dataset. Opening it with its own dataset switches both at once.")
        else:
            note = "This dataset does not fit the open model: choose a model for it to open both at once."
        self.ask_pair(str(checkpoint or ""), str(dataset or ""), note)

    def open_in_background(self, checkpoint=None, dataset=None) -> None:
        self.in_background(self.open_files(checkpoint, dataset))

    def remember_file(self, path) -> None:
        if self.remember:
            self.recent.add(str(Path(path).resolve()))

    def ask_checkpoint(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.window, "Open checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.open_in_background(checkpoint=path)

    def ask_package_folder(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self.window, "Open DEQ package folder")
        if path:
            self.open_in_background(checkpoint=path)

    def ask_dataset(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.window, "Open dataset", "", DATASET_FILTER)
        if path:
            self.open_in_background(dataset=path)

    def ask_import(self):
        """File › Import official checkpoint…: the import dialog (modeless; it opens what it writes)."""
        from .import_dialog import show_import_dialog

        self.import_dialog = show_import_dialog(self, self.window, self.import_dialog)
        return self.import_dialog

    def open_path(self, path: str) -> None:
        """Open a file of either kind, by its content (drag-and-drop, Open recent); a folder is a DEQ package."""
        if Path(path).is_dir():
            self.open_in_background(checkpoint=path)
            return
        try:
            with open_regular(path) as fh:  # a FIFO or a device is refused at once, never read
                head = fh.read(8)
        except ValueError as exc:
            self.status.show_message(f"{Path(path).name}: {exc}", True)
            return
        except OSError as exc:
            self.status.show_message(f"{Path(path).name}: cannot be read ({exc.strerror or exc})", True)
            return
        if head.startswith(HDF5_MAGIC):
            self.open_in_background(dataset=path)
        elif path.endswith(".json"):
            self.load_session(path)
        else:
            self.open_in_background(checkpoint=path)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        paths = self.recent.paths()
        if not paths:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for p in paths:
            self.recent_menu.addAction(printable(p), lambda p=p: self.open_path(p))

    # -- sessions ---------------------------------------------------------------------------------
    def ask_save_session(self) -> None:
        if self.session.preview is not None:  # its file would name no model
            self.status.show_message("The model is still loading: save the session once it has solved this sample.",
                                     True)
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.window, "Save session", "session.json", SESSION_FILTER)
        if path:
            try:
                self.session.save(path)
                self.recent.add(path)
                self.window.statusBar().showMessage(f"saved {path}", 4000)
            except OSError as exc:
                self.status.show_message(f"could not save the session to {path}: {exc.strerror or exc}", True)

    def ask_load_session(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.window, "Load session", "", SESSION_FILTER)
        if path:
            self.load_session(path)

    def load_session(self, path: str, remember: bool = True) -> None:
        self.session.start_solving()
        try:
            self.session.load(path)
        except LoadError as exc:
            self.status.show_message(str(exc), True)
            return
        if remember:  # Load session is an opening like any other: it goes into Open recent
            self.remember_file(path)

    @property
    def last_session_path(self) -> Path:
        return self.recent.path.parent / "last-session.json"

    def restore_last_session(self) -> bool:
        """Load the session saved when the studio was last closed (File › Reopen last session)."""
        if not self.last_session_path.exists():
            self.status.show_message("No last session is remembered yet: one is saved each time the studio closes.",
                                     True)
            return False
        self.load_session(str(self.last_session_path), remember=False)
        return self.session.ready

    def save_last_session(self) -> None:
        if self.session.ready and self.remember:
            try:
                self.last_session_path.parent.mkdir(parents=True, exist_ok=True)
                self.session.save(self.last_session_path)
            except OSError:
                pass  # remembering the session is a convenience; closing must not fail over it
