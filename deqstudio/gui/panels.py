"""Side panels: sample browser, corruption controls (with the image before/after), solver settings."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ..core.corruptions import CORRUPTIONS, kinds_for, parameter_for
from ..session.engine import CorruptionChoice, SolverChoice

SLIDER_SCALE = 100  # slider units per severity level
SNAP = 8  # slider units within which a severity snaps to the nearest level 1–5


class BrowseModel(QtCore.QAbstractTableModel):
    HEADERS = ("sample", "label", "prediction", "correct", "steps", "final residual")

    def __init__(self) -> None:
        super().__init__()
        self.table = None
        self.class_names: tuple[str, ...] = ()

    def set_table(self, table, class_names) -> None:
        self.beginResetModel()
        self.table, self.class_names = table, class_names
        self.endResetModel()

    def rowCount(self, parent=QtCore.QModelIndex()) -> int:  # noqa: N802
        return 0 if self.table is None or parent.isValid() else len(self.table.indices)

    def columnCount(self, parent=QtCore.QModelIndex()) -> int:  # noqa: N802
        return len(self.HEADERS)

    def headerData(self, section, orientation, role=QtCore.Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role == QtCore.Qt.ItemDataRole.DisplayRole and orientation == QtCore.Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def value(self, row: int, col: int):
        t = self.table
        return (int(t.indices[row]), int(t.labels[row]), int(t.predictions[row]), bool(t.correct[row]),
                int(t.steps[row]), float(t.final_rel[row]))[col]

    def data(self, index, role=QtCore.Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.table is None:
            return None
        row, col = index.row(), index.column()
        v = self.value(row, col)
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            if col in (1, 2):
                return self.class_names[v] if v < len(self.class_names) else str(v)
            if col == 3:
                return "yes" if v else "no"
            if col == 5:
                return "—" if not np.isfinite(v) else f"{v:.1e}"
            return str(v)
        if role == QtCore.Qt.ItemDataRole.UserRole:  # sort key
            return v
        if role == QtCore.Qt.ItemDataRole.ForegroundRole and col == 3 and not v:
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
            label = model.class_names[int(t.labels[row])].lower()
            pred = model.class_names[int(t.predictions[row])].lower()
            if self.text not in (str(int(t.indices[row])), label, pred) and not str(int(t.indices[row])).startswith(self.text):
                return False
        return True


class SampleBrowser(QtWidgets.QWidget):
    sample_chosen = QtCore.Signal(int)

    def __init__(self, parent=None) -> None:
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

    def _refilter(self, *_):
        self.proxy.set_filter(self.mode.currentText(), self.search.text())

    def set_table(self, table, class_names, split: str) -> None:
        self.model.set_table(table, class_names)
        n = len(table.indices)
        self.summary.setText(f"{split} split: {n} samples · accuracy {table.correct.mean():.3f} · "
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


class ImagePair(pg.GraphicsLayoutWidget):
    """An image modality before and after corruption, drawn as the user sees the digit."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent)
        self.setBackground("w")
        self.setFixedHeight(130)
        self.items = []
        for title in ("before", "after"):
            vb = self.addViewBox(lockAspect=True, enableMouse=False)
            vb.invertY(True)
            img = pg.ImageItem(axisOrder="row-major")
            vb.addItem(img)
            self.items.append((vb, img))
        self.addLabel("before · after", row=1, col=0, colspan=2, size="8pt")

    def show(self, before: np.ndarray, after: np.ndarray) -> None:  # noqa: A003
        lo, hi = float(min(before.min(), after.min())), float(max(before.max(), after.max()))
        if hi <= lo:
            hi = lo + 1.0
        for (vb, img), arr in zip(self.items, (before, after)):
            img.setImage(np.asarray(arr, dtype=float), levels=(lo, hi))
            img.setLookupTable(pg.colormap.get("CET-L1").getLookupTable(nPts=256)[::-1])
            vb.autoRange(padding=0.02)
        super().show()


