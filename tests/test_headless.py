"""The headless commands: solve, sweep and report, their JSON keys and their error messages."""

import json
from pathlib import Path

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
    assert SOLVE_KEYS <= set(info)
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
    from deqstudio.session.engine import CorruptionChoice

    sample = _first_test_sample_solved_clean_and_corrupted({"pix": CorruptionChoice("gaussian", 4.0)})
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


@pytest.mark.parametrize("command", ["solve", "sweep", "report"])
def test_every_bad_file_through_the_headless_commands_is_one_error_line(command, capsys, tmp_path):
    bad = Path(__file__).parent / "data" / "bad"
    for name, entry in BAD_FILES:
        option = "--checkpoint" if entry["target"] == "checkpoint" else "--dataset"
        extra = ["--out", str(tmp_path / name)] if command == "report" else []
        code, out, err = _run(capsys, command, option, str(bad / name), *extra)
        assert code == 2 and out == "", (command, name)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (command, name, err)
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
