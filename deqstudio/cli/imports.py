"""``deqstudio import deqfusion`` and ``deqstudio import mogonet``: bring a model (and its data) trained elsewhere."""

from __future__ import annotations

import argparse
import json

from ..errors import DeqStudioError, printable
from .common import fail, fraction_progress


def add_parsers(sub) -> None:
    imp = sub.add_parser("import", help="convert an official DEQ fusion checkpoint, or MOGONET CSV data")
    kinds = imp.add_subparsers(dest="kind", metavar="KIND", parser_class=type(imp))
    imp.set_defaults(run=lambda args: fail("import what? `deqstudio import deqfusion SRC ...` or "
                                           "`deqstudio import mogonet DIR ...` (see: deqstudio import --help)"))

    deq = kinds.add_parser("deqfusion", help="convert an official DEQFusion checkpoint (state dict, wrapped, or a whole "
                                             "pickled model, read without running it) into a DEQ Studio checkpoint")
    deq.add_argument("source", metavar="SRC", help="the official file (.pt, .pth, .bin)")
    deq.add_argument("--features", required=True, metavar="F.h5",
                     help="dataset file: the fusion's input features (scripts/dump_features.py), or for the BRCA "
                          "and MM-IMDB experiments the raw inputs of their encoders")
    deq.add_argument("--out", required=True, metavar="OUT.pt", help="DEQ Studio checkpoint to write")
    deq.add_argument("--modalities", help="the dataset's modalities in the block's branch order, comma-separated "
                                          "(default: the dataset's order)")
    deq.add_argument("--head-key", help="the classifier Linear's key (default: the one (C, d) weight that fits)")
    deq.add_argument("--prefix", help="the fusion block's key prefix, e.g. deq_fusion. (when the file has several)")
    deq.add_argument("--variant", choices=("root", "mmimdb"),
                     help="root: GroupNorm after ReLU in the fused branch (root DEQ_fusion.py, BRCA); mmimdb: ReLU "
                          "after it (default: detected, root unless the file says MM-IMDB)")
    deq.add_argument("--task", choices=("multiclass", "multilabel"), help="default: the dataset's labels")
    deq.add_argument("--inputs", choices=("features", "raw"),
                     help="what the dataset holds (default: detected from its sizes)")
    deq.add_argument("--no-evaluate", action="store_true", help="skip scoring the test split")
    deq.add_argument("--json", action="store_true", help="print what was detected and written as one JSON object")
    deq.set_defaults(run=run_deqfusion)

    mog = kinds.add_parser("mogonet", help="read a MOGONET/MM-Dynamics CSV folder (BRCA, ROSMAP, ...) into a dataset")
    mog.add_argument("folder", metavar="DIR", help="folder with 1_tr.csv, 1_te.csv, ..., labels_tr.csv, labels_te.csv")
    mog.add_argument("--out", required=True, metavar="X.h5", help="dataset file to write")
    mog.add_argument("--val-fraction", type=float, default=0.2, help="share of train drawn as validation (default 0.2)")
    mog.add_argument("--seed", type=int, default=0, help="seed of the validation draw (default 0)")
    mog.add_argument("--class-names", help="comma-separated class names (default: from the folder's README, else "
                                           "'class i')")
    mog.add_argument("--no-scale", action="store_true",
                     help="keep the values as they are (default: min-max scaled with the training rows, as the "
                          "official BRCA code does)")
    mog.set_defaults(run=run_mogonet)


def _names(text: str | None) -> tuple[str, ...] | None:
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else None


def run_deqfusion(args: argparse.Namespace) -> int:
    from ..workflows.import_deqfusion import ImportOptions, import_deqfusion

    progress, close = fraction_progress("scoring the test split") if not (args.json or args.no_evaluate) else (
        None, lambda: None)
    try:
        options = ImportOptions(modalities=_names(args.modalities), head_key=args.head_key, prefix=args.prefix,
                                variant=args.variant, task=args.task, inputs=args.inputs)
        plan, path = import_deqfusion(args.source, args.features, args.out, options, evaluate=not args.no_evaluate,
                                      progress=progress)
    except (DeqStudioError, OSError) as exc:
        close()
        return fail(str(exc) if isinstance(exc, DeqStudioError) else f"{exc.strerror or exc}")
    close()
    from ..io.checkpoint import load_checkpoint

    metrics = load_checkpoint(path).metrics
    if args.json:
        print(json.dumps(printable_record(plan, path, metrics), indent=2))
        return 0
    for line in plan.summary():
        print(line)
    if metrics:
        print("test split: " + ", ".join(f"{k.removeprefix('test_').replace('_', ' ')} {v:.4g}"
                                         for k, v in metrics.items()))
    print(f"saved {printable(str(path))}")
    return 0


def printable_record(plan, path, metrics) -> dict:
    from ..errors import printable_data

    return printable_data({"out": str(path), "detected": plan.record(), "summary": plan.summary(), "metrics": metrics})


def run_mogonet(args: argparse.Namespace) -> int:
    from ..workflows.mogonet import import_mogonet

    try:
        ds, path = import_mogonet(args.folder, args.out, val_fraction=args.val_fraction, seed=args.seed,
                                  class_names=_names(args.class_names), scale=not args.no_scale)
    except (DeqStudioError, OSError) as exc:
        return fail(str(exc) if isinstance(exc, DeqStudioError) else f"{exc.strerror or exc}")
    views = ", ".join(f"{printable(n)} {m.dim}" for n, m in ds.modalities.items())
    splits = ", ".join(f"{k} {len(v)}" for k, v in ds.splits.items())
    print(f"{len(ds)} samples, {ds.num_classes} classes ({printable(', '.join(ds.class_names))}); views {views}; "
          f"splits {splits}")
    print(f"saved {printable(str(path))}")
    return 0
