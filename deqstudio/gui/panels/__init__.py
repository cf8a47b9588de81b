"""The side panels: samples table, corruption controls, solver settings."""

from .corruption import SLIDER_SCALE, SNAP, CorruptionPanel, ImagePair, ModalityControls
from .samples import BrowseFilter, BrowseModel, SampleBrowser
from .solver import SolverPanel

__all__ = ["SLIDER_SCALE", "SNAP", "BrowseFilter", "BrowseModel", "CorruptionPanel", "ImagePair", "ModalityControls",
           "SampleBrowser", "SolverPanel"]
