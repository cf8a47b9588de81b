#!/usr/bin/env python
"""Rebuild the small committed test fixtures: tests/data/syn.h5 and tests/data/syn.pt.

    PYTHONPATH=. .venv/bin/python scripts/make_test_fixtures.py [--out tests/data]

syn.h5 is ``make_synthetic(n=240, num_classes=4, seed=0)`` (two vector modalities and an 8 x 8 image);
syn.pt is a small deq-udml model trained on it. The tests read these files instead of training a model
during the run: the weights of a model trained with torch depend on the intra-op thread count (its
reductions round differently), so a model trained on each machine behaved differently on each.

The build is deterministic on a given machine and torch build: one intra-op thread, fixed seeds,
deterministic algorithms; two builds hold the same weights and data (the checkpoint's bytes still differ:
torch names the archive's folder after the temporary file the atomic save writes). Another CPU or torch
version may give slightly different weights; the tests do not depend on exact values, they pick samples
by what the model does with them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# what the fixture model is; the tests only rely on it being a small, mostly contractive deq-udml model
DATASET = dict(n=240, num_classes=4, seed=0)
# (about 24,000 weights: the checkpoint stays near 100 KB)
TRAINING = dict(fusion="deq-udml", epochs=30, hidden=16, lr=3e-3, device="cpu", jac_weight=1.0, batch_size=16, seed=0,
                config_overrides={"encoder_hidden": 32})


def build(out: Path) -> tuple[Path, Path]:
    import numpy as np
    import torch

    from deqstudio.io.checkpoint import save_checkpoint
    from deqstudio.io.dataset import write_dataset
    from deqstudio.io.synthetic import make_synthetic
    from deqstudio.workflows.training import TrainRequest, evaluate, train_model

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    np.random.seed(0)
    out.mkdir(parents=True, exist_ok=True)
    ds = make_synthetic(**DATASET)
    data = write_dataset(ds, out / "syn.h5")
    model, metrics, dependency, info = train_model(ds, TrainRequest(**TRAINING))
    # provenance without the wall-clock fields, so that a rebuild on the same machine gives the same file
    metrics.pop("train_seconds", None)
    info.pop("finished", None)
    info["command"] = "scripts/make_test_fixtures.py"
    ck = save_checkpoint(out / "syn.pt", model, metrics=metrics, dataset=ds.identity(), dependency=dependency,
                         training=info)
    val = evaluate(model, ds, "val")
    print(f"{data}: {data.stat().st_size / 1024:.0f} KB; {ck}: {ck.stat().st_size / 1024:.0f} KB")
    print(f"test accuracy {metrics['test_accuracy']:.3f}, converged {metrics['test_converged_fraction']:.3f}; "
          f"val accuracy {val['val_accuracy']:.3f}, converged {val['val_converged_fraction']:.3f}")
    return ck, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
