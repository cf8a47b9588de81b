"""The layers of DESIGN.md §2: numerical code never imports Qt; the CLI imports torch and Qt lazily."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "deqstudio"
QT = ("PySide6", "pyqtgraph", "qasync")
LAYERS = ["core", "io", "diagnostics", "session"]


def _imported_modules(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _all_modules(layer: str) -> list[str]:
    root = PACKAGE / layer
    return [
        "deqstudio." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted(root.rglob("*.py"))
    ]


@pytest.mark.parametrize("layer", LAYERS)
def test_qt_free_layers_import_no_qt(layer):
    modules = _all_modules(layer)
    loaded = _imported_modules("\n".join(f"import {m}" for m in modules))
    assert not [m for m in loaded if m.split(".")[0] in QT]


def test_core_imports_no_h5py():
    loaded = _imported_modules("\n".join(f"import {m}" for m in _all_modules("core")))
    assert "h5py" not in loaded


def test_cli_import_is_light():
    loaded = _imported_modules("import deqstudio.cli")
    assert "torch" not in loaded
    assert not [m for m in loaded if m.split(".")[0] in QT]


@pytest.mark.parametrize("layer, forbidden", [
    ("core", ("deqstudio.io", "deqstudio.diagnostics", "deqstudio.session", "deqstudio.gui", "deqstudio.cli", "h5py")),
    ("io", ("deqstudio.diagnostics", "deqstudio.session", "deqstudio.gui", "deqstudio.cli")),
    ("diagnostics", ("deqstudio.gui", "deqstudio.cli")),
    ("session", ("deqstudio.gui", "deqstudio.cli")),
])
def test_layers_import_only_earlier_layers(layer, forbidden):
    for path in (PACKAGE / layer).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.level:
                    depth = len(path.relative_to(PACKAGE).parts) - node.level
                    base = ["deqstudio", *path.relative_to(PACKAGE).parts[:depth]]
                    names = [".".join(base + [node.module])]
                else:
                    names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.relative_to(PACKAGE)} imports {name}"
