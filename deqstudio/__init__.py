"""DEQ Studio: see inside deep-equilibrium multimodal fusion models."""

__version__ = "0.1.0"
