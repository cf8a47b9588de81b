"""Every export opens again: PNG/SVG/PDF parse, CSV and HDF5 round-trip, sidecars are complete, writes are atomic."""

import csv
import json
import os
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest

from deqstudio.core.corruptions import Corruption
from PySide6 import QtGui, QtSvg

from deqstudio.gui.solve_view import FIGURES as SOLVE_FIGURES
from deqstudio.session.traces import read_trace_hdf5

PROVENANCE_KEYS = {"checkpoint", "dataset", "sample", "corruptions", "solver", "packages", "created", "device"}


def _read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _check_pdf(path):
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert b"/Type /Page" in data or b"/Type/Page" in data


def _check_svg(path):
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert QtSvg.QSvgRenderer(str(path)).isValid()
    assert "<text" in path.read_text()  # axis labels stay text, not outlines


def _check_sidecar(path, window):
    side = json.loads((path.parent / (path.name + ".provenance.json")).read_text())
    assert set(side) >= PROVENANCE_KEYS
    s = window.session
    assert side["checkpoint"]["sha256"] == s.checkpoint.sha256 and len(side["checkpoint"]["sha256"]) == 64
    assert side["dataset"]["sha256"] == s.dataset.sha256
    assert side["sample"] == s.sample
    assert side["solver"]["solver"] == s.solver.solver and side["solver"]["tol"] == s.solver.tol
    assert {"torch", "numpy", "PySide6-Essentials", "pyqtgraph", "h5py"} <= set(side["packages"])
    return side


def _corrupt(window, qtbot, text="strong=gaussian:3"):
    window.open_sample_with(window.session.sample, dict([Corruption.parse(text)]))
    qtbot.waitUntil(lambda: window.session.result.request.corruption_specs() == [text], timeout=30000)
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30000)


def test_each_plot_exports_in_every_format(window, qtbot, tmp_path):
    _corrupt(window, qtbot)
    for slug, _, _ in SOLVE_FIGURES:
        for fmt in ("png", "svg", "pdf", "csv"):
            path = tmp_path / f"{slug}.{fmt}"
            assert window.export_plot(slug, str(path), width=900 if fmt == "png" else None), window.last_error
            side = _check_sidecar(path, window)
            assert side["corruptions"] == ["strong=gaussian:3"] and side["exported"] == path.name
        image = QtGui.QImage(str(tmp_path / f"{slug}.png"))
        assert image.width() == 900 and image.height() > 100
        _check_svg(tmp_path / f"{slug}.svg")
        _check_pdf(tmp_path / f"{slug}.pdf")


def test_png_is_not_blank(window, tmp_path):
    path = tmp_path / "residual.png"
    window.export_plot("residual", str(path), width=600)
    image = QtGui.QImage(str(path))
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colours) > 10  # curves, text and axes, not one flat fill


def test_csv_round_trips_the_plotted_numbers(window, qtbot, tmp_path):
    _corrupt(window, qtbot)
    r = window.session.result
    window.export_plot("residual", str(tmp_path / "residual.csv"))
    header, rows = _read_csv(tmp_path / "residual.csv")
    assert header == ["series", "x", "y"]
    fused = [(float(x), float(y)) for name, x, y in rows if name == "fused"]
    want = np.clip(r.corrupted.block_rel[:, -1], 1e-12, None)
    np.testing.assert_array_equal([y for _, y in fused], want)  # repr floats: exact
    np.testing.assert_array_equal([x for x, _ in fused], np.arange(1, r.corrupted.nstep + 1))
    assert all(name for name, _, _ in rows)  # every row says which curve it belongs to
    clean = [float(y) for name, x, y in rows if name == "fused (clean)"]
    np.testing.assert_array_equal(clean, np.clip(r.clean.block_rel[:, -1], 1e-12, None))
    window.export_plot("equilibrium_shift", str(tmp_path / "shift.csv"))
    header, rows = _read_csv(tmp_path / "shift.csv")
    assert [row[0] for row in rows] == list(r.block_names)
    np.testing.assert_array_equal([float(row[1]) for row in rows], r.shift)
    window.export_plot("probabilities", str(tmp_path / "probabilities.csv"))
    _, rows = _read_csv(tmp_path / "probabilities.csv")
    assert {name for name, _, _ in rows} == {f"class {c}" for c in r.class_names}
    for c, name in enumerate(r.class_names):
        np.testing.assert_array_equal([float(y) for n, _, y in rows if n == f"class {name}"],
                                      r.corrupted.probabilities[:, c])
    window.export_plot("udml", str(tmp_path / "udml.csv"))
    header, rows = _read_csv(tmp_path / "udml.csv")
    assert header == ["quantity", *r.modality_names]
    table = {row[0]: row[1:] for row in rows}
    np.testing.assert_array_equal([float(v) for v in table["weight w, now"]], r.corrupted.weights)  # not rounded
    np.testing.assert_array_equal([float(v) for v in table["pred. noise, clean"]], r.clean.sigma_hat)


