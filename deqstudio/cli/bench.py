"""``deqstudio bench`` (our solvers against torchdeq, the studio's responsiveness) and ``deqstudio demo``."""

from __future__ import annotations

import argparse
import json
import sys

from .. import __version__
from ..core.solvers.registry import DEFAULT_SOLVER, SOLVER_NAMES
from .common import fail, missing_gui_extra


def add_parsers(sub) -> None:
    demo = sub.add_parser("demo", help="print what is installed and solve the demo fusion map step by step")
    demo.add_argument("--solver", default=DEFAULT_SOLVER, choices=SOLVER_NAMES, help=", ".join(SOLVER_NAMES))
    demo.set_defaults(run=run_demo)

    bench = sub.add_parser("bench", help="benchmark the solvers against torchdeq (ratios, medians over repeats)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--repeats", type=int, default=15, help="timed repeats per case (default 15)")
    bench.add_argument("--quick", action="store_true", help="d=128 only, 5 repeats")
    bench.add_argument("--device", default="cpu", help="cpu or cuda")
    bench.add_argument("--no-gui", action="store_true", help="skip the studio measurements (the gui object)")
    bench.add_argument("--gui-only", action="store_true", help="only the studio measurements")
    bench.add_argument("--checkpoint", help="the studio measurements on this model (default: the bundled demo)")
    bench.add_argument("--dataset", help="the studio measurements on this dataset (default: the bundled UCI one)")
    bench.add_argument("--scale", action="store_true",
                       help="only the scale measurements: inspect, the sweep old vs new, the window, on an "
                            "MM-IMDB-sized dataset (made in --scale-dir when missing)")
    bench.add_argument("--scale-dir", default="build/scale", help="where the scale files are (default build/scale)")
    bench.add_argument("--scale-samples", type=int, default=0,
                       help="time the sweeps on the first N test samples (default 0: the whole test split)")
    bench.set_defaults(run=run_bench)


