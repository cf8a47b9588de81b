"""``open_model``: the one place that decides what a model file is and which loader reads it.

- ``plugin:NAME`` or ``plugin:NAME:PATH``: an installed plugin, only when NAME is in ``allowed_plugins``
  (the studio after consent, a headless command with ``--allow-plugin NAME``) and safe mode is off;
- a folder, or a zip file, holding ``contract.json``: a DEQ package (ONNX programs, run by onnxruntime);
- anything else: a DEQ Studio checkpoint (``torch.load(weights_only=True)``).

Every result has ``.path``, ``.sha256``, ``.adapter``, ``.metrics`` and ``.dataset``.
"""

from __future__ import annotations

import os
from pathlib import Path

PLUGIN_PREFIX = "plugin:"


def is_plugin_reference(path) -> bool:
    return isinstance(path, str) and path.startswith(PLUGIN_PREFIX)


def open_model(path: str | os.PathLike, *, allowed_plugins=frozenset()):
    """The model at ``path``: a checkpoint, a package or a consented plugin's model (CheckpointError otherwise)."""
    if is_plugin_reference(path):
        from .plugins import open_plugin_model

        return open_plugin_model(str(path), allowed=frozenset(allowed_plugins))
    from .package import is_package

    if Path(path).is_dir() or is_package(path):
        from .package import open_package

        return open_package(path)
    from .checkpoint import load_checkpoint

    return load_checkpoint(Path(path))
