"""The step plots of one solved sample, each in its own module; they draw a ``SolveResult`` (numpy only)."""

from .base import FLOOR, FUSED_COLOUR, PALETTE, PlotPanel, colour, nice_ceiling, step_range
from .gates import GatePlot
from .probabilities import ProbabilityPlot
from .residual import ResidualPlot
from .shift import ShiftPlot
from .stability import StabilityPanel
from .udml_table import UDMLPanel

__all__ = ["FLOOR", "FUSED_COLOUR", "PALETTE", "GatePlot", "PlotPanel", "ProbabilityPlot", "ResidualPlot", "ShiftPlot",
           "StabilityPanel", "UDMLPanel", "colour", "nice_ceiling", "step_range"]