def run_demo(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..core.solvers import solve
    from ..diagnostics.solver_bench import MAP_DESCRIPTION, fusion_map

    print(f"deqstudio {__version__} · torch {torch.__version__} · numpy {np.__version__}")
    print(f"CUDA available: {torch.cuda.is_available()} · CPU threads: {torch.get_num_threads()}")
    print(f"map: {MAP_DESCRIPTION}, d=128, one sample")
    f, z0, _ = fusion_map(128, 1)
    try:
        _, trace = solve(f, z0, solver=args.solver, tol=1e-4)
    except ValueError as exc:
        return fail(str(exc))
    names = trace.block_names
    print(f"\n{'step':>4}  {'rel residual':>12}  " + "  ".join(f"{n:>8}" for n in names))
    for k in range(int(trace.nstep[0])):
        blocks = "  ".join(f"{v:8.1e}" for v in trace.block_rel[0, k])
        print(f"{k + 1:>4}  {trace.rel[0, k]:12.3e}  {blocks}")
    state = "converged" if trace.converged[0] else f"not converged ({trace.reason[0]})"
    print(f"\n{args.solver}: {state} in {int(trace.nstep[0])} evaluations, {trace.wall_time_s * 1e3:.1f} ms")
    return 0


def _bench_equilibrium(device: str, repeats: int) -> dict:
    """``diagnostics.equilibrium.bench_equilibrium`` on the bundled default model and dataset."""
    from ..diagnostics.equilibrium import bench_equilibrium
    from ..io.checkpoint import load_checkpoint
    from ..io.dataset import read_dataset
    from ..paths import default_checkpoint, default_dataset

    adapter = load_checkpoint(default_checkpoint()).adapter.to(device)
    return bench_equilibrium(adapter, read_dataset(default_dataset()), repeats=repeats)


def run_scale_bench(args: argparse.Namespace) -> int:
    """``bench --scale``: see ``deqstudio.workflows.scale_bench``."""
    from ..errors import DeqStudioError
    from ..workflows.scale_bench import bench_scale

    if args.scale_samples < 0:
        return fail(f"--scale-samples must be 0 (the whole test split) or more, got {args.scale_samples}")
    progress = None if args.json else (lambda msg: print(f"  {msg} ...", file=sys.stderr))
    try:
        report = bench_scale(args.scale_dir, samples=args.scale_samples, gui=not args.no_gui, progress=progress)
    except (DeqStudioError, OSError, ValueError) as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    ins, sw, win = report["inspect"], report["sweep"], report["window"]
    print(f"scale files: {report['dataset']}, {report['model']}"
          + (f" (made: {', '.join(f'{k} {v} s' for k, v in report['made'].items())})" if report["made"] else ""))
    print("inspect: " + (f"{ins['seconds']:.2f} s, peak {ins['peak_rss_mb']:.0f} MB resident" if "seconds" in ins
                         else f"failed: {ins['error']}"))
    print(f"sweep on the first {sw['samples']} test samples ({sw['cells']} cells, {sw['threads']} threads): streaming "
          f"{sw['new_samples_per_second']:.1f} samples/s (equilibrium statistics on {sw['new_equilibrium_samples']}), "
          f"old per-cell {sw['old_samples_per_second']:.1f} samples/s without equilibrium statistics: "
          f"{sw['new_over_old']:.2f}×; old with them {sw['old_default_samples_per_second']:.1f} samples/s "
          f"(on {sw['old_default_samples']}): {sw['new_over_old_default']:.1f}×; tables agree: {sw['tables_agree']}")
    if "skipped" in win or "error" in win:
        print(f"window: {win.get('skipped') or 'failed: ' + win['error']}")
    else:
        print(f"window: first solve plotted {win['first_plot_s']:.2f} s after process start, peak "
              f"{win['peak_rss_mb']:.0f} MB resident")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import torch

    if args.scale:
        if args.gui_only or args.checkpoint or args.dataset:
            return fail("--scale measures its own files: drop --gui-only, --checkpoint and --dataset")
        return run_scale_bench(args)

    from ..diagnostics.solver_bench import MAP_DESCRIPTION, TORCHDEQ_HINT, bench_solvers, format_table

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        return fail("--device cuda asked for, but no CUDA device is available")
    if not args.no_gui and (problem := missing_gui_extra("bench")) is not None:
        return fail(f"{problem}; or measure without the studio: deqstudio bench --no-gui")
    if args.no_gui and (args.checkpoint or args.dataset):
        return fail("--checkpoint and --dataset choose what the studio measurements open; drop --no-gui")
    for label, path in (("checkpoint", args.checkpoint), ("dataset", args.dataset)):
        if path is not None:
            from ..io.guard import regular_file

            try:
                regular_file(path)
            except ValueError as exc:
                return fail(f"{label} {path}: {exc}")
    dims, repeats = ((128,), 5) if args.quick else ((128, 512), max(1, args.repeats))
    threads = torch.get_num_threads()  # what the solver rows run with, read before anything changes it
    progress = None if args.json else (lambda msg: print(f"  measuring {msg} ...", file=sys.stderr))
    rows, have_torchdeq, equilibrium = [], False, None
    if not args.gui_only:
        rows, have_torchdeq = bench_solvers(dims=dims, repeats=repeats, device=args.device, progress=progress)
        if progress:
            progress("the equilibrium analysis against one solve (bundled default model)")
        equilibrium = _bench_equilibrium(args.device, 3 if args.quick else 7)
    gui = None
    if not args.no_gui:
        from ..gui.bench import bench_gui

        if progress:
            progress("the studio (window shown, 100 slider moves, playback)")
        gui = bench_gui(moves=20 if args.quick else 100, checkpoint=args.checkpoint, dataset=args.dataset)
        if "error" in gui:
            return fail(f"the studio could not be measured: {gui['error']}")
    report = {
        "deqstudio": __version__,
        "torch": torch.__version__,
        "device": args.device,
        "threads": threads,
        "map": MAP_DESCRIPTION,
        "tol": 1e-4,
        "stop_mode": "rel",
        "repeats": repeats,
        "torchdeq": have_torchdeq if rows else None,  # None: not looked for (--gui-only)
        "solver": [r.to_dict() for r in rows],
    }
    if equilibrium is not None:
        report["equilibrium_over_solve"] = equilibrium["equilibrium_over_solve"]
        report["equilibrium"] = equilibrium
    if gui is not None:
        report["gui"] = gui
    if rows and not have_torchdeq:  # only a solver comparison needs torchdeq
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
    if equilibrium is not None:
        print(f"equilibrium analysis (ρ, coupling, sensitivity, {equilibrium['starts']} starts, linear response) of one "
              f"corrupted sample: {equilibrium['equilibrium_ms_median']:.0f} ms, "
              f"{equilibrium['equilibrium_over_solve']:.1f} × one solve ({equilibrium['solve_ms_median']:.0f} ms)")
    if gui is not None:
        print(f"studio ({gui['platform']}, {gui['device']}): slider→plot p50 {gui['slider_to_plot_ms_p50']:.1f} ms, "
              f"p95 {gui['slider_to_plot_ms_p95']:.1f} ms over {gui['slider_moves']} moves; playback "
              f"{gui['playback_fps']:.0f} frames/s; window shown {gui['window_shown_s']:.2f} s and first solve "
              f"plotted {gui['first_plot_s']:.2f} s after process start; samples table filled in "
              f"{gui['table_fill_s']:.1f} s")
    return 0


