"""Where the bundled resources and models live, from a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _bundled_root() -> Path:
    checkout = _PACKAGE.parent
    if (checkout / "resources").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout
    return _PACKAGE / "_bundled"


def resources_dir() -> Path:
    """The ``resources/`` folder (icons, stylesheet, bundled datasets)."""
    return _bundled_root() / "resources"


def models_dir() -> Path:
    """The ``models/`` folder (bundled checkpoints and their model cards)."""
    return _bundled_root() / "models"


def datasets_dir() -> Path:
    """The bundled HDF5 datasets."""
    return resources_dir() / "datasets"


DEFAULT_CHECKPOINT = "uci_deq_udml.pt"
DEFAULT_DATASET = "uci_mfeat.h5"


def default_checkpoint() -> Path:
    """The bundled demo model: UCI Multiple Features, pix + fou + zer, deq-udml."""
    return models_dir() / DEFAULT_CHECKPOINT


def default_dataset() -> Path:
    return datasets_dir() / DEFAULT_DATASET
