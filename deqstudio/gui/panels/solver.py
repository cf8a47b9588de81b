"""The solver settings: solver, step limit, tolerance, stop mode, the solver's options, device."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ...session.engine import SolverChoice


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
