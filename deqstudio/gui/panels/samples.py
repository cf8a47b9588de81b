"""The samples table: every sample of a split with label, prediction, steps and residual; sort and filter.

The model is virtual over the session's ``SampleTable``: all rows exist at once, computed columns fill in as the
table's chunks arrive; sorting and filtering work on what is computed so far (``BrowseFilter``) and say so.
The table is computed lazily: only while it is shown, and only once the settings have stopped changing.

For a multilabel model the label and prediction columns hold label sets and "correct" becomes each sample's F1
(of its predicted set against its labels); the summary gives micro and macro F1 instead of the accuracy.
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from .sample_order import FILTERS, BrowseFilter

_TOP = QtCore.QModelIndex()  # the table has no tree: every row hangs from the invisible root
NOT_COMPUTED = "…"
SETTLE_MS = 350  # the table is recomputed once the settings have been still this long (never per keystroke)
RESORT_MS = 600  # a sorted or filtered view follows arriving chunks at most this often
WRONG = "#b3261e"
_DISPLAY, _TOOLTIP, _FOREGROUND = (QtCore.Qt.ItemDataRole.DisplayRole, QtCore.Qt.ItemDataRole.ToolTipRole,
                                   QtCore.Qt.ItemDataRole.ForegroundRole)
_ROLES = (_DISPLAY, _TOOLTIP, _FOREGROUND)
_WRONG = QtGui.QColor(WRONG)


class BrowseModel(QtCore.QAbstractTableModel):
    HEADERS = ("sample", "label", "prediction", "correct", "steps", "final residual", "prediction now", "steps now")
    TIPS = ("dataset index", "true class", "predicted class (clean input)", "prediction matches the label",
            "solver steps to converge (clean input)",
            "relative residual of the returned state (the best step), clean input",
            "predicted class under the current corruption (red: wrong)",
            "solver steps under the current corruption (red: not converged)")
    MULTILABEL_HEADERS = ("sample", "labels", "predicted labels", "F1", "steps", "final residual",
                          "predicted now", "steps now")
    MULTILABEL_TIPS = ("dataset index", "true label set", "predicted label set (clean input)",
                       "F1 of the predicted set against the true one", *TIPS[4:6],
                       "predicted label set under the current corruption (red: not the true set)", TIPS[7])
    NOW_COLUMNS = (6, 7)
    LABEL_COLUMNS = (1, 2, 6)

    def __init__(self) -> None:
        super().__init__()
        self.table = None
        self.class_names: tuple[str, ...] = ()
        self.multilabel = False

    def set_table(self, table, class_names) -> None:
        self.beginResetModel()
        self.table, self.class_names = table, tuple(class_names)
        self.multilabel = table is not None and table.task == "multilabel"
        self.endResetModel()
        self.headerDataChanged.emit(QtCore.Qt.Orientation.Horizontal, 0, len(self.HEADERS) - 1)

    def refresh(self) -> None:
        """Computed values arrived (or started over): repaint the computed columns."""
        if self.table is not None and len(self.table):
            self.dataChanged.emit(self.index(0, 2), self.index(len(self.table) - 1, len(self.HEADERS) - 1))
            self.headerDataChanged.emit(QtCore.Qt.Orientation.Horizontal, 6, 7)

    def rowCount(self, parent=_TOP) -> int:  # noqa: N802
        return 0 if self.table is None or parent.isValid() else len(self.table)

    def columnCount(self, parent=_TOP) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=QtCore.Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != QtCore.Qt.Orientation.Horizontal:
            return None
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            return (self.MULTILABEL_HEADERS if self.multilabel else self.HEADERS)[section]
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            label = self.table.corruption_label if self.table is not None else ""
            tips = self.MULTILABEL_TIPS if self.multilabel else self.TIPS
            return tips[section] + (f" ({label})" if section in self.NOW_COLUMNS and label else "")
        return None

    @staticmethod
    def is_computed_column(col: int) -> bool:
        return col >= 2

    def _cell(self, row: int, col: int):
        """(value, known) of a cell; value is a number (a label set's row of 0/1 for a multilabel model)."""
        t = self.table
        if col == 0:
            return int(t.indices[row]), True
        if col == 1:
            return (t.labels[row] if self.multilabel else int(t.labels[row])), True
        cols = t.clean if col < 6 else t.now
        if cols is None or not cols.done[row]:
            return None, False
        if col in (2, 6):
            return (cols.predictions[row] if self.multilabel else int(cols.predictions[row])), True
        if col == 3:
            if self.multilabel:
                return float(cols.f1[row]), True
            return bool(cols.predictions[row] == t.labels[row]), True
        if col in (4, 7):
            return int(cols.steps[row]), True
        return float(cols.final_rel[row]), True

    def sort_key(self, col: int) -> tuple[np.ndarray, np.ndarray]:
        """(values, known) over all rows, as float64, for sorting with numpy."""
        t = self.table
        if col == 0:
            return t.indices.astype(np.float64), np.ones(len(t), bool)
        if col == 1:
            return self._class_key(t.labels), np.ones(len(t), bool)
        cols = t.clean if col < 6 else t.now
        if cols is None:
            return np.zeros(len(t)), np.zeros(len(t), bool)
        correct = cols.f1 if self.multilabel else cols.predictions == t.labels
        values = {2: self._class_key(cols.predictions), 3: correct, 4: cols.steps, 5: cols.final_rel,
                  6: self._class_key(cols.predictions), 7: cols.steps}[col].astype(np.float64)
        return np.nan_to_num(values, nan=np.inf), cols.done.copy()

    def _class_key(self, values: np.ndarray) -> np.ndarray:
        """Classes as numbers to sort by; label sets ordered by the classes they hold, the first most significant."""
        if not self.multilabel:
            return values.astype(np.float64)
        return (values.clip(0, 1) @ (0.5 ** np.arange(values.shape[1]))).astype(np.float64)

    def _name(self, c) -> str:
        if self.multilabel:
            picked = [self._name_of(int(i)) for i in np.flatnonzero(np.asarray(c) > 0)]
            return ", ".join(picked) if picked else "none"
        return self._name_of(c)

    def _name_of(self, c: int) -> str:
        return self.class_names[c] if 0 <= c < len(self.class_names) else str(c)

    def data(self, index, role=QtCore.Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.table is None:
            return None
        return self.cell(index.row(), index.column(), role)

    def cell(self, row: int, col: int, role) -> object:
        """What a cell shows for ``role`` (a view asks for many roles per cell: the unused ones return at once)."""
        if role not in _ROLES:
            return None
        v, known = self._cell(row, col)
        if role == _DISPLAY:
            if not known:
                return NOT_COMPUTED
            if col in (1, 2, 6):
                return self._name(v)
            if col == 3:
                return f"{v:.2f}" if self.multilabel else ("yes" if v else "no")
            if col == 5:
                return "—" if not np.isfinite(v) else f"{v:.1e}"
            return str(v)
        if role == _TOOLTIP:
            return None if known else "not computed yet: the table fills in the background"
        if known:  # the foreground
            t = self.table
            wrong = (col == 3 and v < 1) or (col == 6 and np.any(v != t.labels[row]))
            unconverged = (col == 4 and not t.clean.converged[row]) or (col == 7 and not t.now.converged[row])
            if wrong or unconverged:
                return _WRONG
        return None


class SampleBrowser(QtWidgets.QWidget):
    """The split's samples as a sortable, filterable table; choosing a row shows that sample. Follows the session."""

    sample_chosen = QtCore.Signal(int)

    def __init__(self, parent=None, session=None) -> None:
        super().__init__(parent)
        self.setObjectName("SampleBrowser")
        self.setMinimumWidth(220)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QtWidgets.QHBoxLayout()
        self.search = QtWidgets.QLineEdit()
        self.search.setPlaceholderText("filter: sample or class")
        self.search.setClearButtonEnabled(True)
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(list(FILTERS))
        self.mode.setToolTip("wrong / not converged: under the current corruption when one is set, else clean")
        row.addWidget(self.search, 2)
        row.addWidget(self.mode, 1)
        layout.addLayout(row)
        self.model = BrowseModel()
        self.proxy = BrowseFilter()
        self.proxy.setSourceModel(self.model)
        self.view = QtWidgets.QTableView()
        self.view.setObjectName("samples_table")
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.setTabKeyNavigation(False)  # Tab leaves the table instead of walking its cells
        self.view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().hide()
        self.view.verticalHeader().setDefaultSectionSize(self.view.fontMetrics().height() + 6)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setSortIndicator(0, QtCore.Qt.SortOrder.AscendingOrder)
        metrics = self.view.fontMetrics()
        for col, sample_text in enumerate(("000000", "", "", "yes", "0000", "0.0e-00", "", "0000")):
            text = max(sample_text, BrowseModel.HEADERS[col], key=metrics.horizontalAdvance)
            header.resizeSection(col, metrics.horizontalAdvance(text) + 24)  # sized once: 200,000 rows stay cheap
        layout.addWidget(self.view)
        self.summary = QtWidgets.QLabel("loading samples …")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.resume = QtWidgets.QPushButton("Compute the rest")
        self.resume.setToolTip("the table was stopped before it was complete")
        self.resume.hide()
        layout.addWidget(self.resume)
        self.settle = QtCore.QTimer(self, singleShot=True, interval=SETTLE_MS)
        self.settle.timeout.connect(self.fill)
        self.resort = QtCore.QTimer(self, singleShot=True, interval=RESORT_MS)
        self.resort.timeout.connect(self._reorder)
        self._selecting = False
        self._stale_view = False
        self.search.textChanged.connect(self._refilter)
        self.mode.currentTextChanged.connect(self._refilter)
        self.proxy.modelReset.connect(self._after_reorder)
        self.view.selectionModel().selectionChanged.connect(self._chosen)
        self.session = session
        if session is not None:
            self.sample_chosen.connect(session.set_sample)
            session.table_changed.connect(self._on_table_changed)
            session.table_progress.connect(self._on_progress)
            session.sample_changed.connect(self.select_sample)
            session.loaded.connect(lambda info: self._summarise())
            session.filler.first_rows = self.rows_on_screen
            self.resume.clicked.connect(lambda: session.filler.request(force=True))

    # -- following the session ---------------------------------------------------------------------------------
    def _on_table_changed(self, table) -> None:
        if table is not self.model.table:
            self.set_table(table, self.session.info.class_names)
        else:  # the same rows; some columns started over: shown once the settings are still (a drag moves on)
            self._stale_view = True
        self.settle.start()  # computed once the settings are still, and only while shown

    def _on_progress(self, table) -> None:
        if table is not self.model.table or table is None or self._stale_view:
            return
        self.model.refresh()
        if self.proxy.uses_computed and not self.resort.isActive():
            self.resort.start()
        self._summarise()

    def fill(self) -> None:
        """Show the columns that started over, and compute what the table lacks, if it is shown."""
        if self._stale_view:
            self._stale_view = False
            self.model.refresh()
            self._show_now_columns()
            if self.proxy.uses_computed:
                self._reorder()
        if self.session is not None and self.isVisible():
            self.session.filler.request()
        self._summarise()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.settle.start()

    def set_table(self, table, class_names, split: str | None = None) -> None:
        if tuple(class_names) != self.model.class_names:  # class columns as wide as the longest class name
            metrics = self.view.fontMetrics()
            longest = max((metrics.horizontalAdvance(n) for n in class_names), default=0)
            for col in (1, 2, 6):
                width = max(longest, metrics.horizontalAdvance(BrowseModel.HEADERS[col])) + 24
                self.view.horizontalHeader().resizeSection(col, min(width, 160))
        self.model.set_table(table, class_names)
        self._show_now_columns()
        self._summarise()
        if self.session is not None:
            self.select_sample(self.session.sample)

    def _show_now_columns(self) -> None:
        t = self.model.table
        hidden = t is None or t.now is None
        for col in BrowseModel.NOW_COLUMNS:
            if self.view.isColumnHidden(col) != hidden:
                self.view.setColumnHidden(col, hidden)

    def _summarise(self) -> None:
        t = self.model.table
        if t is None:
            loading = self.session is not None and self.session.preview is not None
            self.summary.setText("loading the model: its samples follow …" if loading else
                                 "no samples: open a checkpoint and a dataset")
            return
        n, done = len(t), t.computed
        stats = t.summary()
        parts = [f"{t.split} split: {n:,} samples"]
        if t.corruption_label:
            parts.append(f"under {t.corruption_label}")
        filler = self.session.filler if self.session is not None else None
        if done < n:
            state = "computing" if filler is not None and filler.running else "stopped" if (
                filler is not None and filler.stopped) else "waiting"
            parts.append(f"{done:,} of {n:,} computed ({state})")
        if stats["computed"]:
            score = (f"micro F1 {stats['micro_f1']:.3f} · macro F1 {stats['macro_f1']:.3f}" if "micro_f1" in stats
                     else f"accuracy {stats['accuracy']:.3f}")
            parts.append(("on those: " if done < n else "") + f"{score} · converged "
                         f"{stats['converged']:.3f} · median steps {stats['median_steps']:.0f}")
        if done < n and self.proxy.uses_computed:
            parts.append("sorting and filtering use the computed rows only")
        self.summary.setText(" · ".join(parts))
        self.resume.setVisible(done < n and filler is not None and filler.stopped)

    # -- sorting, filtering, choosing --------------------------------------------------------------------------
    def _refilter(self, *_) -> None:
        self.proxy.set_filter(self.mode.currentText(), self.search.text())

    def _reorder(self) -> None:
        bar = self.view.verticalScrollBar()
        self._scroll = bar.value()
        self.proxy.rebuild()
        bar.setValue(self._scroll)

    def _after_reorder(self) -> None:
        if self.session is not None:  # the shown sample stays shown and selected: a filter never changes it
            self.select_sample(self.session.sample, scroll=False)
        self._summarise()

    def rows_on_screen(self) -> np.ndarray:
        """The table rows the view shows now (they are computed first)."""
        top = self.view.rowAt(0)
        if top < 0 or not len(self.proxy.rows):
            return np.zeros(0, np.int64)
        bottom = self.view.rowAt(self.view.viewport().height() - 1)
        bottom = len(self.proxy.rows) - 1 if bottom < 0 else bottom
        return self.proxy.rows[top : bottom + 1]

    def _chosen(self, *_) -> None:
        if self._selecting:
            return
        rows = self.view.selectionModel().selectedRows()
        if rows:
            src = self.proxy.mapToSource(rows[0])
            self.sample_chosen.emit(int(self.model.table.indices[src.row()]))

    def select_sample(self, index: int, scroll: bool = True) -> None:
        t = self.model.table
        if t is None:
            return
        row = t.row_of(index)
        proxy_index = self.proxy.mapFromSource(self.model.index(row, 0)) if row is not None else QtCore.QModelIndex()
        self._selecting = True
        try:
            selection = self.view.selectionModel()
            if not proxy_index.isValid():  # the shown sample is not listed (another split, or filtered out)
                selection.clear()
            else:
                flags = (QtCore.QItemSelectionModel.SelectionFlag.ClearAndSelect
                         | QtCore.QItemSelectionModel.SelectionFlag.Rows)
                selection.setCurrentIndex(proxy_index, flags)
                if scroll:
                    self.view.scrollTo(proxy_index)
        finally:
            self._selecting = False
