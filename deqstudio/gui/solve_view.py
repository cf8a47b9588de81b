"""``SolveView``: the five plots of one solved sample, tied to one solver step. The studio's centre, and what
``deqstudio report`` draws offscreen.

Given a session, it follows it (``result_changed``, ``step_changed``); without one, ``show`` draws a result.
"""

from __future__ import annotations

from PySide6 import QtWidgets

from .plots import GatePlot, ProbabilityPlot, ResidualPlot, ShiftPlot, UDMLPanel

# slug (file stem of exports), title, caption: the order of the report and of Export › Export plot
FIGURES = (
    ("residual", "Relative residual per block", "solid: corrupted input; dashed: clean; dotted line: tolerance"),
    ("gates", "Gate share per modality", "share of the fused update from each modality, per solver step"),
    ("probabilities", "Class probabilities per step", "the model's prediction read out at each solver step"),
    ("udml", "UDML noise, dependency and weights", "predicted noise σ̂, dependency α, fusion weights w, PE and energy"),
    ("equilibrium_shift", "Equilibrium shift", "‖z*corrupted − z*clean‖ per block"),
)


class SolveView(QtWidgets.QWidget):
    """Residual, gate share and probabilities per step, the UDML table, and the equilibrium shift.

    ``arranged=False`` leaves each plot a window of its own (not laid out in this widget): the report draws
    every plot at its own page size.
    """

    def __init__(self, session=None, parent=None, arranged: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName("SolveView")
        self.residual = ResidualPlot()
        self.gates = GatePlot()
        self.probabilities = ProbabilityPlot()
        self.udml = UDMLPanel()
        self.shift = ShiftPlot()
        self.plots = [self.residual, self.gates, self.probabilities, self.shift, self.udml]
        if arranged:
            self._arrange()
        self.result = None
        self.step = -1
        self.session = session
        if session is not None:
            session.result_changed.connect(self._on_result_changed)
            session.step_changed.connect(self._on_step_changed)

    def _arrange(self) -> None:
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(4, 4, 4, 4)
        grid.addWidget(self.residual, 0, 0)
        grid.addWidget(self.gates, 0, 1)
        grid.addWidget(self.probabilities, 1, 0)
        grid.addWidget(self.udml, 1, 1)
        grid.addWidget(self.shift, 2, 0, 1, 2)
        for row, stretch in enumerate((3, 3, 2)):
            grid.setRowStretch(row, stretch)
        for col in (0, 1):
            grid.setColumnStretch(col, 1)
        for plot in self.plots:
            plot.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Ignored)

    def widgets(self) -> dict:
        """slug → widget, as ``FIGURES`` names them (for exports and the report)."""
        return {"residual": self.residual, "gates": self.gates, "probabilities": self.probabilities,
                "udml": self.udml, "equilibrium_shift": self.shift}

    def show_result(self, result, step: int = -1) -> None:
        """Draw ``result`` with the marker at ``step`` (0-based; -1: the last step)."""
        self.result = result
        for plot in self.plots:
            plot.show_result(result)
        self.show_step(step)

    def show_step(self, step: int) -> None:
        if self.result is None:
            return
        steps = max(self.result.corrupted.nstep, 1)
        self.step = step if 0 <= step < steps else steps - 1
        for plot in self.plots:
            plot.show_step(self.step)

    def _on_result_changed(self, result) -> None:
        self.show_result(result, self.session.step)

    def _on_step_changed(self, step: int) -> None:
        self.show_step(step)
