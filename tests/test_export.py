"""Every export opens again: PNG/SVG/PDF parse, CSV and HDF5 round-trip, sidecars are complete, writes are atomic."""

import csv
import json
import os
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtSvg

from deqstudio.gui.report import SOLVE_FIGURES
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
    assert PROVENANCE_KEYS <= set(side)
    s = window.session
    assert side["checkpoint"]["sha256"] == s.checkpoint.sha256 and len(side["checkpoint"]["sha256"]) == 64
    assert side["dataset"]["sha256"] == s.dataset.sha256
    assert side["sample"] == s.sample
    assert side["solver"]["solver"] == s.solver.solver and side["solver"]["tol"] == s.solver.tol
    assert {"torch", "numpy", "PySide6-Essentials", "pyqtgraph", "h5py"} <= set(side["packages"])
    return side


def _corrupt(window, qtbot, text="strong=gaussian:3"):
    window.open_sample_with(window.session.sample, text)
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
    assert PROVENANCE_KEYS <= set(prov) and "report.html" in prov["files"]
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
