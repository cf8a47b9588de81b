"""``deqstudio train`` and ``deqstudio inspect``: make a model file, and say what a file holds."""

from __future__ import annotations

import argparse
import json

from ..core.kinds import ABLATIONS, FUSIONS
from ..errors import DeqStudioError
from .common import fail, progress_bar


def add_parsers(sub) -> None:
    train = sub.add_parser("train", help="train a fusion model on a dataset file and save a checkpoint")
    train.add_argument("--dataset", required=True, help="dataset file (.h5, DEQ Studio schema)")
    train.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    train.add_argument("--modalities", help="comma-separated modality names (default: all)")
    train.add_argument("--fusion", default="deq-udml", choices=FUSIONS, help=f"{', '.join(FUSIONS)} (default deq-udml)")
    train.add_argument("--ablation", default="full", choices=ABLATIONS,
                       help=f"DEQ ablation: {', '.join(ABLATIONS)} (default full)")
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--hidden", type=int, default=64, help="fusion width d (a multiple of 4)")
    train.add_argument("--jac-weight", type=float, default=1.0, help="Jacobian regularisation weight (DEQ fusions; default 1.0)")
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--threads", type=int, help="torch threads for the run (default: torch's current count); "
                       "recorded with the checkpoint, as the result depends on it")
    train.add_argument("--noise-augment", action="store_true",
                       help="inject UDML's training noise (same epochs, levels and noise as deq-udml) into another "
                       "fusion; the saved epoch is picked from the same epochs as deq-udml's")
    train.add_argument("--udml-weights", default="udml", metavar="udml|fixed",
                       help="deq-udml: 'udml' (1/α, then 1/(s·α); default) or 'fixed' (w = 1 for every modality, "
                       "noise injection and UDML losses kept)")
    train.add_argument("--no-noise-loss", action="store_true",
                       help="deq-udml: train without the noise-level loss (σ̂ gets no training signal)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    train.set_defaults(run=run_train)

    inspect = sub.add_parser("inspect", help="summarise a checkpoint or a dataset file")
    inspect.add_argument("path")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("--check", action="store_true",
                         help="a big dataset: read and check every value now, caching its ranges and sha256")
    inspect.set_defaults(run=run_inspect)


class EpochBar:
    """Training progress on stderr: one tqdm bar over the epochs with the last epoch's numbers."""

    def __init__(self, total: int) -> None:
        self.bar = progress_bar("train", total, "epoch")

    def __call__(self, record) -> None:
        self.bar.update(1)
        self.bar.set_postfix_str(f"epoch {record.epoch + 1} · loss {record.loss:.3f} · train {record.train_accuracy:.3f}"
                                 f" · val {record.val_accuracy:.3f} · {record.phase} · {record.seconds:.1f}s")

    def close(self) -> None:
        self.bar.close()


def _train_command(args: argparse.Namespace, threads: int) -> str:
    """The train command that reproduces this run, every setting spelled out (threads included)."""
    import shlex

    parts = ["deqstudio", "train", "--dataset", args.dataset, "--out", args.out]
    if args.modalities:
        parts += ["--modalities", args.modalities]
    parts += ["--fusion", args.fusion, "--epochs", str(args.epochs), "--seed", str(args.seed), "--hidden",
              str(args.hidden), "--jac-weight", f"{args.jac_weight:g}", "--device", args.device, "--threads", str(threads)]
    if args.ablation != "full":
        parts += ["--ablation", args.ablation]
    if args.noise_augment:
        parts.append("--noise-augment")
    if args.udml_weights != "udml":
        parts += ["--udml-weights", args.udml_weights]
    if args.no_noise_loss:
        parts.append("--no-noise-loss")
    return " ".join(shlex.quote(str(p)) for p in parts)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from ..core import udml
    from ..io.dataset import read_dataset
    from ..workflows.training import TrainRequest, check_trainable, resolve_device, train_and_save

    try:
        threads = torch.get_num_threads() if args.threads is None else args.threads
        req = TrainRequest(
            modalities=tuple(m.strip() for m in args.modalities.split(",") if m.strip()) if args.modalities else None,
            fusion=args.fusion, epochs=args.epochs, seed=args.seed, hidden=args.hidden, device=args.device,
            ablation=args.ablation, jac_weight=args.jac_weight, threads=threads, noise_augment=args.noise_augment,
            udml_weights=args.udml_weights, noise_loss=not args.no_noise_loss,
        )
        resolve_device(req.device)  # a GPU asked for and absent: said before the dataset is read or a bar drawn
        if req.fusion == "deq-udml":
            udml.check_epochs(req.epochs)  # before the dataset is read
        ds = read_dataset(args.dataset)
        check_trainable(ds)
        progress = None if args.quiet else EpochBar(args.epochs)
        try:
            metrics = train_and_save(ds, req, args.out, progress=progress, command=_train_command(args, threads))
        finally:
            if progress is not None:
                progress.close()
    except (DeqStudioError, ValueError, OSError) as exc:
        return fail(str(exc))
    print(f"saved {args.out}")
    for key in ("test_accuracy", "test_nll", "val_accuracy", "best_epoch", "epochs_run", "train_seconds",
                "test_mean_steps", "test_converged_fraction"):
        if key in metrics:
            value = metrics[key]
            print(f"  {key:<24} {value:.4f}" if isinstance(value, float) else f"  {key:<24} {value}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from ..io.inspect import describe, format_description

    try:
        info = describe(args.path, check=args.check)
    except DeqStudioError as exc:
        return fail(str(exc))
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    return 0
