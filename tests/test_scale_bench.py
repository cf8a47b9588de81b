"""``deqstudio bench --scale``'s parts: the files made when missing, a child's peak memory, the sweeps side by side."""

from __future__ import annotations

import sys

import pytest

from deqstudio.cli import main
from deqstudio.workflows import scale_bench


def test_a_child_process_is_measured_with_its_own_peak_memory():
    child = scale_bench.run_child([sys.executable, "-c", "import time; x = bytearray(300 * 2**20); "
                                   "x[::4096] = b'1' * len(x[::4096]); print('ok'); time.sleep(0.3)"])
    assert child["returncode"] == 0 and child["stdout"].strip() == "ok" and child["seconds"] > 0
    assert child["peak_rss_mb"] >= 300


def test_a_child_is_not_charged_with_the_memory_of_the_process_that_started_it():
    held = bytearray(400 * 2**20)  # this process holds 400 MiB more than the child could: fork copies its pages
    held[::4096] = b"1" * len(held[::4096])
    child = scale_bench.run_child([sys.executable, "-c", "import time; time.sleep(0.3)"])
    assert child["returncode"] == 0
    assert child["peak_rss_mb"] < 100, child["peak_rss_mb"]
    del held


def test_old_and_new_sweeps_are_timed_side_by_side_and_agree(small_files):
    ck, data = small_files
    progress = []
    out = scale_bench.bench_sweeps(data, ck, samples=40, old_default_samples=8, progress=progress.append)
    assert out["samples"] == 40 and out["old_default_samples"] == 8 and out["cells"] == 18
    assert out["tables_agree"] is True and out["new_equilibrium_samples"] == 40
    for key in ("new_samples_per_second", "old_samples_per_second", "old_default_samples_per_second", "new_over_old",
                "new_over_old_default"):
        assert out[key] > 0, key
    assert len(progress) == 3


def test_missing_scale_files_are_made(tmp_path, monkeypatch):
    monkeypatch.setattr(scale_bench, "MODEL_TRAIN_SAMPLES", 60)
    monkeypatch.setattr(scale_bench, "MODEL_VAL_SAMPLES", 20)
    monkeypatch.setattr(scale_bench, "MODEL_TEST_SAMPLES", 30)
    data, model, made = scale_bench.scale_files(tmp_path / "scale", samples=200, dims={"image": 16, "text": 6})
    assert data.name == "mmimdb_like.h5" and model.name == "mmimdb_like.model.pt" and set(made) == {"dataset_s", "model_s"}
    from deqstudio.io.checkpoint import load_checkpoint

    ck = load_checkpoint(model)
    assert "first 60 training and 20 validation samples (test metrics on the first 30)" in ck.training["command"]
    assert ck.metrics["test_samples"] == 30
    assert scale_bench.scale_files(tmp_path / "scale")[2] == {}  # there now: nothing made again


@pytest.mark.parametrize("extra", [["--gui-only"], ["--checkpoint", "x.pt"], ["--scale-samples", "-1"]])
def test_bench_scale_refuses_what_does_not_apply(capsys, extra):
    assert main(["bench", "--scale", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
