"""Command line: ``deqstudio [command] ...``. Heavy imports (torch, Qt) happen inside each command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

from . import __version__

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deqstudio", description="See inside deep-equilibrium multimodal fusion models.")
    parser.add_argument("--version", action="version", version=f"deqstudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="print what is installed and solve the demo fusion map step by step")
    demo.add_argument("--solver", default="anderson", help="anderson, fixed_point or broyden")

    bench = sub.add_parser("bench", help="benchmark the solvers against torchdeq (ratios, medians over repeats)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--repeats", type=int, default=15, help="timed repeats per case (default 15)")
    bench.add_argument("--quick", action="store_true", help="d=128 only, 5 repeats")
    bench.add_argument("--device", default="cpu", help="cpu or cuda")
    bench.add_argument("--no-gui", action="store_true", help="skip the studio measurements (the gui object)")
    bench.add_argument("--gui-only", action="store_true", help="only the studio measurements")

    gui = sub.add_parser("gui", help="open the studio (the default command)")
    gui.add_argument("--checkpoint", help="checkpoint file (default: the bundled demo model)")
    gui.add_argument("--dataset", help="dataset file (default: the bundled UCI Multiple Features)")
    gui.add_argument("--session", help="a saved session file")
    gui.add_argument("--screenshot", metavar="OUT.png", help="wait for the solve, save a screenshot of the window, exit")
    gui.add_argument("--sample", type=int, help="dataset index of the sample to show")
    gui.add_argument("--corrupt", action="append", default=[], metavar="MOD=KIND:SEVERITY",
                     help="corrupt a modality, e.g. pix=gaussian:3 (repeatable)")
    gui.add_argument("--step", type=int, help="solver step the scrubber shows (1-based; default the last)")

    train = sub.add_parser("train", help="train a fusion model on a dataset file and save a checkpoint")
    train.add_argument("--dataset", required=True, help="dataset file (.h5, DEQ Studio schema)")
    train.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    train.add_argument("--modalities", help="comma-separated modality names (default: all)")
    train.add_argument("--fusion", default="deq-udml", help="deq, deq-udml, concat, sum, weighted-sum or late")
    train.add_argument("--ablation", default="full", help="DEQ ablation: full, no-ftheta, no-ffuse, no-gate, no-deq, unrolled")
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

    solve = sub.add_parser("solve", help="solve one sample (clean and corrupted) and print the trace")
    _files(solve)
    solve.add_argument("--sample", type=int, help="dataset index (default: the first test sample)")
    _corrupt_and_solver(solve)
    solve.add_argument("--json", action="store_true", help="print one JSON object (keys in the README)")

    sweep = sub.add_parser("sweep", help="robustness curve and noise calibration over a split")
    _files(sweep)
    sweep.add_argument("--modality", help="one modality (default: every modality)")
    sweep.add_argument("--kind", help="corruption kind (default gaussian; 'all' for every kind that applies)")
    sweep.add_argument("--split", default="test", help="train, val or test (default test)")
    sweep.add_argument("--out", help="also write the table: .csv or .h5")
    sweep.add_argument("--json", action="store_true", help="print one JSON object (keys in the README)")

    report = sub.add_parser("report", help="write a report folder: every plot (PNG, SVG, PDF, CSV), trace, provenance, report.html")
    _files(report)
    report.add_argument("--out", required=True, help="folder to write (created if missing)")
    report.add_argument("--sample", type=int, help="dataset index (default: the first test sample)")
    _corrupt_and_solver(report)
    report.add_argument("--sweep", action="store_true", help="add the robustness and calibration sweep")

    inspect = sub.add_parser("inspect", help="summarise a checkpoint or a dataset file")
    inspect.add_argument("path")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _files(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="checkpoint file (default: the bundled demo model)")
    p.add_argument("--dataset", help="dataset file (default: the bundled UCI Multiple Features)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")


def _corrupt_and_solver(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corrupt", action="append", default=[], metavar="MOD=KIND:SEVERITY",
                   help="corrupt a modality, e.g. pix=gaussian:3 (repeatable)")
    p.add_argument("--solver", help="anderson (default), fixed_point or broyden")
    p.add_argument("--max-iter", type=int, help="solver step limit (default 50)")
    p.add_argument("--tol", type=float, help="solver tolerance (default 1e-4)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = args.command or "gui"
    if name == "gui" and not hasattr(args, "screenshot"):
        args = build_parser().parse_args(["gui"])
    try:
        return COMMANDS[name](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


@command("gui")
def _gui(args: argparse.Namespace) -> int:
    from .core.corruptions import CorruptionSpec

    for text in args.corrupt:
        try:
            CorruptionSpec.parse(text)
        except ValueError as exc:
            return _fail(str(exc))
    for label, path in (("checkpoint", args.checkpoint), ("dataset", args.dataset), ("session", args.session)):
        if path is not None and not __import__("os").path.exists(path):
            return _fail(f"{label} {path}: no such file")
    from .gui.app import run_gui

    return run_gui(checkpoint=args.checkpoint, dataset=args.dataset, session_path=args.session,
                   screenshot=args.screenshot, sample=args.sample, corruptions=tuple(args.corrupt), step=args.step)


@command("demo")
def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .diagnostics.solver_bench import MAP_DESCRIPTION, fusion_map
    from .core.solvers import solve

    print(f"deqstudio {__version__} · torch {torch.__version__} · numpy {np.__version__}")
    print(f"CUDA available: {torch.cuda.is_available()} · CPU threads: {torch.get_num_threads()}")
    print(f"map: {MAP_DESCRIPTION}, d=128, one sample")
    f, z0, _ = fusion_map(128, 1)
    try:
        _, trace = solve(f, z0, solver=args.solver, tol=1e-4)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = trace.block_names
    print(f"\n{'step':>4}  {'rel residual':>12}  " + "  ".join(f"{n:>8}" for n in names))
    for k in range(int(trace.nstep[0])):
        blocks = "  ".join(f"{v:8.1e}" for v in trace.block_rel[0, k])
        print(f"{k + 1:>4}  {trace.rel[0, k]:12.3e}  {blocks}")
    state = "converged" if trace.converged[0] else f"not converged ({trace.reason[0]})"
    print(f"\n{args.solver}: {state} in {int(trace.nstep[0])} evaluations, {trace.wall_time_s * 1e3:.1f} ms")
    return 0


@command("bench")
def _bench(args: argparse.Namespace) -> int:
    import torch

    from .diagnostics.solver_bench import MAP_DESCRIPTION, TORCHDEQ_HINT, bench_solvers, format_table

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda asked for, but no CUDA device is available", file=sys.stderr)
        return 2
    dims, repeats = ((128,), 5) if args.quick else ((128, 512), max(1, args.repeats))
    threads = torch.get_num_threads()  # what the solver rows run with, read before anything changes it
    progress = None if args.json else (lambda msg: print(f"  measuring {msg} ...", file=sys.stderr))
    rows, have_torchdeq = [], False
    if not args.gui_only:
        rows, have_torchdeq = bench_solvers(dims=dims, repeats=repeats, device=args.device, progress=progress)
    gui = None
    if not args.no_gui:
        from .gui.bench import bench_gui

        if progress:
            progress("the studio (window shown, 100 slider moves, playback)")
        gui = bench_gui(moves=20 if args.quick else 100)
        if "error" in gui:
            return _fail(f"the studio could not be measured: {gui['error']}")
    report = {
        "deqstudio": __version__,
        "torch": torch.__version__,
        "device": args.device,
        "threads": threads,
        "map": MAP_DESCRIPTION,
        "tol": 1e-4,
        "stop_mode": "rel",
        "repeats": repeats,
        "torchdeq": have_torchdeq,
        "solver": [r.to_dict() for r in rows],
    }
    if gui is not None:
        report["gui"] = gui
    if not have_torchdeq:
        report["torchdeq_hint"] = TORCHDEQ_HINT
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if rows:
        print(f"map: {MAP_DESCRIPTION}; tol 1e-4 (rel); medians over {repeats} repeats; {report['threads']} threads")
        print(format_table(rows))
        print("ovh = ms / (evaluations × one f call); speedup = torchdeq ms / ours, same map, tolerance and inputs")
        if not have_torchdeq:
            print(TORCHDEQ_HINT)
    if gui is not None:
        print(f"studio ({gui['platform']}, {gui['device']}): slider→plot p50 {gui['slider_to_plot_ms_p50']:.1f} ms, "
              f"p95 {gui['slider_to_plot_ms_p95']:.1f} ms over {gui['slider_moves']} moves; playback "
              f"{gui['playback_fps']:.0f} frames/s; window shown {gui['window_shown_s']:.2f} s after process start")
    return 0


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _progress_line(total: int):
    def show(record) -> None:
        done = record.epoch + 1
        bar = "#" * int(20 * done / total)
        print(f"\r[{bar:<20}] epoch {done}/{total} · loss {record.loss:.3f} · train {record.train_accuracy:.3f}"
              f" · val {record.val_accuracy:.3f} · {record.phase} · {record.seconds:.1f}s", end="", file=sys.stderr, flush=True)

    return show


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


@command("train")
def _train(args: argparse.Namespace) -> int:
    import torch

    from .core import udml
    from .io.dataset import DatasetError, read_dataset
    from .io.training_run import TrainRequest, train_and_save

    try:
        threads = torch.get_num_threads() if args.threads is None else args.threads
        req = TrainRequest(
            modalities=tuple(m.strip() for m in args.modalities.split(",") if m.strip()) if args.modalities else None,
            fusion=args.fusion, epochs=args.epochs, seed=args.seed, hidden=args.hidden, device=args.device,
            ablation=args.ablation, jac_weight=args.jac_weight, threads=threads, noise_augment=args.noise_augment,
            udml_weights=args.udml_weights, noise_loss=not args.no_noise_loss,
        )
        if req.fusion == "deq-udml":
            udml.check_epochs(req.epochs)  # before the dataset is read
        ds = read_dataset(args.dataset)
        metrics = train_and_save(ds, req, args.out, progress=None if args.quiet else _progress_line(args.epochs),
                                 command=_train_command(args, threads))
    except (DatasetError, ValueError, OSError) as exc:
        if not args.quiet:
            print(file=sys.stderr)
        return _fail(str(exc))
    if not args.quiet:
        print(file=sys.stderr)
    print(f"saved {args.out}")
    for key in ("test_accuracy", "test_nll", "val_accuracy", "best_epoch", "epochs_run", "train_seconds",
                "test_mean_steps", "test_converged_fraction"):
        if key in metrics:
            value = metrics[key]
            print(f"  {key:<24} {value:.4f}" if isinstance(value, float) else f"  {key:<24} {value}")
    return 0


@command("inspect")
def _inspect(args: argparse.Namespace) -> int:
    from .io.inspect import InspectError, describe, format_description

    try:
        info = describe(args.path)
    except InspectError as exc:
        return _fail(str(exc))
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    return 0


def _device_ok(device: str) -> str | None:
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        return f"unknown device {device!r}; expected cpu or cuda"
    return None


@command("solve")
def _solve(args: argparse.Namespace) -> int:
    from .session import headless
    from .session.traces import result_to_json

    if (problem := _device_ok(args.device)) is not None:
        return _fail(problem)
    try:
        loaded = headless.load(args.checkpoint, args.dataset, device=args.device)
        choice = headless.solver_choice(args.solver, loaded.engine.device, args.max_iter, args.tol)
        result = headless.solve(loaded, args.sample, args.corrupt, choice)
    except headless.HeadlessError as exc:
        return _fail(str(exc))
    data = result_to_json(result)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    run = result.corrupted
    print(f"sample {data['sample']} · true {data['label']} · predicted {data['prediction']} "
          f"(p = {run.final_probabilities[run.prediction]:.3f}) · {result.fusion} on {result.device}")
    print(f"corruptions: {', '.join(data['corruptions']) or 'none'}")
    if run.nstep:
        state = "converged" if run.converged else f"NOT converged ({run.reason})"
        print(f"{result.request.solver.solver}: {run.nstep} steps, {state}, final relative residual {run.final_rel:.2e}")
        names = result.block_names
        print(f"\n{'step':>4}  {'rel':>9}  " + "  ".join(f"{n:>9}" for n in names) + "  prediction")
        for k in range(run.nstep):
            p = run.probabilities[k]
            blocks = "  ".join(f"{v:9.2e}" for v in run.block_rel[k])
            print(f"{k + 1:>4}  {run.rel[k]:9.2e}  {blocks}  {result.class_names[int(p.argmax())]} ({p.max():.2f})")
    udml = data["udml"]
    if udml["weights"] is not None:
        def num(table, m, spec=".3g"):
            value = (table or {}).get(m)
            return "–" if value is None else format(value, spec)

        print("\nUDML  " + "  ".join(f"{m}: σ̂ {num(udml['noise'], m)}, α {num(udml['dependency'], m)}, "
                                    f"w {num(udml['weights'], m, '.3f')}" for m in result.modality_names))
    if result.notice:
        print(f"note: {result.notice}", file=sys.stderr)
    return 0


@command("sweep")
def _sweep(args: argparse.Namespace) -> int:
    from .session import headless

    if (problem := _device_ok(args.device)) is not None:
        return _fail(problem)
    if args.out and not args.out.lower().endswith((".csv", ".h5", ".hdf5")):
        return _fail(f"--out {args.out}: use a .csv or .h5 file name")
    progress = None if args.json else _fraction_line("sweep")
    try:
        loaded = headless.load(args.checkpoint, args.dataset, device=args.device)
        if loaded.engine.notice:
            print(f"note: {loaded.engine.notice}", file=sys.stderr)
        swept = headless.sweep(loaded, args.modality, args.kind, args.split, progress=progress)
        if args.out:
            from .io import atomic
            from .session.provenance import provenance

            (swept.to_csv if args.out.lower().endswith(".csv") else swept.to_hdf5)(args.out)
            record = provenance(loaded.checkpoint, loaded.dataset, None, what="sweep", device=loaded.engine.device)
            record.update(settings={"split": swept.split, "modality": args.modality or "all",
                                    "kind": args.kind or "gaussian", "levels": [float(v) for v in swept.levels]},
                          exported=os.path.basename(args.out))
            atomic.write_text(args.out + ".provenance.json", json.dumps(record, indent=2) + "\n")
    except (headless.HeadlessError, OSError) as exc:
        return _fail(str(exc))
    finally:
        if progress:
            print(file=sys.stderr)
    ck, ds = loaded.checkpoint, loaded.dataset
    report = {"checkpoint": str(ck.path), "dataset": ds.name, "split": swept.split, "samples": swept.samples,
              "levels": [float(v) for v in swept.levels], "seconds": round(swept.seconds, 3),
              "complete": swept.complete, "modalities": swept.to_json()}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{ck.path.name} on {ds.name}, {swept.split} split ({swept.samples} samples), {swept.seconds:.1f} s")
    levels = "  ".join(f"{v:>5g}" for v in swept.levels)
    print(f"{'curve':<18} {'':>9}  {levels}    AUC   UDML ρ   PE ρ")
    for name, entry in report["modalities"].items():
        acc = "  ".join(f"{v:5.3f}" if v is not None else "    –" for v in entry["accuracy"])
        rho = lambda v: f"{v:6.2f}" if v is not None else "     –"  # noqa: E731
        print(f"{name:<18} {'accuracy':>9}  {acc}  {entry['auc']:.3f}  {rho(entry['noise_spearman'])}  {rho(entry['pe_spearman'])}")
        if any(v is not None for v in entry["noise_estimate"]):
            est = "  ".join(f"{v:5.2f}" if v is not None else "    –" for v in entry["noise_estimate"])
            print(f"{'':<18} {'σ̂':>9}  {est}")
    if args.out:
        print(f"saved {args.out}")
    return 0


@command("report")
def _report(args: argparse.Namespace) -> int:
    from .session import headless

    if (problem := _device_ok(args.device)) is not None:
        return _fail(problem)
    from .gui.export import ExportError
    from .gui.headless_report import build_report

    try:
        choice = headless.solver_choice(args.solver, args.device, args.max_iter, args.tol)
        folder, summary = build_report(args.out, args.checkpoint, args.dataset, args.sample, args.corrupt, choice,
                                       device=args.device, sweep=args.sweep,
                                       progress=_fraction_line("sweep") if args.sweep else None)
    except (headless.HeadlessError, ExportError) as exc:
        if args.sweep:
            print(file=sys.stderr)
        return _fail(str(exc))
    if args.sweep:
        print(file=sys.stderr)
    if summary["notice"]:
        print(f"note: {summary['notice']}", file=sys.stderr)
    print(f"saved {folder}/report.html ({len(summary['figures'])} figures, each as PNG, SVG, PDF and CSV)")
    return 0


def _fraction_line(what: str):
    def show(fraction: float) -> None:
        bar = "#" * int(20 * fraction)
        print(f"\r{what} [{bar:<20}] {100 * fraction:3.0f}%", end="", file=sys.stderr, flush=True)

    return show
