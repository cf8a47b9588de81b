"""``sweep --cluster``: chunks on a Dask cluster give the single-process table exactly; a bad cluster is one error
line; Ctrl+C stops the sweep and leaves no worker process behind."""

import dataclasses
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import DATA
from site_view import ROOT

distributed = pytest.importorskip("distributed", reason="the cluster extra (pip install 'deqstudio[cluster]')")
psutil = pytest.importorskip("psutil")

SMALL = dict(chunk_size=16, batch_size=8)  # 48 test samples: 3 chunks over 2 workers, 2 model batches each


def _same(a, b, where=""):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
    else:
        assert a == b, where


def test_a_local_cluster_of_two_workers_gives_the_single_process_table(small_files, tmp_path):
    from deqstudio.diagnostics.dask_cluster import chunk_runner, open_cluster
    from deqstudio.diagnostics.evaluation import Evaluator
    from deqstudio.diagnostics.robustness import robustness_sweep
    from deqstudio.diagnostics.sweep_dispatch import dispatched_sweep
    from deqstudio.io.checkpoint import load_checkpoint
    from deqstudio.io.dataset import read_dataset

    ck, data = small_files
    evaluator = Evaluator(load_checkpoint(ck).adapter, read_dataset(data), batch_size=SMALL["batch_size"])
    plan = dict(kinds=["all"], modalities=["weak", "picture"], levels=[0, 2, 5], **SMALL)
    alone = robustness_sweep(evaluator, **plan, model_name="syn.pt")
    fractions = []
    with open_cluster("local[2]") as client:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2 and all(w["nthreads"] == 1 for w in workers.values())
        pids = client.run(lambda: __import__("os").getpid())
        on_cluster = dispatched_sweep(evaluator, chunk_runner(client, ck), checkpoint=str(ck), dataset=str(data),
                                      device="cpu", **plan, model_name="syn.pt", progress=fractions.append)
        # the chunks really ran on both workers (each keeps the evaluator it built)
        built = client.run(lambda: __import__("deqstudio.diagnostics.sweep_chunks", fromlist=["x"])
                           ._worker_evaluator.cache_info().currsize)
        assert sum(built.values()) >= 1
    assert on_cluster.complete and on_cluster.extra["chunks"] == 3
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    for f in dataclasses.fields(alone):
        if f.name in ("seconds", "extra"):
            continue
        _same(getattr(alone, f.name), getattr(on_cluster, f.name), f.name)
    timing = {"samples_per_second", "evaluated_samples", "resumed_chunks", "chunks"}
    _same({k: v for k, v in alone.extra.items() if k not in timing},
          {k: v for k, v in on_cluster.extra.items() if k not in timing}, "extra")
    assert on_cluster.to_json() == alone.to_json()
    # what the block started is gone when it ends
    time.sleep(0.5)
    assert not [p for p in pids.values() if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


@pytest.mark.parametrize("cluster, words", [
    ("local[0]", "a local cluster has 1 to 64 workers"),
    ("local[two]", "write local[N]"),
    ("no such thing", "expected a Dask scheduler address"),
    ("tcp://127.0.0.1:9", "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
])
def test_a_bad_cluster_is_one_error_line(small_files, capsys, monkeypatch, cluster, words, tmp_path):
    from deqstudio.cli import main
    from deqstudio.diagnostics import dask_cluster

    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT_S", 2)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ck, data = small_files
    code = main(["sweep", "--checkpoint", str(ck), "--dataset", str(data), "--cluster", cluster, "--json"])
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert code == 2 and not out.out
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], out.err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.h5"))


def test_the_command_on_a_local_cluster_and_ctrl_c_leaves_no_worker(tmp_path):
    """The whole command on local[2] (the same JSON as without --cluster), then one interrupted with SIGINT:
    exit 130, "interrupted", and every process it started gone."""
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "DEQSTUDIO_CONFIG_DIR": str(tmp_path / "config")}
    files = ["--checkpoint", str(DATA / "syn.pt"), "--dataset", str(DATA / "syn.h5")]
    base = [sys.executable, "-m", "deqstudio", "sweep", *files, "--modality", "weak", "--json",
            "--chunk-size", "16", "--batch-size", "8"]
    runs = {}
    for label, extra in (("alone", []), ("cluster", ["--cluster", "local[2]"])):
        proc = subprocess.run(base + extra, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert not proc.stderr.strip(), proc.stderr
        runs[label] = json.loads(proc.stdout)
    assert runs["cluster"]["device"] == "cluster local[2] (auto)"
    assert runs["cluster"]["modalities"] == runs["alone"]["modalities"]

    # Python keeps SIGINT ignored when it starts with it ignored (a background job): give it the default
    sweep = subprocess.Popen([sys.executable, "-m", "deqstudio", "sweep", "--cluster", "local[2]", "--restart"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        parent = psutil.Process(sweep.pid)
        started = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sweep.poll() is None:
            started = [c for c in parent.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
            if len(started) >= 2:
                break
            time.sleep(0.2)
        assert len(started) >= 2, "the local cluster's two workers never started"
        everything = parent.children(recursive=True)
        time.sleep(1.0)
        sweep.send_signal(signal.SIGINT)
        _, err = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    gone = time.monotonic() + 15
    while time.monotonic() < gone and any(p.is_running() and p.status() != "zombie" for p in everything):
        time.sleep(0.2)
    assert not [p.pid for p in everything if p.is_running() and p.status() != "zombie"]


def test_the_dispatcher_merges_out_of_order_results_in_order_and_resumes(small_files, tmp_path):
    """Any engine: here chunks run in this process and come back last first; a progress file holding the first
    chunk is resumed (that chunk is not run again) and receives the rest in order."""
    from deqstudio.diagnostics.evaluation import Evaluator
    from deqstudio.diagnostics.robustness import robustness_sweep, sweep_spec
    from deqstudio.diagnostics.sweep_chunks import evaluate_chunk, run_chunk_task
    from deqstudio.diagnostics.sweep_dispatch import dispatched_sweep
    from deqstudio.diagnostics.sweep_store import SweepStore
    from deqstudio.io.checkpoint import load_checkpoint
    from deqstudio.io.dataset import read_dataset

    ck, data = small_files
    evaluator = Evaluator(load_checkpoint(ck).adapter, read_dataset(data), batch_size=SMALL["batch_size"])
    plan = dict(modalities=["weak"], levels=[0, 3], **SMALL)
    alone = robustness_sweep(evaluator, **plan)
    ran = []

    def backwards(tasks):
        for position in reversed(range(len(tasks))):
            ran.append(tasks[position].index)
            yield position, run_chunk_task(tasks[position])

    store, _ = SweepStore.open(tmp_path / "progress", {"test": 1})
    store.append(evaluate_chunk(evaluator, sweep_spec(evaluator, **plan), 0))
    fractions = []
    swept = dispatched_sweep(evaluator, backwards, checkpoint=str(ck), dataset=str(data), **plan, store=store,
                             progress=fractions.append)
    assert ran == [2, 1] and swept.extra["resumed_chunks"] == 1 and fractions == [1 / 3, 2 / 3, 1.0]
    assert len(SweepStore.open(tmp_path / "progress", {"test": 1})[0].finished()) == 3
    assert swept.to_json() == alone.to_json()
    assert np.array_equal(swept.extra["predictions"], alone.extra["predictions"])