class ModalityControls(QtWidgets.QGroupBox):
    changed = QtCore.Signal(str, object)  # modality, CorruptionChoice

    def __init__(self, name: str, kind: str, parent=None) -> None:
        super().__init__(f"{name} ({kind})", parent)
        self.name, self.modality_kind = name, kind
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        self.kind = QtWidgets.QComboBox()
        self.kind.addItems(list(kinds_for(kind)))
        self.kind.setObjectName(f"kind_{name}")
        self.seed = QtWidgets.QSpinBox()
        self.seed.setRange(0, 10**6)
        self.seed.setPrefix("seed ")
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setObjectName(f"severity_{name}")
        self.slider.setRange(0, 5 * SLIDER_SCALE)
        self.slider.setSingleStep(10)
        self.slider.setPageStep(SLIDER_SCALE)
        self.slider.setTickInterval(SLIDER_SCALE)
        self.slider.setTickPosition(QtWidgets.QSlider.TickPosition.TicksBelow)
        self.value = QtWidgets.QLabel()
        self.value.setMinimumWidth(150)
        grid.addWidget(self.kind, 0, 0)
        grid.addWidget(self.seed, 0, 1)
        grid.addWidget(self.slider, 1, 0, 1, 2)
        grid.addWidget(self.value, 2, 0, 1, 2)
        self.image = None
        if kind == "image":
            self.image = ImagePair()
            grid.addWidget(self.image, 3, 0, 1, 2)
        self.kind.currentTextChanged.connect(self._emit)
        self.seed.valueChanged.connect(self._emit)
        self.slider.valueChanged.connect(self._slid)
        self._update_label()

    def severity(self) -> float:
        return self.slider.value() / SLIDER_SCALE

    def choice(self) -> CorruptionChoice:
        return CorruptionChoice(self.kind.currentText(), self.severity(), self.seed.value())

    def set_choice(self, choice: CorruptionChoice) -> None:
        for w in (self.kind, self.seed, self.slider):
            w.blockSignals(True)
        self.kind.setCurrentText(choice.kind)
        self.seed.setValue(choice.seed)
        self.slider.setValue(int(round(choice.severity * SLIDER_SCALE)))
        for w in (self.kind, self.seed, self.slider):
            w.blockSignals(False)
        self._update_label()

    def _slid(self, value: int) -> None:
        nearest = int(round(value / SLIDER_SCALE)) * SLIDER_SCALE
        if value != nearest and abs(value - nearest) <= SNAP and not self.slider.isSliderDown():
            self.slider.setValue(nearest)  # snap points 1–5; re-enters with the snapped value
            return
        self._emit()

    def _update_label(self) -> None:
        s = self.severity()
        kind = self.kind.currentText()
        spec = CORRUPTIONS[kind]
        level = f"level {int(round(s))}" if abs(s - round(s)) < 1e-9 else f"severity {s:.2f}"
        self.value.setText(f"{level}: {spec.parameter} {parameter_for(kind, s):.3g}" if s > 0 else "clean")

    def _emit(self, *_) -> None:
        self._update_label()
        self.changed.emit(self.name, self.choice())


class CorruptionPanel(QtWidgets.QWidget):
    changed = QtCore.Signal(str, object)
    reset_requested = QtCore.Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("CorruptionPanel")
        self.layout_ = QtWidgets.QVBoxLayout(self)
        self.layout_.setContentsMargins(4, 4, 4, 4)
        self.controls: dict[str, ModalityControls] = {}
        self.reset = QtWidgets.QPushButton("Reset all to clean")
        self.reset.clicked.connect(self.reset_requested.emit)
        self.layout_.addWidget(self.reset)
        self.layout_.addStretch(1)

    def set_modalities(self, names, kinds, choices) -> None:
        for c in self.controls.values():
            c.setParent(None)
            c.deleteLater()
        self.controls = {}
        for i, (name, kind) in enumerate(zip(names, kinds)):
            ctl = ModalityControls(name, kind)
            ctl.set_choice(choices[name])
            ctl.changed.connect(self.changed.emit)
            self.layout_.insertWidget(i, ctl)
            self.controls[name] = ctl

    def set_choice(self, name: str, choice) -> None:
        if name in self.controls:
            self.controls[name].set_choice(choice)

    def show_images(self, images: dict) -> None:
        for name, (before, after) in images.items():
            ctl = self.controls.get(name)
            if ctl is not None and ctl.image is not None:
                ctl.image.show(before, after)


