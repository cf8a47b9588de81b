"""The chunked, streaming robustness sweep: the same table as the per-cell reference, whoever ran which chunk."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deqstudio.diagnostics.evaluation import Evaluator
from deqstudio.diagnostics.robustness import per_cell_sweep, robustness_sweep, sweep_spec
from deqstudio.diagnostics.sweep_chunks import (
    CHUNK_KEYS,
    ChunkTask,
    SweepSpec,
    chunk_count,
    chunk_range,
    evaluate_chunk,
    merge_chunks,
    run_chunk_task,
)
from deqstudio.io.checkpoint import load_checkpoint
from deqstudio.io.dataset import read_dataset

LEVELS = (0.0, 2.0, 5.0)
KINDS = ("gaussian", "shuffle")
NON_EQUILIBRIUM = ("accuracy", "mean_steps", "converged_fraction", "noise_estimate", "pe_estimate", "noise_spearman",
                   "pe_spearman")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def syn(small_files):
    ck, data = small_files
    return ck, data, Evaluator(load_checkpoint(ck).adapter, read_dataset(data))


@pytest.fixture(scope="module")
def reference(syn):
    return per_cell_sweep(syn[2], kinds=KINDS, levels=LEVELS, split="test")


def assert_table_equal(a, b, names=NON_EQUILIBRIUM) -> None:
    for name in names:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.extra["predictions"], b.extra["predictions"])


def test_chunks_are_fixed_by_the_chunk_size():
    assert chunk_count(48, 10) == 5 and chunk_count(48, 48) == 1 and chunk_count(0, 10) == 0
    assert [chunk_range(i, 48, 10) for i in range(5)] == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 48)]
    with pytest.raises(ValueError, match="out of range"):
        chunk_range(5, 48, 10)
    with pytest.raises(ValueError, match="chunk_size"):
        SweepSpec(cells=(("a", "gaussian"),), levels=(0.0,), chunk_size=0)
    with pytest.raises(ValueError, match="multiple of batch_size"):
        SweepSpec(cells=(("a", "gaussian"),), levels=(0.0,), chunk_size=10, batch_size=4)


@pytest.mark.parametrize("chunk_size, batch_size", [(10, 5), (400, 400), (15, 5)])
def test_streaming_sweep_equals_the_per_cell_reference(syn, reference, chunk_size, batch_size):
    """Accuracy, steps, convergence, σ̂, PE and their rank correlations do not change (the reference evaluates
    the split in batches of the same size); with the equilibrium subsample covering the split, neither do the
    equilibrium statistics (to rounding)."""
    if batch_size != 400:
        ev = Evaluator(syn[2].adapter, syn[2].dataset, batch_size=batch_size)
        reference = per_cell_sweep(ev, kinds=KINDS, levels=LEVELS, split="test")
    progress = []
    s = robustness_sweep(syn[2], kinds=KINDS, levels=LEVELS, split="test", chunk_size=chunk_size,
                         batch_size=batch_size, equilibrium_samples=48, progress=progress.append)
    assert s.complete and s.samples == 48 and s.columns == reference.columns
    assert_table_equal(s, reference)
    for name, value in reference.equilibrium.items():
        np.testing.assert_allclose(s.equilibrium[name], value, rtol=1e-6, atol=1e-9, err_msg=name)
    assert progress[-1] == pytest.approx(1.0) and np.all(np.diff(progress) > 0)
    assert [r[:3] for r in s.rows()] == [r[:3] for r in reference.rows()]


def test_equilibrium_statistics_on_the_first_samples_of_the_split(syn):
    ev = Evaluator(syn[2].adapter, syn[2].dataset, batch_size=12)
    s = robustness_sweep(ev, kinds=KINDS, levels=LEVELS, split="test", chunk_size=24, equilibrium_samples=12)
    assert_table_equal(s, per_cell_sweep(ev, kinds=KINDS, levels=LEVELS, split="test", equilibrium=False))
    assert s.extra["equilibrium_samples"] == 12
    # the per-cell reference on those 12 samples alone (the split's first batch) gives the same statistics
    first = ev.dataset.split("test")[:12]
    sub = Evaluator(ev.adapter, dataclasses.replace(ev.dataset, splits={**ev.dataset.splits, "first": first}),
                    batch_size=12)
    ref = per_cell_sweep(sub, kinds=KINDS, levels=LEVELS, split="first")
    assert set(ref.equilibrium) == set(s.equilibrium)
    for name, value in ref.equilibrium.items():
        np.testing.assert_allclose(s.equilibrium[name], value, rtol=1e-6, atol=1e-9, err_msg=name)


def test_chunk_results_do_not_depend_on_who_ran_them(syn):
    ck, data, ev = syn
    ev = Evaluator(ev.adapter, ev.dataset, batch_size=5)
    spec = sweep_spec(ev, kinds=KINDS, levels=LEVELS, split="test", chunk_size=10)
    ids = ev.dataset.split("test")
    here = {i: evaluate_chunk(ev, spec, i) for i in reversed(range(chunk_count(len(ids), spec.chunk_size)))}
    assert set(here[0]) == set(CHUNK_KEYS)
    # a worker's task: plain values in (picklable), plain numpy out, the evaluator rebuilt from the paths
    task = pickle.loads(pickle.dumps(ChunkTask(str(ck), str(data), spec, 3)))
    there = pickle.loads(pickle.dumps(run_chunk_task(task)))
    for key in CHUNK_KEYS:
        np.testing.assert_array_equal(there[key], here[3][key], err_msg=key)
    merged = merge_chunks([here[i] for i in range(len(here))], spec, ids, ev.dataset.labels[ids])
    assert merged.complete
    assert_table_equal(merged, per_cell_sweep(ev, kinds=KINDS, levels=LEVELS, split="test"))
    with pytest.raises(ValueError, match="out of order"):
        merge_chunks([here[1], here[0]], spec, ids, ev.dataset.labels[ids])
    assert SweepSpec.from_dict(spec.to_dict()) == spec


def test_a_cancel_keeps_the_cells_every_chunk_finished(syn):
    ev = syn[2]
    calls = []

    def cancel():  # asked before each chunk, each cell and each batch: stop inside the third chunk
        calls.append(1)
        return len(progress) >= 2 * 18 + 4  # 6 curves × 3 levels per chunk

    progress = []
    s = robustness_sweep(ev, kinds=KINDS, levels=LEVELS, split="test", chunk_size=20, batch_size=20,
                         progress=progress.append, cancel=cancel)
    assert not s.complete and len(progress) == 40
    filled = np.isfinite(s.accuracy)
    assert filled.tolist() == [[True, True, True], [True, False, False]] + [[False] * 3] * 4
    ref = per_cell_sweep(Evaluator(ev.adapter, ev.dataset, batch_size=20), kinds=KINDS, levels=LEVELS, split="test")
    np.testing.assert_array_equal(s.accuracy[filled], ref.accuracy[filled])
    assert np.isnan(s.mean_steps[~filled]).all()


# ------------------------------------------------------------------------------ resuming after a cancel or a kill

def test_a_cancelled_sweep_resumes_from_its_progress_file_to_the_same_table(syn, tmp_path):
    from deqstudio.diagnostics.sweep_store import SweepStore, sweep_identity

    ck, data, ev = syn
    ev = Evaluator(ev.adapter, ev.dataset, batch_size=8)
    args = dict(kinds=KINDS, levels=LEVELS, split="test", chunk_size=8)
    whole = robustness_sweep(ev, **args)
    identity = sweep_identity(sweep_spec(ev, **args), ck, data)
    path = tmp_path / "progress.partial"
    store, note = SweepStore.open(path, identity)
    assert note == "" and store.finished() == []
    progress = []
    cut = robustness_sweep(ev, **args, store=store, progress=progress.append,
                           cancel=lambda: len(progress) >= 2 * 18 + 5)  # inside the third of six chunks
    assert not cut.complete and len(store.finished()) == 2

    store, note = SweepStore.open(path, identity)
    assert note == f"resuming from {path.name}: 2 chunk(s) already finished"
    progress.clear()
    resumed = robustness_sweep(ev, **args, store=store, progress=progress.append)
    assert resumed.complete and resumed.extra["resumed_chunks"] == 2 and resumed.extra["evaluated_samples"] == 32
    assert progress[:2] == pytest.approx([36 / 108, 37 / 108]) and progress[-1] == pytest.approx(1.0)
    assert_table_equal(resumed, whole)
    for name in whole.equilibrium:
        np.testing.assert_array_equal(resumed.equilibrium[name], whole.equilibrium[name], err_msg=name)
    assert resumed.to_csv(tmp_path / "a.csv").read_bytes() == whole.to_csv(tmp_path / "b.csv").read_bytes()
    assert len(SweepStore.open(path, identity)[0].finished()) == 6

    # another sweep's arguments, or a file that is not a progress file: start over, saying why
    other = sweep_identity(sweep_spec(ev, **{**args, "levels": (0.0, 1.0)}), ck, data)
    store, note = SweepStore.open(path, other)
    assert note == f"{path.name} records another sweep (different spec); starting over" and store.finished() == []
    (path / "identity.json").write_text("{not JSON")
    store, note = SweepStore.open(path, identity)
    assert note.startswith(f"{path.name} is not a readable sweep progress folder") and note.endswith("starting over")
    assert store.finished() == []


def _sweep_command(ck, data, out):
    return [sys.executable, "-m", "deqstudio", "sweep", "--checkpoint", str(ck), "--dataset", str(data),
            "--kind", "shuffle", "--chunk-size", "4", "--batch-size", "4", "--out", str(out)]


def test_a_killed_sweep_rerun_gives_the_table_of_an_uninterrupted_run(small_files, tmp_path):
    """Through the command line: the process killed (SIGKILL) after some chunks; the rerun continues from them."""
    from deqstudio.diagnostics.sweep_store import _read_chunks

    ck, data = small_files
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole.csv"
    done = subprocess.run(_sweep_command(ck, data, whole), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed.csv"
    proc = subprocess.Popen(_sweep_command(ck, data, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    folder, finished = tmp_path / "cache" / "deqstudio" / "sweeps", 0
    deadline = time.monotonic() + 240
    try:
        while finished < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            for f in folder.glob("*.partial") if folder.exists() else ():
                with contextlib.suppress(OSError):  # the folder removed as we look: the sweep has ended
                    finished = max(finished, len(_read_chunks(f)))
    finally:
        proc.kill()
        proc.wait()
    assert finished >= 2 and not out.exists(), "the sweep was not caught between its chunks"

    rerun = subprocess.run(_sweep_command(ck, data, out), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "note: resuming from" in rerun.stderr and "chunk(s) already finished" in rerun.stderr
    assert "chunks resumed" in rerun.stdout
    assert out.read_bytes() == whole.read_bytes()
    assert list(folder.glob("*.partial")) == []  # the results written, the progress files are gone
