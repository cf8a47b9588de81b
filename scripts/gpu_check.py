"""The Python parts of scripts/gpu_check.sh: is there CUDA, do CUDA and CPU equilibria agree, how fast is one
sample against a batch on each device, and the JSON summary of the whole check.

Needs only torch, numpy and h5py (and this repository on PYTHONPATH):

    python scripts/gpu_check.py probe                         # "CUDA: <name>" (exit 0) or "no CUDA: ..." (exit 3)
    python scripts/gpu_check.py agree --device cuda           # equilibria on cuda vs cpu, and B=1 vs batch timings
    python scripts/gpu_check.py summary --dir D [--out F]     # the JSON files in D as one summary
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

NO_CUDA = 3  # probe's exit status when there is no CUDA device
AGREE_TOL = 1e-4  # largest relative distance ‖z_cuda − z_cpu‖ / ‖z_cpu‖ accepted


def probe() -> tuple[bool, str]:
    """(CUDA usable, one line saying what was found)."""
    import torch

    if not torch.cuda.is_available():
        why = ("this torch is built without CUDA" if torch.version.cuda is None
               else f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no CUDA device")
        return False, f"no CUDA: {why}"
    name = torch.cuda.get_device_name(0)
    return True, f"CUDA: {name} (torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s))"


def _model_and_inputs(samples: int):
    from deqstudio.core.solvers.settings import SolverSettings
    from deqstudio.io.checkpoint import load_checkpoint
    from deqstudio.io.dataset import read_dataset
    from deqstudio.paths import default_checkpoint, default_dataset

    adapter = load_checkpoint(default_checkpoint()).adapter
    ds = read_dataset(default_dataset())
    ids = ds.split("test")[:samples]
    arrays = ds.arrays(list(adapter.modality_names), ids)
    base = adapter.solver_defaults or SolverSettings()
    return adapter, arrays, base


def _median_ms(call, repeats: int) -> float:
    call()  # warm-up: first-call allocation, CUDA context and kernel caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()  # returns numpy arrays: a CUDA run has finished (synchronised) when it returns
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def agree(device: str, samples: int = 256, repeats: int = 20) -> dict:
    """Equilibria of the bundled default model's first test samples on ``device`` against the CPU (tight
    tolerance, the same solver), and the time of a one-sample solve and of a batch on each device."""
    import numpy as np
    import torch

    adapter, arrays, base = _model_and_inputs(samples)
    tight = base.with_(tol=1e-6, max_iter=300)
    runs = {}
    for where in ("cpu", device):
        adapter.to(where)
        runs[where] = adapter(arrays, tight)
    cpu, other = runs["cpu"], runs[device]
    both = cpu.trace.converged & other.trace.converged
    z0, z1 = np.asarray(cpu.z_star, np.float64)[both], np.asarray(other.z_star, np.float64)[both]
    rel = np.linalg.norm(z1 - z0, axis=1) / np.maximum(np.linalg.norm(z0, axis=1), 1e-12)
    worst = float(rel.max()) if len(rel) else float("nan")
    timing = {}
    one = [a[:1] for a in arrays]
    for where in ("cpu", device):
        adapter.to(where)
        b1 = _median_ms(lambda: adapter(one, base), repeats)
        batch = _median_ms(lambda: adapter(arrays, base), max(3, repeats // 4))
        timing[where] = {"one_sample_ms": round(b1, 3), "batch": len(arrays[0]), "batch_ms": round(batch, 3),
                         "batch_per_sample_ms": round(batch / len(arrays[0]), 4)}
    adapter.to("cpu")
    return {
        "device": device, "torch": torch.__version__, "threads": torch.get_num_threads(), "samples": len(arrays[0]),
        "converged_on_both": int(both.sum()), "max_relative_distance": worst, "tolerance": AGREE_TOL,
        "agree": bool(len(rel) > 0 and worst <= AGREE_TOL),
        "predictions_equal": float((cpu.probabilities.argmax(1) == other.probabilities.argmax(1)).mean()),
        "timing": timing,
    }


def summary(folder: Path) -> dict:
    """Every ``NAME.json`` in ``folder`` under its name, with the figures the README quotes drawn out."""
    parts = {}
    for path in sorted(folder.glob("*.json")):
        try:
            parts[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            parts[path.stem] = {"error": f"{path.name} is not JSON ({exc})"}
    figures = {}
    for name in ("sweep_cpu", "sweep_device"):
        sweep = parts.get(name)
        if isinstance(sweep, dict) and "samples_per_second" in sweep:
            figures[f"{name}_samples_per_second"] = sweep["samples_per_second"]
    if "sweep_cpu_samples_per_second" in figures and "sweep_device_samples_per_second" in figures:
        figures["sweep_speedup"] = round(figures["sweep_device_samples_per_second"]
                                         / figures["sweep_cpu_samples_per_second"], 2)
    check = parts.get("agree")
    if isinstance(check, dict) and "timing" in check:
        figures["agree"] = check["agree"]
        figures["max_relative_distance"] = check["max_relative_distance"]
        for where, t in check["timing"].items():
            figures[f"one_sample_ms_{where}"] = t["one_sample_ms"]
            figures[f"batch_per_sample_ms_{where}"] = t["batch_per_sample_ms"]
    return {"figures": figures, "parts": parts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("probe", help="say whether CUDA is usable (exit 3 when not)")
    a = sub.add_parser("agree", help="CUDA vs CPU equilibria and B=1 vs batch timings, as JSON")
    a.add_argument("--device", default="cuda")
    a.add_argument("--samples", type=int, default=256)
    a.add_argument("--repeats", type=int, default=20)
    s = sub.add_parser("summary", help="the check's JSON files as one summary")
    s.add_argument("--dir", required=True, type=Path)
    s.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.what == "probe":
        ok, line = probe()
        print(line)
        return 0 if ok else NO_CUDA
    if args.what == "agree":
        if args.device.startswith("cuda") and not probe()[0]:
            print(f"error: {probe()[1]}", file=sys.stderr)
            return NO_CUDA
        result = agree(args.device, args.samples, args.repeats)
        print(json.dumps(result, indent=2))
        return 0 if result["agree"] else 1
    result = summary(args.dir)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps(result["figures"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
