"""Dump what your DEQ fusion model's fusion module receives, for every sample, into a DEQ Studio dataset file.

Run it next to your own training code, in your own environment (torch, numpy and h5py; it does not need DEQ
Studio). It finds the official ``DEQFusion`` module inside your model (the module with a ``func_`` holding
``branches``), hooks its input, runs your model on your data batch by batch and stops each forward pass at the
fusion (so the solver never runs, and no GPU is needed), then writes each modality's features with the labels,
splits and class names in DEQ Studio's HDF5 schema (README "Dataset files"). ``deqstudio import deqfusion``
then converts your checkpoint, and the studio solves the fusion on these features ("corruptions act on
imported features").

Write a small setup file that builds your model and data, e.g. ``my_setup.py``::

    import torch
    from my_project import MyModel, make_loaders          # your code

    def build():
        model = MyModel()
        model.load_state_dict(torch.load("checkpoint_best.pt", map_location="cpu"))
        train, val, test = make_loaders()                 # batches of (inputs, labels)
        return {
            "model": model,
            "splits": {"train": train, "val": val, "test": test},   # val optional: drawn from train if absent
            "forward": lambda model, batch: model(batch[0]),         # run the model on one batch
            "labels": lambda batch: batch[1],                        # (B,) class indices, or (B, C) 0/1
            "modalities": ["mrna", "dna", "mirna"],                  # in the fusion's branch order
            "class_names": ["Normal-like", "Basal-like", "HER2-enriched", "Luminal A", "Luminal B"],
            # "multilabel": True,   # labels are (B, C) sets of 0/1, e.g. MM-IMDB's genres
            # "fusion": model.deq_fusion,   # when the model holds several fusion modules
        }

and run ``python dump_features.py --setup my_setup.py --out features.h5``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
from pathlib import Path

import numpy as np

FORMAT = "deqstudio-dataset"
VERSION = 1


class _Captured(Exception):
    """Raised by the hook to stop a forward pass once the fusion's input is recorded."""


def find_fusion(model):
    """The official DEQFusion module in ``model``: the one whose ``func_`` has ``branches``."""
    found = [m for m in model.modules() if hasattr(getattr(m, "func_", None), "branches")]
    if not found:
        raise SystemExit("error: no DEQ fusion module in the model (no submodule with func_.branches); "
                         "pass it as 'fusion' in build()'s result")
    if len(found) > 1:
        raise SystemExit(f"error: {len(found)} DEQ fusion modules in the model; pass the one to dump as 'fusion'")
    return found[0]


def capture(model, fusion, forward, batches, labels_of):
    """Per modality the (N, d) features the fusion received, and the labels, over the batches."""
    import torch

    seen = {}

    def hook(_module, args):
        features = args[0]
        if not isinstance(features, (list, tuple)) or not all(torch.is_tensor(f) for f in features):
            raise SystemExit("error: the fusion module's first argument is not a list of feature tensors")
        seen["features"] = [f.detach().float().reshape(f.shape[0], -1).cpu().numpy() for f in features]
        raise _Captured()

    handle = fusion.register_forward_pre_hook(hook)
    parts, labels = [], []
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                seen.clear()
                with contextlib.suppress(_Captured):  # the hook stops the pass at the fusion
                    forward(model, batch)
                if "features" not in seen:
                    raise SystemExit("error: a forward pass never reached the fusion module")
                parts.append(seen["features"])
                y = labels_of(batch)
                labels.append(np.asarray(y.cpu() if torch.is_tensor(y) else y))
    finally:
        handle.remove()
    if not parts:
        return None, None
    features = [np.concatenate([p[m] for p in parts]).astype(np.float32) for m in range(len(parts[0]))]
    return features, np.concatenate(labels)


def write(path, features: dict, labels: np.ndarray, splits: dict, class_names, *, multilabel: bool = False,
          name: str = "", description: str = "") -> None:
    """The DEQ Studio dataset schema: /modalities/<name>, /labels (+ task), /splits/<train|val|test>."""
    import h5py

    labels = np.asarray(labels).astype(np.int64)
    if multilabel and (labels.ndim != 2 or labels.shape[1] != len(class_names)):
        raise SystemExit(f"error: multilabel labels must be (N, {len(class_names)}) of 0/1, got {labels.shape}")
    if not multilabel and labels.ndim != 1:
        raise SystemExit(f"error: labels must be one class index per sample, got shape {labels.shape} "
                         "(set 'multilabel': True for label sets)")
    strings = h5py.string_dtype()
    with h5py.File(path, "w") as h5:
        h5.attrs.update({"format": FORMAT, "version": VERSION, "name": name or Path(path).stem,
                         "description": description, "source": "scripts/dump_features.py", "license": ""})
        group = h5.create_group("modalities", track_order=True)
        for modality, values in features.items():
            dset = group.create_dataset(modality, data=values.astype(np.float32), compression="gzip")
            dset.attrs["kind"] = "vector"
        lab = h5.create_dataset("labels", data=labels, compression="gzip")
        lab.attrs["class_names"] = np.asarray([str(c) for c in class_names], dtype=strings)
        if multilabel:
            lab.attrs["task"] = "multilabel"
        split_group = h5.create_group("splits")
        for split, indices in splits.items():
            split_group.create_dataset(split, data=np.asarray(indices, dtype=np.int64))


def dump(setup: dict, out, *, val_fraction: float = 0.1, seed: int = 0) -> dict:
    """Run the setup's model over its splits and write ``out``; returns the split sizes."""
    model = setup["model"]
    fusion = setup.get("fusion") or find_fusion(model)
    names = list(setup["modalities"])
    per_split, labels, splits, start = {}, [], {}, 0
    for split in ("train", "val", "test"):
        batches = setup["splits"].get(split)
        if batches is None:
            continue
        features, y = capture(model, fusion, setup["forward"], batches, setup["labels"])
        if features is None:
            raise SystemExit(f"error: split {split!r} has no batches")
        if len(features) != len(names):
            raise SystemExit(f"error: the fusion received {len(features)} modalities; 'modalities' names {len(names)}")
        per_split[split] = features
        labels.append(y)
        splits[split] = np.arange(start, start + len(y))
        start += len(y)
    if "train" not in splits or "test" not in splits:
        raise SystemExit("error: 'splits' needs at least train and test")
    if "val" not in splits:  # drawn from train, seeded, so every DEQ Studio dataset has its three splits
        rng = np.random.default_rng(seed)
        train = rng.permutation(splits["train"])
        k = max(1, int(round(val_fraction * len(train))))
        splits["val"], splits["train"] = np.sort(train[:k]), np.sort(train[k:])
    order = [s for s in ("train", "val", "test") if s in per_split]
    features = {n: np.concatenate([per_split[s][m] for s in order]) for m, n in enumerate(names)}
    write(out, features, np.concatenate(labels), splits, setup["class_names"],
          multilabel=bool(setup.get("multilabel", False)), name=setup.get("name", ""),
          description=setup.get("description", "features the DEQ fusion module received, by scripts/dump_features.py"))
    return {k: len(v) for k, v in splits.items()}


def _load_setup(path: str) -> dict:
    spec = importlib.util.spec_from_file_location("dump_features_setup", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # your own setup file, in your own environment
    return module.build()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", required=True, help="your setup file defining build() (see the docstring)")
    parser.add_argument("--out", required=True, help="dataset file to write (.h5)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of train drawn as val when no val split")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = dump(_load_setup(args.setup), args.out, val_fraction=args.val_fraction, seed=args.seed)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
