"""A Python interpreter that sees only some of the installed distributions, as a smaller install would.

``site_view`` links the files of the chosen distributions (and of everything they require, unless told
otherwise) into one folder; ``python_in_view`` runs the test interpreter with ``-S`` (no site-packages) and
that folder plus the repository on its path. A module left out is then simply absent: ``import`` and
``importlib.util.find_spec`` see it exactly as on a machine where it was never installed.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUI = ("PySide6-Essentials", "shiboken6", "pyqtgraph", "qasync", "pytest-qt")


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed() -> dict[str, metadata.Distribution]:
    return {_key(d.metadata["Name"]): d for d in metadata.distributions()}


def requirement_closure(names, installed=None) -> set[str]:
    """``names`` and every distribution they require (extras and other platforms' markers left out)."""
    installed = installed or _installed()
    todo, seen = [_key(n) for n in names], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in installed:
            continue
        seen.add(name)
        for req in installed[name].requires or ():
            spec, _, marker = req.partition(";")
            if "extra" in marker:
                continue
            if marker.strip():
                try:
                    from packaging.markers import Marker

                    if not Marker(marker).evaluate():
                        continue
                except ImportError:
                    pass
            todo.append(_key(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0]))
    return seen


def site_view(folder: Path, keep: set[str] | None = None, drop=()) -> Path:
    """A folder of links to the top-level files of the distributions in ``keep`` (default: every installed one)
    less those in ``drop``; deqstudio itself is never linked (the repository is put on the path instead)."""
    installed = _installed()
    chosen = set(installed) if keep is None else {_key(k) for k in keep}
    chosen -= {_key(d) for d in drop} | {"deqstudio"}
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(chosen & set(installed)):
        dist = installed[name]
        for file in dist.files or ():
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            link, target = folder / top, Path(dist.locate_file(top))
            if not link.exists() and target.exists():
                link.symlink_to(target)
    return folder


def python_in_view(site: Path) -> tuple[list[str], dict]:
    """(argv prefix, environment) running this interpreter on the repository and ``site`` only."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site)])
    env.pop("PYTHONHOME", None)
    return [sys.executable, "-S"], env
