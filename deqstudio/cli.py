"""Command line: ``deqstudio [command] ...``. Heavy imports (torch, Qt) happen inside each command."""

from __future__ import annotations

import argparse
import json
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = args.command or "demo"
    if name == "demo" and not hasattr(args, "solver"):
        args.solver = "anderson"
    try:
        return COMMANDS[name](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


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
    progress = None if args.json else (lambda msg: print(f"  measuring {msg} ...", file=sys.stderr))
    rows, have_torchdeq = bench_solvers(dims=dims, repeats=repeats, device=args.device, progress=progress)
    report = {
        "deqstudio": __version__,
        "torch": torch.__version__,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "map": MAP_DESCRIPTION,
        "tol": 1e-4,
        "stop_mode": "rel",
        "repeats": repeats,
        "torchdeq": have_torchdeq,
        "solver": [r.to_dict() for r in rows],
    }
    if not have_torchdeq:
        report["torchdeq_hint"] = TORCHDEQ_HINT
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"map: {MAP_DESCRIPTION}; tol 1e-4 (rel); medians over {repeats} repeats; {report['threads']} threads")
    print(format_table(rows))
    print("ovh = ms / (evaluations × one f call); speedup = torchdeq ms / ours, same map, tolerance and inputs")
    if not have_torchdeq:
        print(TORCHDEQ_HINT)
    return 0
