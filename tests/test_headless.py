"""The headless commands: solve, sweep and report, their JSON keys and their error messages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from deqstudio.cli import main

SOLVE_KEYS = {"label", "prediction", "probabilities", "nstep", "converged", "rel_residual", "block_rel_residual",
              "gates", "udml"}


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.out, out.err


def test_solve_json_has_the_documented_keys(small_files, capsys):
    ck, data = small_files
    code, out, _ = _run(capsys, "solve", "--checkpoint", str(ck), "--dataset", str(data), "--sample", "3",
                        "--corrupt", "weak=gaussian:4", "--json")
    assert code == 0
    info = json.loads(out)
    assert set(info) >= SOLVE_KEYS
    n = info["nstep"]
    assert n >= 1 and len(info["rel_residual"]) == n
    assert set(info["block_rel_residual"]) == {"strong", "weak", "picture", "fused"}
    assert all(len(v) == n for v in info["block_rel_residual"].values())
    assert set(info["gates"]) == {"strong", "weak", "picture"} and all(len(v) == n for v in info["gates"].values())
    assert abs(sum(info["probabilities"].values()) - 1) < 1e-5
    assert info["prediction"] in info["probabilities"]
    assert set(info["udml"]) >= {"noise", "dependency", "weights"}
    assert set(info["udml"]["weights"]) == {"strong", "weak", "picture"}
    assert abs(sum(info["udml"]["weights"].values()) - 3) < 1e-4  # w sums to M
    assert info["corruptions"] == ["weak=gaussian:4"] and info["sample"] == 3


def test_solve_on_the_bundled_default_prints_the_trace(capsys):
    code, out, _ = _run(capsys, "solve", "--corrupt", "pix=gaussian:3", "--solver", "fixed_point")
    assert code == 0
    assert "fixed_point:" in out and "pix=gaussian:3" in out and "UDML" in out


def _first_test_sample_solved_clean_and_corrupted(choices: dict) -> int:
    """The first test sample of the bundled default on which both the clean and the corrupted solve converge."""
    from deqstudio.paths import default_checkpoint, default_dataset
    from deqstudio.session.state import Session

    s = Session()
    s.open(default_checkpoint(), default_dataset())
    for name, choice in choices.items():
        s.set_corruption(name, choice)
    for sample in s.dataset.split("test")[:50]:
        s.set_sample(int(sample))
        r = s.engine.solve(s.request())
        if r.clean.converged and r.corrupted.converged:
            return int(sample)
    raise AssertionError("the bundled model converges on none of the first 50 test samples")


def test_the_bundled_model_sees_the_noise_it_is_given(capsys):
    from deqstudio.core.corruptions import Corruption

    sample = _first_test_sample_solved_clean_and_corrupted({"pix": Corruption("gaussian", 4.0)})
    code, out, _ = _run(capsys, "solve", "--sample", str(sample), "--corrupt", "pix=gaussian:4", "--json")
    info = json.loads(out)
    assert code == 0 and info["converged"] and info["sample"] == sample
    clean, now = info["clean"]["udml"], info["udml"]
    assert now["noise"]["pix"] > 1.5 * clean["noise"]["pix"]  # σ̂ of the corrupted modality rises
    assert now["weights"]["pix"] < clean["weights"]["pix"]  # and its fusion weight falls


@pytest.mark.parametrize("argv, words", [
    (["--corrupt", "pix=gaussian"], "MODALITY=KIND:SEVERITY"),
    (["--corrupt", "nope=gaussian:2"], "nope"),
    (["--corrupt", "fou=blur:2"], "does not apply"),
    (["--corrupt", "pix=gaussian:9"], "severity"),
    (["--sample", "999999"], "outside"),
    (["--solver", "newton"], "unknown solver"),
    (["--checkpoint", "/nonexistent.pt"], "nonexistent.pt"),
    (["--tol", "-1"], "--tol"),
    (["--tol", "inf"], "positive finite"),
    (["--tol", "1e400"], "positive finite"),
    (["--device", "tpu"], "unknown device"),
])
def test_solve_bad_arguments_are_one_line_messages(capsys, argv, words):
    code, out, err = _run(capsys, "solve", *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err


def test_sweep_json_has_a_curve_per_modality(small_files, capsys, tmp_path):
    ck, data = small_files
    code, out, _ = _run(capsys, "sweep", "--checkpoint", str(ck), "--dataset", str(data), "--json",
                        "--out", str(tmp_path / "sweep.csv"))
    assert code == 0
    info = json.loads(out)
    assert info["levels"] == [0, 1, 2, 3, 4, 5] and info["complete"]
    assert set(info["modalities"]) == {"strong", "weak", "picture"}
    for entry in info["modalities"].values():
        assert {"levels", "accuracy", "mean_steps", "noise_estimate", "auc", "noise_spearman"} <= set(entry)
        assert len(entry["accuracy"]) == len(entry["mean_steps"]) == len(entry["noise_estimate"]) == 6
        assert all(0 <= a <= 1 for a in entry["accuracy"])
    clean = {e["accuracy"][0] for e in info["modalities"].values()}
    assert len(clean) == 1  # severity 0 is the same clean run for every modality
    assert (tmp_path / "sweep.csv").read_text().startswith("modality,kind,severity,accuracy")


def test_sweep_one_modality_and_kind(small_files, capsys):
    ck, data = small_files
    code, out, _ = _run(capsys, "sweep", "--checkpoint", str(ck), "--dataset", str(data), "--modality", "picture",
                        "--kind", "blur", "--split", "val", "--json")
    assert code == 0
    info = json.loads(out)
    assert list(info["modalities"]) == ["picture"] and info["modalities"]["picture"]["kind"] == "blur"
    assert info["split"] == "val"


@pytest.mark.parametrize("argv, words", [
    (["--modality", "sound"], "unknown modality"),
    (["--modality", "fou", "--kind", "blur"], "does not apply"),
    (["--split", "holdout"], "no split"),
    (["--out", "table.xlsx"], ".csv or .h5"),
    (["--kind", "bogus"], "unknown corruption kind 'bogus'"),
])
def test_sweep_bad_arguments_are_one_line_messages(capsys, argv, words):
    code, _, err = _run(capsys, "sweep", *argv)
    assert code == 2 and words in err.strip().splitlines()[-1]


def test_report_writes_the_folder(small_files, capsys, tmp_path):
    ck, data = small_files
    out_dir = tmp_path / "rep"
    code, out, _ = _run(capsys, "report", "--checkpoint", str(ck), "--dataset", str(data), "--out", str(out_dir),
                        "--sample", "5", "--corrupt", "picture=blur:3", "--sweep")
    assert code == 0 and "report.html" in out
    html = (out_dir / "report.html").read_text()
    for slug in ("residual", "gates", "probabilities", "udml", "equilibrium_shift", "robustness", "calibration"):
        assert (out_dir / f"{slug}.png").exists() and (out_dir / f"{slug}.pdf").exists()
        assert f"{slug}.svg" in html
    prov = json.loads((out_dir / "provenance.json").read_text())
    assert prov["sample"] == 5 and prov["corruptions"] == ["picture=blur:3"]
    assert prov["analyses"] == ["robustness_sweep"]
    assert (out_dir / "robustness_sweep.h5").exists() and (out_dir / "trace.h5").exists()


def test_report_into_a_file_is_a_message(capsys, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    code, _, err = _run(capsys, "report", "--out", str(blocker))
    assert code == 2 and "not a folder" in err
    assert blocker.read_text() == "not a folder"


BAD_MANIFEST = json.loads((Path(__file__).parent / "data" / "bad" / "MANIFEST.json").read_text())
BAD_FILES = sorted((n, e) for n, e in BAD_MANIFEST["files"].items() if not e.get("valid_alone"))


@pytest.mark.parametrize("command", ["solve", "sweep", "report", "gui"])
def test_every_bad_file_through_the_headless_commands_is_one_error_line(command, capsys, tmp_path, monkeypatch):
    """Checkpoints and datasets through solve, sweep and report; session files through ``gui --session``."""
    import deqstudio.gui.app

    def no_window(**kwargs):
        raise AssertionError("a bad session reached the window instead of an error line")

    monkeypatch.setattr(deqstudio.gui.app, "run_gui", no_window)
    bad = Path(__file__).parent / "data" / "bad"
    for name, entry in BAD_FILES:
        if (entry["target"] == "session") != (command == "gui"):
            continue
        option = {"checkpoint": "--checkpoint", "dataset": "--dataset", "session": "--session"}[entry["target"]]
        extra = ["--out", str(tmp_path / name)] if command == "report" else []
        code, out, err = _run(capsys, command, option, str(bad / name), *extra)
        assert code == 2 and out == "", (command, name)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (command, name, err)
        assert lines[0].isprintable(), (command, name, err)  # text from the file is shown escaped
        assert entry.get("loader_keyword", entry["keyword"]) in lines[0], (command, name, err)
        assert not (tmp_path / name).exists()


def test_report_replaces_an_earlier_report_whole_and_refuses_other_folders(capsys, tmp_path):
    out_dir = tmp_path / "rep"
    assert _run(capsys, "report", "--out", str(out_dir), "--sweep")[0] == 0
    assert (out_dir / "robustness.png").exists()
    assert _run(capsys, "report", "--out", str(out_dir), "--sample", "1602")[0] == 0
    assert not (out_dir / "robustness.png").exists()  # no stale figures from the earlier report
    assert json.loads((out_dir / "provenance.json").read_text())["sample"] == 1602
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # nothing left beside it
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, _, err = _run(capsys, "report", "--out", str(mine))
    assert code == 2 and "holds other files" in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_sweep_out_writes_a_provenance_sidecar(capsys, tmp_path):
    table = tmp_path / "sweep.h5"
    assert _run(capsys, "sweep", "--modality", "fou", "--out", str(table))[0] == 0
    side = json.loads((tmp_path / "sweep.h5.provenance.json").read_text())
    assert side["what"] == "sweep" and side["settings"]["modality"] == "fou" and len(side["checkpoint"]["sha256"]) == 64


# -- issue 12: inputs that cannot hurt, write faults, small defects ------------------------------------
class Killed(BaseException):
    """Stands for the process being killed at that moment: no handler below the test sees it."""


def _fail_call(monkeypatch, module, name, number, exc):
    """Make call ``number`` (1-based) of ``module.name`` raise ``exc``; the others behave as before."""
    real = getattr(module, name)
    calls = []

    def patched(*args, **kwargs):
        calls.append(args)
        if len(calls) == number:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, patched)
    return calls


def test_shuffle_with_no_other_sample_to_swap_in_is_one_error_line(small_files, capsys, tmp_path):
    from deqstudio.io.dataset import read_dataset, write_dataset

    ck, data = small_files
    ds = read_dataset(data)
    lonely = int(ds.splits["test"][0])
    ds.splits["train"] = np.array([lonely], dtype=np.int64)  # the shuffle pool holds only the sample itself
    path = write_dataset(ds, tmp_path / "lonely.h5")
    code, out, err = _run(capsys, "solve", "--checkpoint", str(ck), "--dataset", str(path), "--sample", str(lonely),
                          "--corrupt", "strong=shuffle:5")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "shuffle needs at least one other sample" in err


def _sweep_files(tmp_path, name):
    table = tmp_path / name
    return table, table.with_name(table.name + ".provenance.json")


def test_a_sweep_of_a_model_without_a_solver_reports_steps_as_not_applicable(capsys, tmp_path):
    ck = Path(__file__).resolve().parents[1] / "models" / "uci_concat.pt"
    code, out, _ = _run(capsys, "sweep", "--checkpoint", str(ck), "--modality", "fou", "--json",
                        "--out", str(tmp_path / "sweep.csv"))
    assert code == 0
    entry = json.loads(out)["modalities"]["fou"]
    assert entry["mean_steps"] == [None] * 6 and entry["converged_fraction"] == [None] * 6
    assert all(0 <= a <= 1 for a in entry["accuracy"])
    import csv

    with open(tmp_path / "sweep.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["mean_steps"] == "" and r["converged_fraction"] == "" for r in rows)
    assert _run(capsys, "sweep", "--checkpoint", str(ck), "--modality", "fou", "--out", str(tmp_path / "s.h5"))[0] == 0
    with h5py.File(tmp_path / "s.h5") as h5:
        assert np.isnan(h5["robustness/mean_steps"][()]).all()
        assert np.isnan(h5["robustness/converged_fraction"][()]).all()
    code, out, _ = _run(capsys, "sweep", "--checkpoint", str(ck), "--modality", "fou")
    steps = [line for line in out.splitlines() if line.split()[:1] == ["steps"]]
    assert len(steps) == 1 and steps[0].split()[1:] == ["–"] * 6


def test_a_sweep_of_a_deq_model_reports_its_steps(capsys):
    _, out, _ = _run(capsys, "sweep", "--modality", "fou", "--json")
    entry = json.loads(out)["modalities"]["fou"]
    assert all(s is not None and s >= 1 for s in entry["mean_steps"])
    assert all(c is not None and 0 <= c <= 1 for c in entry["converged_fraction"])


def test_hdf5_outputs_are_built_in_memory_never_by_libhdf5_on_disk(small_files, capsys, tmp_path, monkeypatch):
    """A full disk under libhdf5 crashed the process (signal 11 while closing): h5py writes only to memory."""
    real = h5py.File

    def in_memory_only(name, mode="r", *args, **kwargs):
        if mode != "r" and isinstance(name, (str, os.PathLike)):
            raise AssertionError(f"libhdf5 asked to write {name} on disk")
        return real(name, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", in_memory_only)
    assert _run(capsys, "sweep", "--modality", "fou", "--out", str(tmp_path / "sweep.h5"))[0] == 0
    from deqstudio.diagnostics.results import read_hdf5

    arrays, attrs = read_hdf5(tmp_path / "sweep.h5", "robustness")
    assert list(arrays["modality"]) == ["fou"] and attrs["complete"]
    ck, data = small_files
    assert _run(capsys, "report", "--checkpoint", str(ck), "--dataset", str(data), "--out", str(tmp_path / "rep"))[0] == 0
    with real(tmp_path / "rep" / "trace.h5") as h5:
        assert "clean" in h5 and "corrupted" in h5


@pytest.mark.parametrize("suffix", [".csv", ".h5"])
def test_a_full_disk_during_sweep_out_is_one_line_and_keeps_table_and_sidecar_together(capsys, tmp_path,
                                                                                     monkeypatch, suffix):
    table, side = _sweep_files(tmp_path, "sweep" + suffix)
    assert _run(capsys, "sweep", "--modality", "fou", "--out", str(table))[0] == 0
    before = (table.read_bytes(), side.read_bytes())
    assert json.loads(side.read_text())["settings"]["modality"] == "fou"
    # the disk fills up while the sidecar is flushed, after the table's bytes went out
    _fail_call(monkeypatch, os, "fsync", 2, OSError(28, "No space left on device"))
    code, out, err = _run(capsys, "sweep", "--modality", "zer", "--out", str(table))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "No space left on device" in lines[-1] and str(table) in lines[-1]
    assert [line for line in lines if line.startswith("error")] == [lines[-1]]
    assert (table.read_bytes(), side.read_bytes()) == before  # both of the earlier run: never half and half
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([table.name, side.name])


def test_a_sweep_killed_between_table_and_sidecar_is_completed_on_the_next_read(capsys, tmp_path, monkeypatch):
    from deqstudio.diagnostics.results import read_hdf5

    table, side = _sweep_files(tmp_path, "sweep.h5")
    assert _run(capsys, "sweep", "--modality", "fou", "--out", str(table))[0] == 0
    calls = _fail_call(monkeypatch, os, "replace", 3, Killed())  # 1: the journal, 2: the table, 3: the sidecar
    with pytest.raises(Killed):
        main(["sweep", "--modality", "zer", "--out", str(table), "--json"])
    capsys.readouterr()
    monkeypatch.undo()
    assert len(calls) == 3
    arrays, _ = read_hdf5(table, "robustness")  # a reader completes the interrupted commit first
    assert list(arrays["modality"]) == ["zer"]
    assert json.loads(side.read_text())["settings"]["modality"] == "zer"  # the sidecar of the same run
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([table.name, side.name])


def test_a_full_disk_during_train_is_one_error_line(small_files, capsys, tmp_path, monkeypatch):
    """torch.save failing mid-write raises RuntimeError (not OSError): training must still end in one line."""
    import torch

    _, data = small_files
    out = tmp_path / "model.pt"
    out.write_bytes(b"earlier checkpoint")
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):  # torch's own file writer on a full disk
            raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing "
                               "file data/3: file write failed")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    _fail_call(monkeypatch, os, "fsync", 1, OSError(28, "No space left on device"))
    code, out_text, err = _run(capsys, "train", "--dataset", str(data), "--out", str(out), "--epochs", "1",
                               "--hidden", "8", "--fusion", "sum", "--quiet")
    assert code == 2 and out_text == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "No space left on device" in err
    assert out.read_bytes() == b"earlier checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    monkeypatch.undo()
    code, out_text, _ = _run(capsys, "train", "--dataset", str(data), "--out", str(out), "--epochs", "1",
                             "--hidden", "8", "--fusion", "sum", "--quiet")
    assert code == 0 and out.read_bytes().startswith(b"PK")


def test_a_report_swap_killed_midway_is_recovered_on_the_next_run(small_files, capsys, tmp_path, monkeypatch):
    ck, data = small_files
    out_dir = tmp_path / "rep"
    files = ["--checkpoint", str(ck), "--dataset", str(data), "--out", str(out_dir)]
    assert _run(capsys, "report", *files, "--sample", "3")[0] == 0
    real_replace = os.replace

    def killed_as_the_new_report_moves_in(src, dst):
        if Path(dst) == out_dir and Path(src).name.endswith(".tmp"):
            raise Killed()
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_as_the_new_report_moves_in)
    with pytest.raises(Killed):
        main(["report", *files, "--sample", "5"])
    capsys.readouterr()
    monkeypatch.undo()
    assert not out_dir.exists()  # the moment of the kill: the earlier report has stepped aside
    # the next run recovers it first, even one that then fails on a bad argument
    code, _, err = _run(capsys, "report", *files, "--sample", "999999")
    assert code == 2 and "outside" in err
    assert json.loads((out_dir / "provenance.json").read_text())["sample"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no journal, no hidden folders left
    assert _run(capsys, "report", *files, "--sample", "5")[0] == 0
    assert json.loads((out_dir / "provenance.json").read_text())["sample"] == 5


@pytest.mark.parametrize("argv, words", [
    (["--sample", "999999"], "outside"),
    (["--corrupt", "nope=gaussian:2"], "nope"),
    (["--checkpoint", "/nonexistent.pt"], "no such file"),
    (["--corrupt", "pix=gaussian"], "MODALITY=KIND:SEVERITY"),
])
def test_a_screenshot_with_a_bad_argument_is_an_error_line_and_no_picture(tmp_path, argv, words):
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DEQSTUDIO_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = subprocess.run([sys.executable, "-m", "deqstudio", "gui", "--screenshot", str(out), *argv],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if "propagateSizeHints" not in line]  # Qt's offscreen note
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists()
