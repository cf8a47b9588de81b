"""``deqstudio solve``, ``sweep`` and ``report``: the studio's diagnostics without a window."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import DeqStudioError, printable
from .common import add_corrupt_and_solver, add_files, device_problem, fail, fraction_progress, missing_gui_extra


def add_parsers(sub) -> None:
    solve = sub.add_parser("solve", help="solve one sample (clean and corrupted) and print the trace")
    add_files(solve)
    solve.add_argument("--sample", type=int, help="dataset index (default: the first test sample)")
    add_corrupt_and_solver(solve)
    solve.add_argument("--json", action="store_true", help="print one JSON object (keys in the README)")
    solve.set_defaults(run=run_solve)

    sweep = sub.add_parser("sweep", help="robustness curve and noise calibration over a split")
    add_files(sweep, device="auto")  # many samples in large batches: the GPU when there is one
    sweep.add_argument("--modality", help="one modality (default: every modality)")
    sweep.add_argument("--kind", help="corruption kind (default gaussian; 'all' for every kind that applies)")
    sweep.add_argument("--split", default="test", help="train, val or test (default test)")
    sweep.add_argument("--out", help="also write the table: .csv or .h5")
    sweep.add_argument("--chunk-size", type=int, help="samples per chunk, a multiple of --batch-size (default three "
                                                      "batches): what a rerun after a kill may redo")
    sweep.add_argument("--batch-size", type=int, help="samples per model call (default 400)")
    sweep.add_argument("--equilibrium-samples", type=int, default=64,
                       help="the equilibrium statistics on the split's first N samples (default 64; 0: none)")
    sweep.add_argument("--restart", action="store_true", help="start over: ignore what a killed run with the same arguments finished")
    sweep.add_argument("--cluster", metavar="ADDRESS|local[N]",
                       help="run the chunks on a Dask cluster: a scheduler's address (tcp://HOST:8786; the workers "
                            "read the dataset from the same path) or local[N], N single-threaded local worker "
                            "processes (needs the cluster extra)")
    sweep.add_argument("--json", action="store_true", help="print one JSON object (keys in the README)")
    sweep.set_defaults(run=run_sweep)

    report = sub.add_parser("report", help="write a report folder: every plot (PNG, SVG, PDF, CSV), trace, "
                                           "provenance, report.html")
    add_files(report)
    report.add_argument("--out", required=True, help="folder to write (created if missing)")
    report.add_argument("--sample", type=int, help="dataset index (default: the first test sample)")
    add_corrupt_and_solver(report)
    report.add_argument("--sweep", action="store_true", help="add the robustness and calibration sweep")
    report.set_defaults(run=run_report)


def _settings(args, loaded):
    from ..session import headless

    return headless.solver_settings(args.solver, args.max_iter, args.tol, base=loaded.session.solver)


def run_solve(args: argparse.Namespace) -> int:
    from ..session import headless
    from ..session.traces import result_to_json

    if (problem := device_problem(args.device)) is not None:
        return fail(problem)
    try:
        loaded = headless.load(args.checkpoint, args.dataset, device=args.device, allow_plugins=args.allow_plugin)
        result = headless.solve(loaded, args.sample, args.corrupt, _settings(args, loaded))
        equilibrium = headless.equilibrium(loaded, result)
    except DeqStudioError as exc:
        return fail(str(exc))
    data = result_to_json(result, equilibrium)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    _print_solve(result, data)
    _print_equilibrium(result, data)
    return 0


def _print_solve(result, data) -> None:
    import numpy as np

    p = printable
    run = result.corrupted
    print(f"sample {data['sample']} · {p(result.truth_summary())} · predicted {p(result.prediction_summary(run))} "
          f"· {p(result.fusion)} on {result.device}")
    print(f"corruptions: {p(', '.join(data['corruptions'])) or 'none'}"
          + (f" ({p(result.input_note)})" if result.input_note else ""))
    if run.nstep:
        state = "converged" if run.converged else f"NOT converged ({run.reason})"
        print(f"{result.request.solver.solver}: {run.nstep} steps, {state}, final relative residual {run.final_rel:.2e}")
        names = [p(n) for n in result.block_names]
        print(f"\n{'step':>4}  {'rel':>9}  " + "  ".join(f"{n:>9}" for n in names) + "  prediction")
        for k in range(run.nstep):
            prob = run.probabilities[k]
            blocks = "  ".join(f"{v:9.2e}" for v in run.block_rel[k])
            top = (result.names([int(i) for i in np.flatnonzero(prob > 0.5)]) if result.multilabel
                   else f"{result.class_names[int(prob.argmax())]} ({prob.max():.2f})")
            print(f"{k + 1:>4}  {run.rel[k]:9.2e}  {blocks}  {p(top)}")
    udml = data["udml"]
    if udml["weights"] is not None:
        def num(table, m, spec=".3g"):
            value = (table or {}).get(m)
            return "–" if value is None else format(value, spec)

        print("\nUDML  " + "  ".join(f"{p(m)}: σ̂ {num(udml['noise'], m)}, α {num(udml['dependency'], m)}, "
                                    f"w {num(udml['weights'], m, '.3f')}" for m in result.modality_names))
    if result.notice:
        print(f"note: {p(result.notice)}", file=sys.stderr)


def _print_equilibrium(result, data) -> None:
    eq = data.get("equilibrium")
    if not eq:
        return
    p = printable

    def num(v, spec=".3g"):
        return "–" if v is None else format(v, spec)

    clean = data["clean"]["equilibrium"] or {}
    alarm = "  ALARM: ρ ≥ 1, plain iteration cannot converge here" if eq["unstable"] else ""
    print(f"\nequilibrium  ρ(J) {num(eq['spectral_radius'], '.3f')} (clean {num(clean.get('spectral_radius'), '.3f')}), "
          f"observed contraction {num(eq['contraction_observed'], '.3f')}{alarm}")
    print("sensitivity share  " + "  ".join(f"{p(m)} {num(v, '.2f')}" for m, v in eq["sensitivity_share"].items()))
    if eq["predicted_shift"] is not None:
        print("shift, linear → actual  " + "  ".join(
            f"{p(b)} {num(eq['predicted_shift'][b])} → {num(eq['actual_shift'][b])}" for b in eq["predicted_shift"]))
    starts = eq["inits"]
    verdict = {True: "agree: one equilibrium", None: "too few converged to compare",
               False: "DISAGREE: more than one equilibrium"}[starts["agree"]]
    print(f"{starts['count']} starts, {starts['converged']} converged, largest relative distance "
          f"{num(starts['max_distance'], '.2e')}: {verdict}")


def run_sweep(args: argparse.Namespace) -> int:
    from ..session import headless

    if (problem := device_problem(args.device)) is not None:
        return fail(problem)
    if args.out and not args.out.lower().endswith((".csv", ".h5", ".hdf5")):
        return fail(f"--out {args.out}: use a .csv or .h5 file name")
    def close() -> None:
        pass

    try:
        if args.cluster:
            from ..diagnostics.dask_cluster import parse_cluster

            parse_cluster(args.cluster)  # before any file is read
        # on a cluster the workers evaluate; this process only plans and merges, on the CPU
        loaded = headless.load(args.checkpoint, args.dataset, device="cpu" if args.cluster else args.device,
                               allow_plugins=args.allow_plugin)
        if loaded.engine.notice:
            print(f"note: {loaded.engine.notice}", file=sys.stderr)
        split = loaded.dataset.splits.get(args.split)
        progress = None
        if not args.json:
            progress, close = fraction_progress("sweep", samples=len(split) if split is not None else None)
        options = dict(resumable=True, out=args.out, restart=args.restart, chunk_size=args.chunk_size,
                       batch_size=args.batch_size, equilibrium_samples=args.equilibrium_samples,
                       note=lambda text: print(f"note: {printable(text)}", file=sys.stderr))
        if args.cluster:
            from ..paths import default_checkpoint

            swept = headless.cluster_sweep(loaded, args.cluster, args.checkpoint or str(default_checkpoint()),
                                           args.modality, args.kind, args.split, progress=progress,
                                           device=args.device, **options)
        else:
            swept = headless.sweep(loaded, args.modality, args.kind, args.split, progress=progress, **options)
        if args.out:
            from ..session.provenance import provenance

            record = provenance(loaded.checkpoint, loaded.dataset, None, what="sweep", device=loaded.engine.device)
            record.update(settings={"split": swept.split, "modality": args.modality or "all",
                                    "kind": args.kind or "gaussian", "levels": [float(v) for v in swept.levels],
                                    "equilibrium_samples": swept.extra["equilibrium_samples"]},
                          exported=os.path.basename(args.out))
            # the table and its provenance sidecar are one unit: both of this run, or neither
            (swept.to_csv if args.out.lower().endswith(".csv") else swept.to_hdf5)(args.out, sidecar=record)
        store = swept.extra.get("progress_store")
        if store is not None and swept.complete:
            store.remove()  # the results are written: the progress file has done its work
    except (DeqStudioError, OSError) as exc:
        close()
        return fail(str(exc))
    close()
    ck, ds = loaded.checkpoint, loaded.dataset
    report = {"checkpoint": str(ck.path), "dataset": ds.name, "split": swept.split, "samples": swept.samples,
              "device": f"cluster {args.cluster} ({args.device})" if args.cluster else loaded.engine.device,
              "levels": [float(v) for v in swept.levels],
              "seconds": round(swept.seconds, 3), "complete": swept.complete, "metric": swept.metric,
              "samples_per_second": round(swept.extra["samples_per_second"], 2),
              "resumed_chunks": swept.extra["resumed_chunks"], "chunks": swept.extra["chunks"],
              "equilibrium_samples": swept.extra["equilibrium_samples"], "modalities": swept.to_json()}
    note = getattr(loaded.adapter, "input_note", "")
    if note:
        report["input_note"] = note
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_sweep(ck, ds, swept, report)
    if args.out:
        print(f"saved {args.out}")
    return 0


def _print_sweep(ck, ds, swept, report) -> None:
    p = printable
    resumed = f", {report['resumed_chunks']} of {report['chunks']} chunks resumed" if report["resumed_chunks"] else ""
    print(f"{p(ck.path.name)} on {p(ds.name)}, {swept.split} split ({swept.samples} samples), {swept.seconds:.1f} s "
          f"on {report['device']}, {report['samples_per_second']:.1f} samples/s{resumed}")
    levels = "  ".join(f"{v:>5g}" for v in swept.levels)
    print(f"{'curve':<18} {'':>9}  {levels}    AUC   UDML ρ   PE ρ")

    def row(values, fmt, width=5):
        return "  ".join(format(v, fmt) if v is not None else " " * (width - 1) + "–" for v in values)

    def rho(v):
        return f"{v:6.2f}" if v is not None else "     –"

    metric = swept.metric  # "accuracy", or "micro_f1" for a multilabel model
    for name, entry in report["modalities"].items():
        auc = f"{entry['auc']:.3f}" if entry["auc"] is not None else "    –"
        print(f"{p(name):<18} {metric.replace('_', ' '):>9}  {row(entry[metric], '5.3f')}  {auc}  "
              f"{rho(entry['noise_spearman'])}  {rho(entry['pe_spearman'])}")
        if "macro_f1" in entry:
            print(f"{'':<18} {'macro f1':>9}  {row(entry['macro_f1'], '5.3f')}")
        # "–": not applicable (a model without a solver takes no steps) or not reached (cancelled)
        print(f"{'':<18} {'steps':>9}  {row(entry['mean_steps'], '5.1f')}")
        if any(v is not None for v in entry["noise_estimate"]):
            print(f"{'':<18} {'σ̂':>9}  {row(entry['noise_estimate'], '5.2f')}")
        if any(v is not None for v in entry["spectral_radius_mean"]):
            onset = entry["nonlinear_severity"]
            print(f"{'':<18} {'ρ(J) mean':>9}  {row(entry['spectral_radius_mean'], '5.2f')}  "
                  f"ρ ≥ 1: {max(v or 0 for v in entry['unstable_fraction']):.1%} at most")
            print(f"{'':<18} {'act./lin.':>9}  {row(entry['shift_ratio'], '5.2f')}  "
                  f"beyond 2×: {'never' if onset is None else f'from severity {onset:g}'}")


def run_report(args: argparse.Namespace) -> int:
    if (problem := missing_gui_extra("report")) is not None:
        return fail(problem)
    if (problem := device_problem(args.device)) is not None:
        return fail(problem)
    from ..gui.headless_report import build_report
    from ..gui.report import recover_report
    from ..session import headless

    progress, close = fraction_progress("sweep") if args.sweep else (None, lambda: None)
    try:
        recover_report(args.out)  # a report swap a kill interrupted is completed before anything else
        settings = headless.solver_settings(args.solver, args.max_iter, args.tol) if (
            args.solver or args.max_iter or args.tol) else None
        folder, summary = build_report(args.out, args.checkpoint, args.dataset, args.sample, args.corrupt, settings,
                                       device=args.device, sweep=args.sweep, progress=progress,
                                       allow_plugins=args.allow_plugin)
    except DeqStudioError as exc:
        close()
        return fail(str(exc))
    close()
    if summary["notice"]:
        print(f"note: {printable(summary['notice'])}", file=sys.stderr)
    print(f"saved {folder}/report.html ({len(summary['figures'])} figures, each as PNG, SVG, PDF and CSV)")
    return 0
