"""Multilabel models and datasets: the label-set schema, micro/macro F1, and an imported multilabel model through
the headless commands (solve, sweep, report) exactly as a native one, with what it cannot provide said so."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from deqstudio.cli import main
from deqstudio.diagnostics.stats import f1_scores, label_sets, sample_f1
from deqstudio.errors import DatasetError, MismatchError
from deqstudio.io.dataset import Dataset, Modality, read_dataset, write_dataset
from official_files import imported_user_model

SPLITS = {"train": np.arange(0, 4), "val": np.arange(4, 6), "test": np.arange(6, 8)}


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def _dataset(labels, names=("a", "b", "c")):
    x = np.random.default_rng(0).standard_normal((len(labels), 4)).astype(np.float32)
    return Dataset("ml", {"x": Modality("x", "vector", x)}, np.asarray(labels, dtype=np.int64), names,
                   {k: v.astype(np.int64) for k, v in SPLITS.items()})


def test_label_sets_round_trip_through_the_schema(tmp_path):
    labels = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]] * 2)
    ds = _dataset(labels)
    assert ds.task == "multilabel" and ds.identity()["task"] == "multilabel"
    path = write_dataset(ds, tmp_path / "ml.h5")
    with h5py.File(path) as h5:
        assert h5["labels"].shape == (8, 3) and h5["labels"].attrs["task"] == "multilabel"
    back = read_dataset(path)
    assert back.task == "multilabel"
    np.testing.assert_array_equal(back.labels, labels)


@pytest.mark.parametrize("labels, words", [
    (np.array([[1, 0, 2]] * 8), "must hold 0 or 1"),
    (np.array([[1, 0]] * 8), "2 columns for 3 class names"),
])
def test_bad_label_sets_are_refused(labels, words):
    with pytest.raises(DatasetError, match=words):
        _dataset(labels)


def test_a_label_matrix_without_its_task_attribute_is_refused(tmp_path):
    path = write_dataset(_dataset(np.array([[1, 0, 1]] * 8)), tmp_path / "ml.h5")
    with h5py.File(path, "a") as h5:
        del h5["labels"].attrs["task"]
    with pytest.raises(DatasetError, match="task='multilabel'"):
        read_dataset(path)


def test_f1_scores_by_hand():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    p = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    # pooled: tp 3, fp 1, fn 2 -> 6 / (6 + 3); per label: 2·2/(4+0+0), 2·1/(2+0+1), 0/(0+1+1)
    scores = f1_scores(y, p)
    assert scores["micro_f1"] == pytest.approx(6 / 9)
    assert scores["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    np.testing.assert_allclose(sample_f1(y, p), [2 / 3, 2 / 3, 2 / 3, 1.0])
    np.testing.assert_array_equal(label_sets([[0.7, 0.5, 0.2]]), [[1, 0, 0]])


@pytest.fixture(scope="module")
def multilabel_files(tmp_path_factory):
    ck, data, _, _ = imported_user_model(tmp_path_factory.mktemp("ml"), multilabel=True, seed=4)
    return ck, data


def test_solve_json_of_a_multilabel_model(multilabel_files, capsys):
    ck, data = multilabel_files
    code, out, _ = _run(capsys, "solve", "--checkpoint", ck, "--dataset", data, "--sample", "2",
                        "--corrupt", "m0=gaussian:2", "--json")
    assert code == 0
    result = json.loads(out)
    truth = read_dataset(data).labels[2]
    assert result["task"] == "multilabel"
    assert result["label_index"] == [int(i) for i in np.flatnonzero(truth)]
    assert result["label"] == [f"label{i}" for i in result["label_index"]]
    probs = result["probabilities"]
    assert result["prediction"] == [c for c, p in probs.items() if p > 0.5]  # a sigmoid per label, thresholded
    assert 0.0 <= result["f1"] <= 1.0 and "f1" in result["clean"]
    assert result["input_note"] == "corruptions act on imported features"
    assert result["udml"]["noise"] is None and result["udml"]["weights"] is None  # not provided: null
    assert len(result["rel_residual"]) == result["nstep"] and result["converged"]


def test_sweep_reports_micro_and_macro_f1(multilabel_files, capsys, tmp_path):
    ck, data = multilabel_files
    table = tmp_path / "sweep.csv"
    code, out, _ = _run(capsys, "sweep", "--checkpoint", ck, "--dataset", data, "--modality", "m1", "--json",
                        "--out", table)
    assert code == 0
    report = json.loads(out)
    assert report["metric"] == "micro_f1" and report["input_note"] == "corruptions act on imported features"
    curve = report["modalities"]["m1"]
    assert "accuracy" not in curve and len(curve["micro_f1"]) == len(curve["macro_f1"]) == 6
    assert all(0 <= v <= 1 for v in curve["micro_f1"] + curve["macro_f1"])
    header = table.read_text().splitlines()[0].split(",")
    assert "micro_f1" in header and "macro_f1" in header and "accuracy" not in header
    code, out, _ = _run(capsys, "sweep", "--checkpoint", ck, "--dataset", data, "--modality", "m1")
    assert code == 0 and "micro f1" in out and "macro f1" in out


def test_report_of_an_imported_model(multilabel_files, capsys, tmp_path):
    ck, data = multilabel_files
    out_dir = tmp_path / "rep"
    code, _out, err = _run(capsys, "report", "--checkpoint", ck, "--dataset", data, "--out", out_dir, "--sample", "1")
    assert code == 0, err
    prov = json.loads((out_dir / "provenance.json").read_text())
    record = prov["checkpoint"]
    assert record["source"] == "imported" and record["input_note"] == "corruptions act on imported features"
    assert record["imported"]["source_file"].endswith("official.pt") and record["imported"]["variant"] == "root"
    html = (out_dir / "report.html").read_text()
    assert "true labels" in html and "F1 =" in html


def test_the_samples_table_data_of_a_multilabel_model(multilabel_files):
    from deqstudio.session import headless

    ck, data = multilabel_files
    loaded = headless.load(ck, data)
    table = loaded.engine.browse("test")
    ds = loaded.dataset
    assert table.task == "multilabel" and table.labels.shape == (len(ds.split("test")), 4)
    np.testing.assert_array_equal(table.labels, ds.labels[ds.split("test")])
    np.testing.assert_allclose(table.f1, sample_f1(table.labels, table.predictions))
    assert set(table.metrics) == {"micro_f1", "macro_f1", "exact_match"}
    np.testing.assert_array_equal(table.correct, (table.labels == table.predictions).all(axis=1))


def test_a_multiclass_dataset_does_not_fit_a_multilabel_model(multilabel_files, tmp_path):
    from deqstudio.session.engine import check_compatible

    ck, data = multilabel_files
    from deqstudio.io.checkpoint import load_checkpoint

    ds = read_dataset(data)
    single = Dataset("single", ds.modalities, ds.labels.argmax(axis=1), ds.class_names, ds.splits)
    with pytest.raises(MismatchError, match="the dataset's labels are multiclass"):
        check_compatible(load_checkpoint(ck).adapter, single)


def test_training_refuses_a_multilabel_dataset(tmp_path, capsys):
    labels = np.array([[1, 0, 1], [0, 1, 0]] * 4)
    path = write_dataset(_dataset(labels), tmp_path / "ml.h5")
    code, _, err = _run(capsys, "train", "--dataset", path, "--out", tmp_path / "m.pt", "--epochs", "3")
    assert code == 2 and "multilabel" in err and len(err.strip().splitlines()) == 1
