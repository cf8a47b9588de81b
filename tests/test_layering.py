"""The layers of DESIGN.md §2 and the lint rules, checked by the tools that own them, plus what only a run shows.

``lint-imports`` checks the import-linter contracts in pyproject.toml over every import (function-level ones
included): core ← io ← diagnostics ← workflows ← session ← gui ← cli, Qt only in the GUI, h5py out of core, no
torch called by the GUI itself. ``ruff check`` keeps the code clean. A run in a fresh interpreter then shows
what loading a module really pulls in.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "deqstudio"
QT = ("PySide6", "pyqtgraph", "qasync", "shiboken6")
QT_FREE = ["core", "io", "diagnostics", "workflows", "session"]


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: `make setup` installs the dev extra")
    return found


def test_import_contracts_hold():
    proc = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_ruff_is_clean():
    proc = subprocess.run([_tool("ruff"), "check", "deqstudio", "tests", "scripts"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _imported_modules(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _all_modules(layer: str) -> list[str]:
    return ["deqstudio." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
            for p in sorted((PACKAGE / layer).rglob("*.py"))]


@pytest.mark.parametrize("layer", QT_FREE)
def test_qt_free_layers_load_no_qt(layer):
    loaded = _imported_modules("\n".join(f"import {m}" for m in _all_modules(layer)))
    assert not [m for m in loaded if m.split(".")[0] in QT]


def test_the_package_and_the_cli_load_light():
    """`import deqstudio` and `import deqstudio.cli` load neither torch nor Qt, and change no environment."""
    loaded = _imported_modules("import os; before = dict(os.environ)\nimport deqstudio, deqstudio.cli\n"
                               "assert dict(os.environ) == before, 'importing deqstudio changed the environment'")
    assert "torch" not in loaded and "h5py" not in loaded
    assert not [m for m in loaded if m.split(".")[0] in QT]


def test_solver_names_are_written_only_in_the_registry():
    """No string literal in the package is a solver's name, but in the registry (docstrings and messages may
    mention them)."""
    import ast

    from deqstudio.core.solvers.registry import SOLVER_NAMES

    registry = PACKAGE / "core" / "solvers" / "registry.py"
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path == registry:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in SOLVER_NAMES:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not offenders, offenders


def test_modules_are_small():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert max(sizes.values()) <= 400, sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