def test_trace_hdf5_round_trips(window, qtbot, tmp_path):
    _corrupt(window, qtbot, "weak=mask:2")
    r = window.session.result
    path = tmp_path / "trace.h5"
    assert window.export_trace(str(path))
    back = read_trace_hdf5(path)
    for tag, run in (("clean", r.clean), ("corrupted", r.corrupted)):
        for key in ("rel", "block_rel", "probabilities", "gate_share", "z_star", "sigma_hat", "weights"):
            np.testing.assert_array_equal(back[tag][key], getattr(run, key))
        assert back[tag]["nstep"] == run.nstep and bool(back[tag]["converged"]) == run.converged
    np.testing.assert_array_equal(back["equilibrium_shift"], r.shift)
    assert json.loads(back["attrs"]["corruptions"]) == ["weak=mask:2"]
    assert json.loads(back["attrs"]["provenance"])["dataset"]["sha256"] == window.session.dataset.sha256
    _check_sidecar(path, window)


def test_report_folder_has_every_plot_and_an_html_page(window, qtbot, tmp_path):
    out = tmp_path / "report"
    assert window.export_report(str(out)), window.last_error
    html = (out / "report.html").read_text()
    for slug, title, _ in SOLVE_FIGURES:
        for fmt in ("png", "svg", "pdf", "csv"):
            assert (out / f"{slug}.{fmt}").stat().st_size > 0
        assert f"src='{slug}.png'" in html and title in html
    prov = json.loads((out / "provenance.json").read_text())
    assert set(prov) >= PROVENANCE_KEYS and "report.html" in prov["files"]
    with h5py.File(out / "trace.h5") as h5:
        assert "clean" in h5 and "corrupted" in h5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]  # no temporary folder left


def test_unwritable_target_is_a_message_and_nothing_is_lost(window, tmp_path, monkeypatch):
    tmp_path = tmp_path / "exports"
    tmp_path.mkdir()
    target = tmp_path / "gates.png"
    target.write_bytes(b"earlier export")
    real_replace = os.replace

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    assert not window.export_plot("gates", str(target))
    assert "No space left on device" in window.last_error and "gates.png" in window.last_error
    assert not window.export_report(str(tmp_path / "report"))
    monkeypatch.setattr(os, "replace", real_replace)
    assert target.read_bytes() == b"earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gates.png"]  # no temporary files left behind
    assert not window.export_plot("gates", str(tmp_path / "missing" / "gates.png"))
    assert "does not exist" in window.last_error
    assert not window.export_plot("gates", str(tmp_path / "gates.tiff"))
    assert "unknown format" in window.last_error


def test_a_version_1_session_file_loads(window, qtbot):
    path = os.path.join(os.path.dirname(__file__), "data", "session-v1.json")
    window.load_session(path)
    s = window.session
    assert s.checkpoint.path.name == "uci_deq_udml.pt" and s.dataset.name == "uci-multiple-features"
    assert s.sample == 1602 and s.solver.solver == "broyden" and s.solver.tol == 1e-5
    assert s.corruptions["zer"].kind == "mask" and s.corruptions["zer"].seed == 7
    qtbot.waitUntil(lambda: s.result is not None and s.result.request.sample == 1602
                    and s.result.request.solver.solver == "broyden", timeout=60000)
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30000)
    assert window.corruption.controls["pix"].kind.currentText() == "gaussian"
    assert window.solver_panel.solver.currentText() == "broyden"


