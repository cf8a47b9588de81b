"""``deqstudio bench --scale``: DEQ Studio on an MM-IMDB-sized dataset, measured side by side in one run.

The files (``build/scale/mmimdb_like.h5`` and a model for it) are made when missing: the dataset by
``scale_data.make_scale_dataset``, the model by ``scale_model`` (deq-udml, 3 epochs on the first
``MODEL_TRAIN_SAMPLES`` training and ``MODEL_VAL_SAMPLES`` validation samples, its test metrics on the first
``MODEL_TEST_SAMPLES``, learning rate 3e-3 and batches of 32; the checkpoint's ``training`` record says so): 20–35
s on two cores, test accuracy 0.93 (the full training split gives 0.97 in 340 s). Then:

- ``inspect``: wall time and peak resident memory of ``deqstudio inspect FILE`` in a child process;
- the sweep: the old per-cell path (``robustness_sweep(..., streaming=False)``, without and with the
  equilibrium statistics) and the streaming sweep (the default) in this process, on the same first samples of
  the test split, in samples/s, with a check that their tables agree;
- the window: ``deqstudio bench --gui-only --quick --json`` on the files in a child process (its first plotted
  solve and its peak resident memory), skipped with a reason when Qt is not importable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..diagnostics.child_memory import wait_with_peak_rss

DEFAULT_FOLDER = Path("build") / "scale"
DATASET_NAME, MODEL_NAME = "mmimdb_like.h5", "mmimdb_like.model.pt"
MODEL_TRAIN_SAMPLES, MODEL_VAL_SAMPLES, MODEL_TEST_SAMPLES, MODEL_EPOCHS = 600, 200, 1000, 3
MODEL_LR, MODEL_BATCH = 3e-3, 32  # a few hundred samples need more, larger steps than the defaults (1e-3, 64)
SWEEP_SAMPLES = 0  # the first test samples both sweeps are timed on (0: the whole test split, 5,200)
OLD_DEFAULT_SAMPLES = 100  # the old sweep with its per-sample equilibrium statistics: slow, so on fewer samples
CHILD_TIMEOUT_S = 600


def scale_files(folder: str | os.PathLike = DEFAULT_FOLDER, progress=None, samples: int | None = None,
                dims: dict | None = None) -> tuple[Path, Path, dict]:
    """The dataset and model in ``folder``, made when missing; and what was made (seconds each).

    ``samples`` and ``dims``: a smaller dataset than MM-IMDB's (the tests' own)."""
    from .scale_data import DEFAULT_SAMPLES, make_scale_dataset

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data, model = folder / DATASET_NAME, folder / MODEL_NAME
    made = {}
    if not data.exists():
        if progress:
            progress(f"generating {data} (26,000 samples × 4,446 features)")
        t0 = time.perf_counter()
        make_scale_dataset(data, samples=samples or DEFAULT_SAMPLES, dims=dims)
        made["dataset_s"] = round(time.perf_counter() - t0, 1)
    if not model.exists():
        if progress:
            progress(f"training {model} (deq-udml, {MODEL_EPOCHS} epochs on {MODEL_TRAIN_SAMPLES} training samples)")
        t0 = time.perf_counter()
        scale_model(data, model)
        made["model_s"] = round(time.perf_counter() - t0, 1)
    return data, model, made


def scale_model(data: Path, out: Path) -> dict:
    """A deq-udml model for the scale dataset, trained on a subset of its training split (see the module doc)."""
    from ..io.dataset import read_dataset
    from .training import TrainRequest, train_and_save

    ds = read_dataset(data)
    subset = dataclasses.replace(ds, splits={**ds.splits, "train": ds.split("train")[:MODEL_TRAIN_SAMPLES],
                                             "val": ds.split("val")[:MODEL_VAL_SAMPLES],
                                             "test": ds.split("test")[:MODEL_TEST_SAMPLES]})
    command = (f"deqstudio bench --scale: deq-udml, {MODEL_EPOCHS} epochs on the first {MODEL_TRAIN_SAMPLES} "
               f"training and {MODEL_VAL_SAMPLES} validation samples (test metrics on the first {MODEL_TEST_SAMPLES}), "
               f"lr {MODEL_LR:g}, batch {MODEL_BATCH}")
    request = TrainRequest(epochs=MODEL_EPOCHS, device="cpu", lr=MODEL_LR, batch_size=MODEL_BATCH)
    return train_and_save(subset, request, out, command=command)


def run_child(argv: list[str], timeout: float = CHILD_TIMEOUT_S) -> dict:
    """A child process run to its end: wall seconds, peak resident memory (MB), exit code, stdout and stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_source_root(), os.environ.get("PYTHONPATH"))
                                                       if p)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        peak = wait_with_peak_rss(proc, timeout)  # the child's own program, not the pages it was forked with
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return {"seconds": round(seconds, 3), "peak_rss_mb": None if peak is None else round(peak, 1),
                "returncode": proc.returncode, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


def _source_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def bench_inspect(data: Path) -> dict:
    child = run_child([sys.executable, "-m", "deqstudio", "inspect", str(data)])
    if child["returncode"] != 0:
        return {"error": child["stderr"].strip().splitlines()[-1:] or ["inspect failed"]}
    return {"seconds": child["seconds"], "peak_rss_mb": child["peak_rss_mb"]}


def bench_window(data: Path, model: Path) -> dict:
    """The studio's window on the files, in a child process (skipped when Qt cannot be imported)."""
    import importlib.util

    for name in ("PySide6", "pyqtgraph", "qasync"):
        if importlib.util.find_spec(name) is None:
            return {"skipped": f"{name} is not installed (pip install 'deqstudio[gui]')"}
    child = run_child([sys.executable, "-m", "deqstudio", "bench", "--gui-only", "--quick", "--json",
                       "--checkpoint", str(model), "--dataset", str(data)])
    if child["returncode"] != 0:
        lines = child["stderr"].strip().splitlines()
        return {"error": lines[-1] if lines else f"exit code {child['returncode']}"}
    gui = json.loads(child["stdout"])["gui"]
    # peak_rss_mb is the studio's own (a `gui --screenshot` process that fills the whole table); the bench process
    # around it also holds a second window, its slider moves and playback, so its peak is reported apart
    keep = ("first_plot_s", "window_shown_s", "table_fill_s", "slider_to_plot_ms_p50", "peak_rss_mb")
    return {**{k: gui[k] for k in keep if k in gui}, "bench_process_peak_rss_mb": child["peak_rss_mb"],
            "process_s": child["seconds"]}


def bench_sweeps(data: Path, model: Path, samples: int = SWEEP_SAMPLES, old_default_samples: int = OLD_DEFAULT_SAMPLES,
                 progress=None) -> dict:
    """The old per-cell sweep against the streaming one on the same first test samples, in this process."""
    import torch

    from ..diagnostics.evaluation import Evaluator
    from ..diagnostics.robustness import robustness_sweep
    from ..diagnostics.sweep_chunks import EQUILIBRIUM_SAMPLES
    from ..io.checkpoint import load_checkpoint
    from ..io.dataset import read_dataset

    ds = read_dataset(data)
    test = ds.split("test")
    samples = min(samples, len(test)) if samples else len(test)
    old_default_samples = min(old_default_samples, samples)
    ds = dataclasses.replace(ds, splits={**ds.splits, "bench": test[:samples], "bench_small": test[:old_default_samples]})
    evaluator = Evaluator(load_checkpoint(model).adapter, ds)

    def timed(what, **kwargs):
        if progress:
            progress(what)
        t0 = time.perf_counter()
        swept = robustness_sweep(evaluator, **kwargs)
        return swept, time.perf_counter() - t0

    new, new_s = timed(f"measuring the streaming sweep on {samples} test samples", split="bench")
    old, old_s = timed(f"measuring the old per-cell sweep without equilibrium statistics on {samples} test samples",
                       split="bench", streaming=False, equilibrium=False)
    _, old_default_s = timed(f"measuring the old per-cell sweep with equilibrium statistics on {old_default_samples} test samples",
                             split="bench_small", streaming=False)
    agree = all(np.array_equal(getattr(new, k), getattr(old, k), equal_nan=True)
                for k in ("accuracy", "mean_steps", "converged_fraction", "noise_estimate", "pe_estimate"))
    cells = len(new.modality) * len(new.levels)
    return {
        "samples": samples, "cells": cells, "threads": torch.get_num_threads(),
        "new_samples_per_second": round(samples / new_s, 2), "new_seconds": round(new_s, 2),
        "new_equilibrium_samples": min(EQUILIBRIUM_SAMPLES, samples),
        "old_samples_per_second": round(samples / old_s, 2), "old_seconds": round(old_s, 2),
        "new_over_old": round(old_s / new_s, 2),
        "old_default_samples": old_default_samples,
        "old_default_samples_per_second": round(old_default_samples / old_default_s, 2),
        "new_over_old_default": round((samples / new_s) / (old_default_samples / old_default_s), 2),
        "tables_agree": bool(agree),
    }


def bench_scale(folder: str | os.PathLike = DEFAULT_FOLDER, samples: int = SWEEP_SAMPLES, gui: bool = True,
                progress=None) -> dict:
    """Every measurement of ``bench --scale`` (keys in the README)."""
    data, model, made = scale_files(folder, progress)
    if progress:
        progress("measuring inspect in a child process")
    report = {"dataset": str(data), "model": str(model), "made": made, "inspect": bench_inspect(data)}
    report["sweep"] = bench_sweeps(data, model, samples, progress=progress)
    if gui:
        if progress:
            progress("measuring the window's first plot in a child process")
        report["window"] = bench_window(data, model)
    else:
        report["window"] = {"skipped": "--no-gui"}
    return report
