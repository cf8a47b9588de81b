"""The samples table: every sample of a split with label, prediction, steps and residual; sort and filter.

For a multilabel model the label and prediction columns hold label sets and "correct" becomes each sample's F1
(of its predicted set against its labels); the summary gives micro and macro F1 instead of the accuracy.
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

_TOP = QtCore.QModelIndex()  # the table has no tree: every row hangs from the invisible root


class BrowseModel(QtCore.QAbstractTableModel):
    HEADERS = ("sample", "label", "prediction", "correct", "steps", "final residual")
    MULTILABEL_HEADERS = ("sample", "labels", "predicted labels", "F1", "steps", "final residual")

    def __init__(self) -> None:
        super().__init__()
        self.table = None
        self.class_names: tuple[str, ...] = ()
        self.headers = self.HEADERS

    @property
    def multilabel(self) -> bool:
        return self.table is not None and getattr(self.table, "task", "multiclass") == "multilabel"

    def set_table(self, table, class_names) -> None:
        self.beginResetModel()
        self.table, self.class_names = table, class_names
        self.headers = self.MULTILABEL_HEADERS if self.multilabel else self.HEADERS
        self.endResetModel()
        self.headerDataChanged.emit(QtCore.Qt.Orientation.Horizontal, 0, len(self.headers) - 1)

    def names(self, row: int, col: int) -> str:
        """The label (col 1) or prediction (col 2) of a row as text: a class name, or a label set's names."""
        values = (self.table.labels if col == 1 else self.table.predictions)[row]
        if not self.multilabel:
            v = int(values)
            return self.class_names[v] if v < len(self.class_names) else str(v)
        picked = [self.class_names[i] if i < len(self.class_names) else str(i) for i in np.flatnonzero(values)]
        return ", ".join(picked) if picked else "none"

    def rowCount(self, parent=_TOP) -> int:  # noqa: N802
        return 0 if self.table is None or parent.isValid() else len(self.table.indices)

    def columnCount(self, parent=_TOP) -> int:  # noqa: N802
        return len(self.HEADERS)

    def headerData(self, section, orientation, role=QtCore.Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role == QtCore.Qt.ItemDataRole.DisplayRole and orientation == QtCore.Qt.Orientation.Horizontal:
            return self.headers[section]
        return None

    def value(self, row: int, col: int):
        t = self.table
        if self.multilabel:  # label sets shown and sorted by their names; "correct" is the sample's F1
            return (int(t.indices[row]), self.names(row, 1), self.names(row, 2), float(t.f1[row]),
                    int(t.steps[row]), float(t.final_rel[row]))[col]
        return (int(t.indices[row]), int(t.labels[row]), int(t.predictions[row]), bool(t.correct[row]),
                int(t.steps[row]), float(t.final_rel[row]))[col]

    def data(self, index, role=QtCore.Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.table is None:
            return None
        row, col = index.row(), index.column()
        v = self.value(row, col)
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            if col in (1, 2):
                return self.names(row, col)
            if col == 3:
                return f"{v:.2f}" if self.multilabel else ("yes" if v else "no")
            if col == 5:
                return "—" if not np.isfinite(v) else f"{v:.1e}"
            return str(v)
        if role == QtCore.Qt.ItemDataRole.UserRole:  # sort key
            return v
        if role == QtCore.Qt.ItemDataRole.ForegroundRole and col == 3 and not self.table.correct[row]:
            return QtGui.QColor("#c0392b")
        if role == QtCore.Qt.ItemDataRole.ForegroundRole and col == 4 and not self.table.converged[row]:
            return QtGui.QColor("#c0392b")
        return None


class BrowseFilter(QtCore.QSortFilterProxyModel):
    def __init__(self) -> None:
        super().__init__()
        self.mode = "all"
        self.text = ""
        self.setSortRole(QtCore.Qt.ItemDataRole.UserRole)

    def set_filter(self, mode: str, text: str) -> None:
        self.beginFilterChange()
        self.mode, self.text = mode, text.strip().lower()
        self.endFilterChange(QtCore.QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, row, parent) -> bool:  # noqa: N802
        model = self.sourceModel()
        t = model.table
        if t is None:
            return False
        if self.mode == "wrong" and t.correct[row]:
            return False
        if self.mode == "not converged" and t.converged[row]:
            return False
        if self.text:
            label, pred = model.names(row, 1).lower(), model.names(row, 2).lower()
            names = {label, pred, *label.split(", "), *pred.split(", ")} if model.multilabel else {label, pred}
            if self.text not in (str(int(t.indices[row])), *names) and not str(int(t.indices[row])).startswith(self.text):
                return False
        return True


class SampleBrowser(QtWidgets.QWidget):
    """The split's samples as a sortable, filterable table; choosing a row shows that sample. Follows the session."""

    sample_chosen = QtCore.Signal(int)

    def __init__(self, parent=None, session=None) -> None:
        super().__init__(parent)
        self.setObjectName("SampleBrowser")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QtWidgets.QHBoxLayout()
        self.search = QtWidgets.QLineEdit()
        self.search.setPlaceholderText("filter: sample or class")
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(["all", "wrong", "not converged"])
        row.addWidget(self.search, 2)
        row.addWidget(self.mode, 1)
        layout.addLayout(row)
        self.model = BrowseModel()
        self.proxy = BrowseFilter()
        self.proxy.setSourceModel(self.model)
        self.view = QtWidgets.QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().hide()
        self.view.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.sortByColumn(0, QtCore.Qt.SortOrder.AscendingOrder)
        layout.addWidget(self.view)
        self.summary = QtWidgets.QLabel("loading samples …")
        layout.addWidget(self.summary)
        self.search.textChanged.connect(self._refilter)
        self.mode.currentTextChanged.connect(self._refilter)
        self.view.selectionModel().currentRowChanged.connect(self._chosen)
        self.session = session
        if session is not None:
            self.sample_chosen.connect(session.set_sample)
            session.table_changed.connect(self._on_table_changed)
            session.sample_changed.connect(self.select_sample)

    def _on_table_changed(self, table) -> None:
        self.set_table(table, self.session.info.class_names, self.session.split)
        self.select_sample(self.session.sample)

    def _refilter(self, *_):
        self.proxy.set_filter(self.mode.currentText(), self.search.text())

    def set_table(self, table, class_names, split: str) -> None:
        self.model.set_table(table, class_names)
        n = len(table.indices)
        metrics = getattr(table, "metrics", None) or {}
        if getattr(table, "task", "multiclass") == "multilabel":
            score = f"micro F1 {metrics.get('micro_f1', float('nan')):.3f} · macro F1 {metrics.get('macro_f1', float('nan')):.3f}"
        else:
            score = f"accuracy {table.correct.mean():.3f}"
        self.summary.setText(f"{split} split: {n} samples · {score} · "
                             f"converged {table.converged.mean():.3f} · median steps {int(np.median(table.steps))}")

    def _chosen(self, current, _previous) -> None:
        if current.isValid():
            src = self.proxy.mapToSource(current)
            self.sample_chosen.emit(int(self.model.table.indices[src.row()]))

    def select_sample(self, index: int) -> None:
        t = self.model.table
        if t is None:
            return
        rows = np.flatnonzero(t.indices == index)
        if not len(rows):  # a sample outside the listed split: nothing in the list is the shown sample
            self.view.blockSignals(True)
            self.view.clearSelection()
            self.view.blockSignals(False)
        else:
            proxy_index = self.proxy.mapFromSource(self.model.index(int(rows[0]), 0))
            if proxy_index.isValid():
                self.view.blockSignals(True)
                self.view.selectRow(proxy_index.row())
                self.view.scrollTo(proxy_index)
                self.view.blockSignals(False)
