"""The headless install: every headless command runs where Qt is not installed, and on a bare torch + numpy +
h5py machine; the commands that draw (``report``, ``gui``, ``bench`` with the studio) say in one line that they
need the gui extra. Run in fresh interpreters that see only some of the installed distributions (site_view.py)."""

import json
import re
import subprocess

import numpy as np
import pytest
import torch

from conftest import DATA
from official_files import user_model_state, write_features
from site_view import GUI, ROOT, python_in_view, requirement_closure, site_view

QT_MODULES = ("PySide6", "shiboken6", "pyqtgraph", "qasync")
EXTRA_LINE = "needs the gui extra: pip install 'deqstudio[gui]'"

# One interpreter runs the commands one after another through deqstudio.cli.main (a fresh interpreter each would
# import torch ten times); each command's exit status and output are kept apart.
DRIVER = r"""
import contextlib, io, json, sys
from deqstudio.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException as exc:  # what the test must see: any escape is a failure, with its traceback
            import traceback
            traceback.print_exc(file=err)
            code = f"raised {type(exc).__name__}"
    results.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue()})
qt = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph", "qasync"))
print(json.dumps({"results": results, "qt_loaded": qt}))
"""


def _run_commands(site, commands, tmp_path):
    prefix, env = python_in_view(site)
    env["DEQSTUDIO_CONFIG_DIR"] = str(tmp_path / "config")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.run([*prefix, "-c", DRIVER, json.dumps(commands)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1])


