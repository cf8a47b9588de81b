"""scripts/gpu_check.sh without a GPU: it says "no CUDA" in one line and measures nothing; its Python parts run on
a bare torch + numpy + h5py interpreter (as on the GPU machine), CPU against CPU."""

import json
import os
import subprocess

import pytest
import torch

from site_view import ROOT, python_in_view, requirement_closure, site_view

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="these check the script where CUDA is absent")


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """(argv prefix, environment) of an interpreter that sees only torch, numpy, h5py and their requirements."""
    folder = tmp_path_factory.mktemp("bare")
    site = site_view(folder / "site", keep=requirement_closure(["torch", "numpy", "h5py"]))
    prefix, env = python_in_view(site)
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {" ".join(prefix)} "$@"\n')
    wrapper.chmod(0o755)
    env["DEQSTUDIO_CONFIG_DIR"] = str(folder / "config")
    env["XDG_CACHE_HOME"] = str(folder / "cache")
    return prefix, env, wrapper


def test_the_script_says_no_cuda_and_measures_nothing(bare, tmp_path):
    _, env, wrapper = bare
    env = dict(env, PYTHON=str(wrapper), OUT=str(tmp_path / "out"))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "gpu_check: no CUDA: " in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert json.loads((tmp_path / "out" / "gpu_check.json").read_text())["cuda"] is False
    assert sorted(os.listdir(tmp_path / "out")) == ["gpu_check.json"]


def test_a_bad_argument_is_a_usage_line(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--gpu"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: ")


def test_the_python_parts_run_on_a_bare_interpreter(bare, tmp_path):
    prefix, env, _ = bare
    script = str(ROOT / "scripts" / "gpu_check.py")

    def run(*argv):
        return subprocess.run([*prefix, script, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)

    probe = run("probe")
    assert probe.returncode == 3 and probe.stdout.startswith("no CUDA: ") and not probe.stderr
    cuda = run("agree", "--device", "cuda")
    assert cuda.returncode == 3 and cuda.stderr.strip().startswith("error: no CUDA: ")
    assert len(cuda.stderr.strip().splitlines()) == 1
    cpu = run("agree", "--device", "cpu", "--samples", "8", "--repeats", "1")
    assert cpu.returncode == 0, cpu.stderr[-3000:]
    result = json.loads(cpu.stdout)
    assert result["agree"] and result["max_relative_distance"] == 0.0 and result["samples"] == 8
    assert set(result["timing"]["cpu"]) == {"one_sample_ms", "batch", "batch_ms", "batch_per_sample_ms"}
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "agree.json").write_text(cpu.stdout)
    (folder / "sweep_cpu.json").write_text(json.dumps({"samples_per_second": 40.0}))
    (folder / "sweep_device.json").write_text(json.dumps({"samples_per_second": 100.0}))
    (folder / "bench.json").write_text("not json")
    summary = run("summary", "--dir", str(folder), "--out", str(tmp_path / "gpu_check.json"))
    assert summary.returncode == 0, summary.stderr
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["figures"]["sweep_speedup"] == 2.5 and written["figures"]["agree"] is True
    assert "error" in written["parts"]["bench"]


def test_without_a_gpu_auto_is_the_cpu_and_cuda_is_one_line_or_a_note(small_files, capsys, tmp_path):
    from deqstudio.cli import main

    ck, data = (str(p) for p in small_files)
    files = ["--checkpoint", ck, "--dataset", data]
    assert main(["sweep", *files, "--modality", "weak", "--json"]) == 0  # the default device: auto
    out = capsys.readouterr()
    assert json.loads(out.out)["device"] == "cpu" and not out.err
    assert main(["sweep", *files, "--modality", "weak", "--device", "cuda", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["device"] == "cpu" and out.err.strip() == "note: CUDA is not available; running on the CPU"
    for argv in (["train", "--dataset", data, "--out", str(tmp_path / "x.pt"), "--device", "cuda"],
                 ["bench", "--device", "cuda", "--no-gui"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "CUDA" in err, err
    assert not (tmp_path / "x.pt").exists()
