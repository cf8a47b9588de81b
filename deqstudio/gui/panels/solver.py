"""The solver settings: solver, step limit, tolerance, stop mode, the chosen solver's own options, device.

The solvers and their options come from the solver registry; the panel shows the options the chosen solver
takes. It follows the session (``solver_changed``, ``device_changed``, ``loaded``) and changes it through its
setters; a typed number applies when the field is left or Enter is pressed, not on each keystroke.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from ...core.bounds import MAX_ITER, SOLVER_OPTION_FIELDS
from ...core.solvers.registry import SOLVER_NAMES, STOP_MODES, get_spec
from ...core.solvers.settings import SolverSettings

TOLERANCES = ("1e-2", "1e-3", "1e-4", "1e-5", "1e-6", "1e-8")


def _number_text(value: float) -> str:
    """1e-4 as "1e-4", 0.8 as "0.8": how the tolerance and the options are written in their fields."""
    if value == 0 or abs(value) >= 1e-2:
        return f"{value:g}"
    return f"{value:.0e}".replace("e-0", "e-")


class SolverPanel(QtWidgets.QGroupBox):
    changed = QtCore.Signal(object)  # SolverSettings, when the user changes a field
    device_chosen = QtCore.Signal(str)

    def __init__(self, devices=("cpu",), parent=None, session=None) -> None:
        super().__init__("Solver", parent)
        self.setObjectName("SolverPanel")
        self.form = QtWidgets.QFormLayout(self)
        self.form.setContentsMargins(6, 4, 6, 4)
        self.solver = QtWidgets.QComboBox()
        self.solver.addItems(list(SOLVER_NAMES))
        for i, name in enumerate(SOLVER_NAMES):
            self.solver.setItemData(i, get_spec(name).help, QtCore.Qt.ItemDataRole.ToolTipRole)
        self.max_iter = QtWidgets.QSpinBox()
        self.max_iter.setRange(*MAX_ITER)
        self.max_iter.setKeyboardTracking(False)  # typing "500" applies once, not as 5, 50, 500
        self.tol = QtWidgets.QComboBox()
        self.tol.addItems(list(TOLERANCES))
        self.stop_mode = QtWidgets.QComboBox()
        self.stop_mode.addItems(list(STOP_MODES))
        self.device = QtWidgets.QComboBox()
        self.device.addItems(list(devices))
        self.form.addRow("solver", self.solver)
        self.form.addRow("max iterations", self.max_iter)
        self.form.addRow("tolerance", self.tol)
        self.form.addRow("stop mode", self.stop_mode)
        self.options = self._option_widgets()
        self.form.addRow("device", self.device)
        self.settings = SolverSettings()
        self.set_settings(self.settings)
        for w in (self.solver, self.tol, self.stop_mode):
            w.currentTextChanged.connect(self._emit)
        self.max_iter.valueChanged.connect(self._emit)
        self.device.currentTextChanged.connect(self._device_chosen)
        self.session = session
        if session is not None:
            self.changed.connect(self._apply)
            self.device_chosen.connect(session.set_device)
            session.solver_changed.connect(self.set_settings)
            session.device_changed.connect(self.set_device)
            session.loaded.connect(self._on_loaded)

    def _option_widgets(self) -> dict[str, QtWidgets.QWidget]:
        """One widget per option name any solver takes (``m`` serves Anderson and Broyden alike)."""
        widgets = {}
        for name in SOLVER_NAMES:
            for option in get_spec(name).options:
                if option.name in widgets:
                    continue
                kind, low, high = SOLVER_OPTION_FIELDS[option.name]
                if kind is int:
                    w = QtWidgets.QSpinBox()
                    w.setRange(int(low), int(high))
                    w.setKeyboardTracking(False)
                    w.valueChanged.connect(self._emit)
                else:
                    w = QtWidgets.QLineEdit()
                    validator = QtGui.QDoubleValidator(low, high, 12)
                    validator.setNotation(QtGui.QDoubleValidator.Notation.ScientificNotation)
                    w.setValidator(validator)
                    w.editingFinished.connect(self._emit)
                w.setObjectName(f"option_{option.name}")
                self.form.addRow(f"{option.label} {option.name}", w)
                widgets[option.name] = w
        return widgets

    def _option_value(self, name: str):
        w = self.options[name]
        if isinstance(w, QtWidgets.QSpinBox):
            return w.value()
        try:
            return float(w.text())
        except ValueError:
            return self.settings.option_dict.get(name, 0.0)

    def settings_shown(self) -> SolverSettings:
        """The settings the fields show (ValueError when one is out of range)."""
        solver = self.solver.currentText()
        taken = [o.name for o in get_spec(solver).options]
        return SolverSettings(solver, self.max_iter.value(), float(self.tol.currentText()),
                              self.stop_mode.currentText(), {n: self._option_value(n) for n in taken})

    def set_settings(self, settings: SolverSettings) -> None:
        self.settings = settings
        widgets = (self.solver, self.max_iter, self.tol, self.stop_mode, *self.options.values())
        for w in widgets:
            w.blockSignals(True)
        self.solver.setCurrentText(settings.solver)
        self.max_iter.setValue(settings.max_iter)
        tol = _number_text(settings.tol)
        if self.tol.findText(tol) < 0:
            self.tol.addItem(tol)
        self.tol.setCurrentText(tol)
        self.stop_mode.setCurrentText(settings.stop_mode)
        for name, value in settings.options:
            w = self.options[name]
            if isinstance(w, QtWidgets.QSpinBox):
                w.setValue(int(value))
            else:
                w.setText(_number_text(value))
        for w in widgets:
            w.blockSignals(False)
        self._show_options()

    def set_device(self, device: str) -> None:
        self.device.blockSignals(True)
        if self.device.findText(device) < 0:
            self.device.addItem(device)
        self.device.setCurrentText(device)
        self.device.blockSignals(False)

    def set_devices(self, devices) -> None:
        current = self.device.currentText()
        self.device.blockSignals(True)
        self.device.clear()
        self.device.addItems(list(devices))
        self.device.setCurrentText(current if current in devices else devices[0])
        self.device.blockSignals(False)

    def _show_options(self) -> None:
        taken = {o.name for o in get_spec(self.solver.currentText()).options}
        for name, w in self.options.items():
            w.setEnabled(name in taken)
            self.form.setRowVisible(w, name in taken)

    def _emit(self, *_) -> None:
        self._show_options()
        try:
            settings = self.settings_shown()
        except ValueError:
            return  # a field out of range: nothing changes until it is fixed
        self.changed.emit(settings)

    def _device_chosen(self, device: str) -> None:
        if device:
            self.device_chosen.emit(device)

    def _apply(self, settings: SolverSettings) -> None:
        try:
            self.session.set_solver(settings)
        except ValueError as exc:
            self.session.message.emit(str(exc), True)

    def _on_loaded(self, info) -> None:
        self.set_devices(self.session.available_devices())
        self.set_settings(self.session.solver)
        self.set_device(self.session.device)
