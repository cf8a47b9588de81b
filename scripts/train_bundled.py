#!/usr/bin/env python
"""Train the bundled models and the paper-check runs (5 seeds each), resumably.

    .venv/bin/python scripts/train_bundled.py train --seeds 0,1,2,3,4 [--only NAME,...]
    .venv/bin/python scripts/train_bundled.py report          # tables → models/README.md, model cards

Each run is stored in build/runs/<name>-s<seed>.pt (ignored by git); `report` picks, per bundled
model, the seed with the best validation accuracy, copies it to models/<name>.pt and writes its card.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RUNS = ROOT / "build" / "runs"
UCI = ROOT / "resources" / "datasets" / "uci_mfeat.h5"
BREAST = ROOT / "resources" / "datasets" / "breast_cancer.h5"
VIEWS = "pix,fou,zer"
EPOCHS = 40

# name: (dataset, modalities, fusion, ablation, bundled, table label)
RUNS_TABLE = {
    "uci_deq_udml": (UCI, VIEWS, "deq-udml", "full", True, "DEQ fusion + UDML weights (deq-udml)"),
    "uci_deq": (UCI, VIEWS, "deq", "full", True, "full DEQ fusion (deq)"),
    "uci_weighted_sum": (UCI, VIEWS, "weighted-sum", "full", True, "weighted sum"),
    "uci_concat": (UCI, VIEWS, "concat", "full", True, "concatenation"),
    "uci_sum": (UCI, VIEWS, "sum", "full", True, "sum"),
    "uci_late": (UCI, VIEWS, "late", "full", True, "late fusion (mean of unimodal heads)"),
    "uci_deq_no_deq": (UCI, VIEWS, "deq", "no-deq", False, "f_θ + f_fuse without DEQ (one application)"),
    "uci_deq_no_gate": (UCI, VIEWS, "deq", "no-gate", False, "DEQ without the gate"),
    "uci_deq_no_ftheta": (UCI, VIEWS, "deq", "no-ftheta", False, "DEQ without f_θ"),
    "uci_deq_unrolled": (UCI, VIEWS, "deq", "unrolled", False, "weight-tied unrolled (10 steps)"),
    "breast_cancer_deq_udml": (BREAST, "mean,se,worst", "deq-udml", "full", True, "breast cancer, deq-udml"),
}


def command_for(name: str, seed: int, threads: int = 1) -> str:
    data, views, fusion, ablation, _, _ = RUNS_TABLE[name]
    cmd = (f"deqstudio train --dataset {data.relative_to(ROOT)} --out models/{name}.pt --modalities {views} "
           f"--fusion {fusion} --epochs {EPOCHS} --seed {seed} --hidden 64 --threads {threads}")
    if ablation != "full":
        cmd += f" --ablation {ablation}"
    return cmd


def train(args) -> None:
    import torch

    from deqstudio.io.dataset import read_dataset
    from deqstudio.io.training_run import TrainRequest, train_and_save

    torch.set_num_threads(args.threads)
    RUNS.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else list(RUNS_TABLE)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in names:
            out = RUNS / f"{name}-s{seed}.pt"
            if out.exists():
                continue
            data, views, fusion, ablation, _, _ = RUNS_TABLE[name]
            ds = read_dataset(data)
            req = TrainRequest(modalities=tuple(views.split(",")), fusion=fusion, epochs=EPOCHS, seed=seed,
                               hidden=64, device="cpu", ablation=ablation, threads=args.threads)
            t0 = time.time()
            metrics = train_and_save(ds, req, out, command=command_for(name, seed, args.threads))
            print(f"{name} seed {seed}: test {metrics['test_accuracy']:.4f} in {time.time() - t0:.0f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--seeds", default="0,1,2,3,4")
    t.add_argument("--only")
    t.add_argument("--threads", type=int, default=1)
    sub.add_parser("report")
    args = parser.parse_args()
    if args.cmd == "train":
        train(args)
    else:
        from model_report import report  # scripts/model_report.py

        report(ROOT, RUNS, RUNS_TABLE, command_for)


if __name__ == "__main__":
    main()