class SolverPanel(QtWidgets.QGroupBox):
    changed = QtCore.Signal(object)  # SolverChoice

    TOLERANCES = ("1e-2", "1e-3", "1e-4", "1e-5", "1e-6", "1e-8")
    LAMBDAS = ("1e-2", "1e-3", "1e-4", "1e-6", "0")

    def __init__(self, devices=("cpu",), parent=None) -> None:
        super().__init__("Solver", parent)
        self.setObjectName("SolverPanel")
        form = QtWidgets.QFormLayout(self)
        form.setContentsMargins(6, 4, 6, 4)
        self.solver = QtWidgets.QComboBox()
        self.solver.addItems(["anderson", "fixed_point", "broyden"])
        self.max_iter = QtWidgets.QSpinBox()
        self.max_iter.setRange(1, 500)
        self.tol = QtWidgets.QComboBox()
        self.tol.addItems(list(self.TOLERANCES))
        self.stop_mode = QtWidgets.QComboBox()
        self.stop_mode.addItems(["rel", "abs"])
        self.m = QtWidgets.QSpinBox()
        self.m.setRange(1, 30)
        self.lam = QtWidgets.QComboBox()
        self.lam.addItems(list(self.LAMBDAS))
        self.tau = QtWidgets.QDoubleSpinBox()
        self.tau.setRange(0.05, 1.0)
        self.tau.setSingleStep(0.05)
        self.device = QtWidgets.QComboBox()
        self.device.addItems(list(devices))
        form.addRow("solver", self.solver)
        form.addRow("max iterations", self.max_iter)
        form.addRow("tolerance", self.tol)
        form.addRow("stop mode", self.stop_mode)
        form.addRow("Anderson m", self.m)
        form.addRow("Anderson λ", self.lam)
        form.addRow("damping τ", self.tau)
        form.addRow("device", self.device)
        self.set_choice(SolverChoice())
        for w in (self.solver, self.tol, self.stop_mode, self.lam, self.device):
            w.currentTextChanged.connect(self._emit)
        for w in (self.max_iter, self.m, self.tau):
            w.valueChanged.connect(self._emit)

    def choice(self) -> SolverChoice:
        return SolverChoice(solver=self.solver.currentText(), max_iter=self.max_iter.value(),
                            tol=float(self.tol.currentText()), stop_mode=self.stop_mode.currentText(),
                            m=self.m.value(), lam=float(self.lam.currentText()), tau=self.tau.value(),
                            device=self.device.currentText())

    def set_choice(self, c: SolverChoice) -> None:
        widgets = (self.solver, self.max_iter, self.tol, self.stop_mode, self.m, self.lam, self.tau, self.device)
        for w in widgets:
            w.blockSignals(True)
        self.solver.setCurrentText(c.solver)
        self.max_iter.setValue(c.max_iter)
        tol = f"{c.tol:.0e}".replace("e-0", "e-")
        if self.tol.findText(tol) < 0:
            self.tol.addItem(tol)
        self.tol.setCurrentText(tol)
        self.stop_mode.setCurrentText(c.stop_mode)
        self.m.setValue(c.m)
        lam = "0" if c.lam == 0 else f"{c.lam:.0e}".replace("e-0", "e-")
        if self.lam.findText(lam) < 0:
            self.lam.addItem(lam)
        self.lam.setCurrentText(lam)
        self.tau.setValue(c.tau)
        self.device.setCurrentText(c.device)
        for w in widgets:
            w.blockSignals(False)
        self._enable()

    def _enable(self) -> None:
        s = self.solver.currentText()
        self.m.setEnabled(s == "anderson")
        self.lam.setEnabled(s == "anderson")
        self.tau.setEnabled(s == "fixed_point")

    def _emit(self, *_) -> None:
        self._enable()
        self.changed.emit(self.choice())
