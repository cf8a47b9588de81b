"""UDML's per-modality quantities as a table, with the fusion weights as bars."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ...core.adapter import NOT_PROVIDED
from .base import colour, nice_ceiling


class UDMLPanel(QtWidgets.QWidget):
    """Per modality: injected corruption, predicted noise σ̂, dependency α, weight w, PE and energy."""

    ROWS = ("corruption", "pred. noise, clean", "pred. noise, now", "dependency α", "weight w, clean", "weight w, now",
            "PE mean σ², now", "energy, now")
    FORMATS = (None, "{:.3g}", "{:.3g}", "{:.3g}", "{:.3f}", "{:.3f}", "{:.3g}", "{:.3g}")  # how the cells round

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("UDMLPanel")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.title = QtWidgets.QLabel()
        layout.addWidget(self.title)
        self.table = QtWidgets.QTableWidget(len(self.ROWS), 0)
        self.table.setVerticalHeaderLabels(self.ROWS)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Stretch)
        # fixed rows: sizing them to their contents re-lays out the table whenever a value changes
        self.table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        row = self.table.fontMetrics().height() + 3
        self.table.verticalHeader().setDefaultSectionSize(row)
        self.table.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.table.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Ignored)
        # every row visible (a scroll bar hid the last one): header, the rows, the frame
        self.table.setMinimumHeight(row * (len(self.ROWS) + 1) + 2 * self.table.frameWidth() + 4)
        layout.addWidget(self.table, 3)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(110)
        item = self.plot.getPlotItem()
        item.setTitle("fusion weight w (light: clean, dark: corrupted)", size="9pt")
        item.setLabel("left", "w")
        item.setMenuEnabled(False)
        self.bars_clean = pg.BarGraphItem(x=[], height=[], width=0.35, brush="#9ecae1")
        self.bars_now = pg.BarGraphItem(x=[], height=[], width=0.35, brush="#08519c")
        item.addItem(self.bars_clean)
        item.addItem(self.bars_now)
        layout.addWidget(self.plot, 2)
        self.result = None
        self._columns = None

    def show_result(self, result) -> None:
        self.result = result
        names = result.modality_names
        clean, now = result.clean, result.corrupted
        if self._columns != names:  # a new model: rebuild the columns; otherwise only texts change
            self._columns = names
            self.table.setColumnCount(len(names))
            self.table.setHorizontalHeaderLabels(list(names))
            for i in range(len(names)):
                self.table.horizontalHeaderItem(i).setForeground(pg.mkColor(colour(i)))
                for j in range(self.table.rowCount()):
                    cell = QtWidgets.QTableWidgetItem()
                    cell.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
                    self.table.setItem(j, i, cell)
            self.plot.getPlotItem().getAxis("bottom").setTicks([[(i, n) for i, n in enumerate(names)]])
            self.plot.getPlotItem().setXRange(-0.6, len(names) - 0.4, padding=0)

        for j, (values, spec) in enumerate(zip(self._quantities(result), self.FORMATS)):
            for i, value in enumerate(values):
                if spec is None:  # the corruption: its short name in the cell, the parameter in the tooltip
                    text = value.split(" (")[0]
                    self.table.item(j, i).setToolTip(value)
                else:
                    text = "—" if value is None else spec.format(value)
                    self.table.item(j, i).setToolTip(NOT_PROVIDED if value is None else "")
                cell = self.table.item(j, i)
                if cell.text() != text:
                    cell.setText(text)
        x = np.arange(len(names), dtype=float)
        if now.weights is not None:
            self.bars_clean.setOpts(x=x - 0.18, height=clean.weights, width=0.35)
            self.bars_now.setOpts(x=x + 0.18, height=now.weights, width=0.35)
            both = np.concatenate([clean.weights, now.weights])
            top = float(both[np.isfinite(both)].max()) if np.isfinite(both).any() else 1.0
            self.plot.getPlotItem().setYRange(0, nice_ceiling(max(top * 1.1, 0.1)), padding=0)
        else:
            self.bars_clean.setOpts(x=[], height=[])
            self.bars_now.setOpts(x=[], height=[])
        missing = any(v is None for values in self._quantities(result)[1:] for v in values)
        key = " · — : not provided by this model" if missing else ""
        if now.weights is not None:
            self.title.setText(f"<b>UDML</b>: predicted noise, dependency α, weights w{key}")
            self.title.setToolTip("α: logit magnitude of the single-modality pass over the training set; "
                                  "w = M·u/Σu with u = 1/(predicted noise² · α)")
        else:
            self.title.setText(f"<b>UDML</b> — this {result.fusion} model has no UDML weights{key}")

    def show_step(self, step: int) -> None:
        pass  # the table shows the final values: nothing changes with the step

    @staticmethod
    def _quantities(r) -> list[list]:
        """Per row of ``ROWS``, one value per modality (None where the model has no such quantity)."""
        names = r.modality_names

        def per_modality(values):
            return [None if values is None else float(values[i]) for i in range(len(names))]

        return [[r.corruption_labels.get(n, "clean") for n in names], per_modality(r.clean.sigma_hat),
                per_modality(r.corrupted.sigma_hat), [r.dependency.get(n) for n in names],
                per_modality(r.clean.weights), per_modality(r.corrupted.weights), per_modality(r.corrupted.pe),
                per_modality(r.corrupted.energy)]

    def data_table(self):
        """The table's quantities at full precision (the cells show them rounded)."""
        r = self.result
        header = ["quantity", *(r.modality_names if r is not None else ())]
        if r is None:
            return header, []
        return header, [[quantity, *("" if v is None else v for v in values)]
                        for quantity, values in zip(self.ROWS, self._quantities(r))]
