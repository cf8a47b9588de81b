"""``deqstudio import mogonet``: the BRCA experiment's CSV layout into the dataset schema, scaled as the official
code scales it, with a seeded stratified validation split drawn from train."""

from __future__ import annotations

import numpy as np
import pytest

from deqstudio.cli import main
from deqstudio.io.dataset import read_dataset
from deqstudio.workflows.mogonet import read_mogonet

DIMS = (12, 10, 7)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "BRCA"
    d.mkdir()
    raw = {}
    for v, k in enumerate(DIMS, 1):
        raw[v] = (rng.random((40, k)) * 5 - 1, rng.random((15, k)) * 5 - 1)
        np.savetxt(d / f"{v}_tr.csv", raw[v][0], delimiter=",")
        np.savetxt(d / f"{v}_te.csv", raw[v][1], delimiter=",")
        (d / f"{v}_featname.csv").write_text("\n".join(f"G{i}|{i}" for i in range(k)) + "\n")
    np.savetxt(d / "labels_tr.csv", np.repeat(np.arange(5.0), 8))
    np.savetxt(d / "labels_te.csv", np.arange(15) % 5.0)
    (d / "README.md").write_text("# BRCA\nclasses:    \n0: Normal-like    \n1: Basal-like    \n2: HER2-enriched\n"
                                 "3: Luminal A\n4: Luminal B\n")
    return d, raw


def test_the_folder_becomes_a_dataset(folder, tmp_path, capsys):
    d, raw = folder
    out = tmp_path / "brca.h5"
    code, text, _ = _run(capsys, "import", "mogonet", d, "--out", out)
    assert code == 0 and "55 samples, 5 classes" in text
    ds = read_dataset(out)
    assert ds.modality_names == ("mrna", "dna", "mirna")
    assert ds.class_names == ("Normal-like", "Basal-like", "HER2-enriched", "Luminal A", "Luminal B")
    np.testing.assert_array_equal(ds.split("test"), np.arange(40, 55))
    train, val = ds.split("train"), ds.split("val")
    assert set(train) | set(val) == set(range(40)) and not set(train) & set(val)
    assert np.bincount(ds.labels[val], minlength=5).tolist() == [2] * 5  # stratified: 20% of each class of 8
    for v, name in enumerate(ds.modality_names, 1):  # the official scaling: train min and max, eps 1e-10
        tr, te = raw[v]
        low = tr.min(axis=0)
        high = (tr - low).max(axis=0) + 1e-10
        np.testing.assert_allclose(ds.modalities[name].data[:40], (tr - low) / high, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ds.modalities[name].data[40:], (te - low) / high, rtol=1e-6, atol=1e-6)


def test_the_validation_draw_is_seeded(folder):
    d, _ = folder
    a, b = read_mogonet(d, seed=3), read_mogonet(d, seed=3)
    c = read_mogonet(d, seed=4)
    np.testing.assert_array_equal(a.split("val"), b.split("val"))
    assert not np.array_equal(a.split("val"), c.split("val"))
    unscaled = read_mogonet(d, scale=False, class_names=list("abcde"))
    assert unscaled.class_names == tuple("abcde") and unscaled.modalities["mrna"].data.min() < 0


@pytest.mark.parametrize("damage, words", [
    (lambda d: (d / "2_te.csv").unlink(), "2_te.csv: missing"),
    (lambda d: (d / "labels_tr.csv").write_text("1\n2\n"), "40 rows, labels_tr.csv 2"),
    (lambda d: (d / "1_tr.csv").write_text((d / "1_tr.csv").read_text().replace(",", ";", 1)), "1_tr.csv: line 1"),
    (lambda d: (d / "3_featname.csv").write_text("a\nb\n"), "3_featname.csv names 2 features"),
    (lambda d: (d / "labels_te.csv").write_text("0.5\n" * 15), "whole numbers"),
    (lambda d: [p.unlink() for p in d.glob("1_*")], "no 1_tr.csv"),
])
def test_a_damaged_folder_is_one_error_line(folder, tmp_path, capsys, damage, words):
    d, _ = folder
    damage(d)
    out = tmp_path / "x.h5"
    code, _, err = _run(capsys, "import", "mogonet", d, "--out", out)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert not out.exists()


def test_bad_options_are_one_error_line(folder, tmp_path, capsys):
    d, _ = folder
    for argv, words in ((["--val-fraction", "0"], "--val-fraction"), (["--class-names", "a,b"], "2 names")):
        code, _, err = _run(capsys, "import", "mogonet", d, "--out", tmp_path / "x.h5", *argv)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1