# -- issue 12: a file and its sidecar are one unit; interrupted commits are completed -------------------
def _fail_nth_fsync(monkeypatch, number):
    real = os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == number:
            raise OSError(28, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


@pytest.mark.parametrize("fmt", ["png", "csv"])
def test_a_failed_sidecar_leaves_no_plot_behind_and_keeps_the_earlier_pair(window, tmp_path, monkeypatch, fmt):
    folder = tmp_path / "exports"
    folder.mkdir()
    fresh = folder / f"gates.{fmt}"
    _fail_nth_fsync(monkeypatch, 2)  # the plot's bytes went out; the disk fills while the sidecar's are flushed
    assert not window.export_plot("gates", str(fresh))
    assert "No space left on device" in window.last_error
    assert list(folder.iterdir()) == []  # no plot without its sidecar, no temporary files
    monkeypatch.undo()
    assert window.export_plot("gates", str(fresh)), window.last_error
    side = folder / (fresh.name + ".provenance.json")
    before = (fresh.read_bytes(), side.read_bytes())
    _fail_nth_fsync(monkeypatch, 2)
    assert not window.export_plot("gates", str(fresh))
    monkeypatch.undo()
    assert (fresh.read_bytes(), side.read_bytes()) == before
    assert sorted(p.name for p in folder.iterdir()) == sorted([fresh.name, side.name])


def test_a_failed_trace_sidecar_leaves_no_trace_behind(window, tmp_path, monkeypatch):
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / "trace.h5"
    _fail_nth_fsync(monkeypatch, 2)
    assert not window.export_trace(str(target))
    assert "No space left on device" in window.last_error
    assert list(folder.iterdir()) == []
    monkeypatch.undo()
    assert window.export_trace(str(target))
    assert json.loads((folder / "trace.h5.provenance.json").read_text())["exported"] == "trace.h5"


KILL_SCRIPT = r"""
import os, sys
from pathlib import Path
from deqstudio.io import atomic

folder, kind, kill_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
real = os.replace
calls = []

def replace(src, dst):
    calls.append(dst)
    if len(calls) == kill_at:
        os._exit(9)  # killed: no handler, no cleanup runs
    return real(src, dst)

os.replace = replace
if kind == "files":
    atomic.write_files({folder / "table.csv": b"new table", folder / "table.csv.provenance.json": b"new sidecar"})
else:
    new = folder / ".report.x1.tmp"
    new.mkdir()
    (new / "report.html").write_text("new report")
    atomic.swap_folder(new, folder / "report")
"""


def _killed(folder, kind, kill_at):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(folder), kind, str(kill_at)], timeout=60,
                         capture_output=True, text=True)
    return run.returncode


@pytest.mark.parametrize("kill_at, expect", [(1, "old"), (2, "new"), (3, "new"), (4, "new")])
def test_a_unit_of_files_killed_midway_is_rolled_forward_on_the_next_read(tmp_path, kill_at, expect):
    """Renames: 1 the journal, 2 the table, 3 the sidecar. Killed before the journal, nothing changed."""
    from deqstudio.io import atomic

    table, side = tmp_path / "table.csv", tmp_path / "table.csv.provenance.json"
    table.write_bytes(b"old table")
    side.write_bytes(b"old sidecar")
    code = _killed(tmp_path, "files", kill_at)
    assert code == (0 if kill_at == 4 else 9)
    atomic.recover(side)  # any reader or writer of either file does this first
    assert (table.read_bytes(), side.read_bytes()) == ((b"new table", b"new sidecar") if expect == "new"
                                                       else (b"old table", b"old sidecar"))
    assert not list(tmp_path.glob(f"*{atomic.JOURNAL_SUFFIX}"))


@pytest.mark.parametrize("kill_at", [1, 2, 3])
def test_a_folder_swap_killed_midway_is_completed_on_the_next_access(tmp_path, kill_at):
    """Renames: 1 the journal, 2 the earlier folder aside, 3 the new one in."""
    from deqstudio.gui.report import recover_report
    from deqstudio.io import atomic

    report = tmp_path / "report"
    report.mkdir()
    (report / "report.html").write_text("old report")
    assert _killed(tmp_path, "swap", kill_at) == 9
    if kill_at == 3:
        assert not report.exists()  # the moment the issue describes: no report at the target
    recover_report(report)
    assert (report / "report.html").read_text() == ("old report" if kill_at == 1 else "new report")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "report"]
    assert not [n for n in leftovers if n.endswith((atomic.JOURNAL_SUFFIX, ".old"))]


def test_a_report_left_in_a_hidden_old_folder_by_an_older_version_comes_back(tmp_path):
    from deqstudio.gui.report import recover_report

    hidden = tmp_path / ".report.abc123.old" / "report"
    hidden.mkdir(parents=True)
    (hidden / "provenance.json").write_text(json.dumps({"format": "deqstudio-provenance", "what": "report"}))
    assert recover_report(tmp_path / "report")
    assert json.loads((tmp_path / "report" / "provenance.json").read_text())["what"] == "report"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_journal_naming_other_files_is_ignored(tmp_path):
    """Recovery only ever renames our own temporaries beside their targets."""
    from deqstudio.io import atomic

    (tmp_path / "victim").write_text("keep")
    (tmp_path / "table.csv").write_text("table")
    (tmp_path / ".table.csv.x.deqstudio-commit").write_text(json.dumps(
        {"format": "deqstudio-commit", "kind": "files", "moves": [["victim", "table.csv"], ["../x", "table.csv"]]}))
    assert not atomic.recover(tmp_path / "table.csv")
    assert (tmp_path / "victim").read_text() == "keep" and (tmp_path / "table.csv").read_text() == "table"