def _qt_is_absent(site) -> None:
    prefix, env = python_in_view(site)
    probe = f"import importlib.util as u; print([m for m in {QT_MODULES!r} if u.find_spec(m) is not None])"
    proc = subprocess.run([*prefix, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr  # the view really hides Qt


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The small committed model and dataset, an official-layout DEQ fusion file with its features, and a
    MOGONET-style CSV folder: something for every headless command to read."""
    folder = tmp_path_factory.mktemp("inputs")
    gen = torch.Generator().manual_seed(11)
    n, d, classes, count = 3, 32, 4, 24
    torch.save({"state_dict": user_model_state(n, d, classes, gen)}, folder / "user.pt")
    feats = [(torch.randn(count, d, generator=gen) * 2).numpy() for _ in range(n)]
    write_features(folder / "features.h5", ("a", "b", "c"), feats, np.arange(count) % classes,
                   [f"c{i}" for i in range(classes)])
    csv = folder / "csv"
    csv.mkdir()
    rng = np.random.default_rng(0)
    for v, k in enumerate((6, 5, 4), 1):
        np.savetxt(csv / f"{v}_tr.csv", rng.random((20, k)), delimiter=",")
        np.savetxt(csv / f"{v}_te.csv", rng.random((10, k)), delimiter=",")
    np.savetxt(csv / "labels_tr.csv", np.arange(20) % 2.0)
    np.savetxt(csv / "labels_te.csv", np.arange(10) % 2.0)
    return folder


def _headless_commands(inputs, out):
    ck, ds = str(DATA / "syn.pt"), str(DATA / "syn.h5")
    files = ["--checkpoint", ck, "--dataset", ds]
    return {
        "solve": ["solve", *files, "--sample", "3", "--corrupt", "weak=gaussian:3", "--json"],
        "sweep": ["sweep", *files, "--modality", "weak", "--out", str(out / "sweep.csv")],
        "train": ["train", "--dataset", ds, "--out", str(out / "trained.pt"), "--fusion", "concat", "--epochs", "2"],
        "inspect": ["inspect", ck],
        "import deqfusion": ["import", "deqfusion", str(inputs / "user.pt"), "--features",
                             str(inputs / "features.h5"), "--out", str(out / "imported.pt")],
        "import mogonet": ["import", "mogonet", str(inputs / "csv"), "--out", str(out / "mogonet.h5")],
        "plugins": ["plugins", "--json"],
        "demo": ["demo"],
        "bench": ["bench", "--no-gui", "--quick", "--json"],
    }


def _check_headless(run, commands, out):
    results = {r["argv"][0] + (" " + r["argv"][1] if r["argv"][0] == "import" else ""): r for r in run["results"]}
    for name in commands:
        r = results[name]
        assert r["code"] == 0, f"{name}: exit {r['code']}\n{r['err'][-3000:]}"
        assert "Traceback" not in r["out"] + r["err"], f"{name}:\n{r['err'][-3000:]}"
    assert json.loads(results["solve"]["out"])["sample"] == 3
    assert json.loads(results["plugins"]["out"])["plugins"] == []
    assert json.loads(results["bench"]["out"])["solver"]
    for made in ("sweep.csv", "trained.pt", "imported.pt", "mogonet.h5"):
        assert (out / made).is_file(), made
    assert run["qt_loaded"] == []


def _check_gui_commands(run):
    for r in run["results"]:
        lines = [line for line in r["err"].splitlines() if line.strip()]
        assert r["code"] == 2, f"{r['argv']}: exit {r['code']}\n{r['err'][-3000:]}"
        assert len(lines) == 1 and lines[0].startswith("error: ") and EXTRA_LINE in lines[0], r["err"]
        assert not r["out"]


GUI_COMMANDS = [["report", "--out", "report"], ["gui"], [], ["gui", "--screenshot", "shot.png"], ["bench", "--quick"]]


def test_every_headless_command_runs_without_qt(inputs, tmp_path):
    site = site_view(tmp_path / "site", drop=GUI)
    _qt_is_absent(site)
    out = tmp_path / "out"
    out.mkdir()
    commands = _headless_commands(inputs, out)
    run = _run_commands(site, list(commands.values()) + GUI_COMMANDS, tmp_path)
    headless = {"results": run["results"][:len(commands)], "qt_loaded": run["qt_loaded"]}
    _check_headless(headless, commands, out)
    _check_gui_commands({"results": run["results"][len(commands):]})
    assert not (tmp_path / "report").exists() and not (tmp_path / "shot.png").exists()


def test_every_headless_command_runs_with_only_torch_numpy_and_h5py(inputs, tmp_path):
    """What scripts/gpu_check.sh relies on: no tqdm, platformdirs, onnx, onnxruntime or scipy either."""
    keep = requirement_closure(["torch", "numpy", "h5py"])
    assert not keep & {"tqdm", "platformdirs", "onnx", "onnxruntime", "scipy", "pyside6-essentials"}
    site = site_view(tmp_path / "site", keep=keep)
    _qt_is_absent(site)
    out = tmp_path / "out"
    out.mkdir()
    commands = _headless_commands(inputs, out)
    no_dask = ["sweep", "--checkpoint", str(DATA / "syn.pt"), "--dataset", str(DATA / "syn.h5"), "--cluster",
               "local[2]"]
    run = _run_commands(site, [*commands.values(), no_dask], tmp_path)
    *results, cluster = run["results"]
    _check_headless({"results": results, "qt_loaded": run["qt_loaded"]}, commands, out)
    lines = [line for line in cluster["err"].splitlines() if line.strip()]
    assert cluster["code"] == 2 and len(lines) == 1, cluster["err"]
    assert lines[0] == "error: --cluster needs Dask distributed: pip install 'deqstudio[cluster]'"


def test_the_core_dependencies_have_no_qt():
    """Read from pyproject.toml's text (tomllib is Python 3.11+): the quoted names in ``dependencies = [...]``."""
    text = (ROOT / "pyproject.toml").read_text()

    def names(block: str) -> set[str]:
        found = re.search(rf"^{block} = \[(.*?)\]$", text, re.M | re.S)
        assert found, block
        body = "\n".join(line.split("#")[0] for line in found.group(1).splitlines())
        return {re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0].lower() for dep in re.findall(r'"([^"]+)"', body)}

    core = names("dependencies")
    assert {"torch", "numpy", "h5py"} <= core
    qt = {"pyside6", "pyside6-essentials", "pyside6-addons", "shiboken6", "pyqtgraph", "qasync", "pyqt5", "pyqt6"}
    assert not core & qt, core & qt
    assert names("gui") >= {"pyside6-essentials", "pyqtgraph", "qasync"}
