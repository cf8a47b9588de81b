#!/usr/bin/env python
"""Train and measure the bundled models and the paper checks (5 seeds each), resumably.

    .venv/bin/python scripts/train_bundled.py all                # train, evaluate, report: everything below
    .venv/bin/python scripts/train_bundled.py train [--only NAME,...] [--jobs 2] [--seeds 0,1,2,3,4]
    .venv/bin/python scripts/train_bundled.py evaluate [--jobs 2]   # robustness sweeps of the trained runs
    .venv/bin/python scripts/train_bundled.py report             # models/README.md, models/*.pt, model cards
    .venv/bin/python scripts/train_bundled.py verify NAME        # re-run a card's command, compare the weights
    .venv/bin/python scripts/train_bundled.py plan               # what is left to do, and the time it took so far

Every run goes through the command line, one subprocess each, at low priority (``nice -n 19``), on one
thread (``--threads 1``), at most ``--jobs`` at once; it is stored in build/runs/<name>-s<seed>.pt (ignored
by git) with its log beside it. Evaluations are ``deqstudio sweep --json`` outputs stored as
build/runs/<name>-s<seed>.<kind>.json. A rerun skips every run and evaluation whose file exists, so an
interrupted pass resumes where it stopped. ``report`` picks, per bundled model, the seed with the best
validation accuracy, copies it to models/<name>.pt and writes its card.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS_DIR = ROOT / "build" / "runs"
UCI = Path("resources/datasets/uci_mfeat.h5")
BREAST = Path("resources/datasets/breast_cancer.h5")
EPOCHS = 40
HIDDEN = 64
SEEDS = (0, 1, 2, 3, 4)
THREADS = 1


@dataclass(frozen=True)
class Run:
    """One trained configuration (5 seeds): how to train it and where it shows in the report."""

    name: str
    benchmark: str  # key of BENCHMARKS, or "single" for the one-view models
    data: Path
    views: str
    fusion: str
    label: str
    ablation: str = "full"
    flags: tuple[str, ...] = ()
    bundled: bool = False
    group: str = "ablation"  # ablation | baseline | isolation | single

    @property
    def is_deq(self) -> bool:
        return self.fusion in ("deq", "deq-udml")

    @property
    def cost(self) -> int:
        """Rough order of its training time, for scheduling the cheap runs first."""
        if self.fusion == "deq-udml":
            return 3
        if self.is_deq:
            return 1 if self.ablation == "no-deq" else 2
        return 0


# A benchmark: its runs are "<prefix><suffix>", on these views of the dataset
BENCHMARKS = {
    "pfz": {"prefix": "uci_", "data": UCI, "views": "pix,fou,zer",
            "title": "UCI Multiple Features, pix + fou + zer (the studio's demo)"},
    "fzm": {"prefix": "uci_fzm_", "data": UCI, "views": "fou,zer,mor",
            "title": "UCI Multiple Features, fou + zer + mor (fusion headroom)"},
}

# suffix, fusion, ablation, flags, group, label
ROWS = (
    ("weighted_sum", "weighted-sum", "full", (), "ablation", "weighted sum"),
    ("deq_no_deq", "deq", "no-deq", (), "ablation", "f_θ + f_fuse without DEQ (one application)"),
    ("deq_no_gate", "deq", "no-gate", (), "ablation", "DEQ without the gate"),
    ("deq_no_ftheta", "deq", "no-ftheta", (), "ablation", "DEQ without f_θ"),
    ("deq", "deq", "full", (), "ablation", "full DEQ fusion (deq)"),
    ("deq_udml", "deq-udml", "full", (), "ablation", "DEQ fusion + UDML (deq-udml)"),
    ("concat", "concat", "full", (), "baseline", "concatenation"),
    ("sum", "sum", "full", (), "baseline", "sum"),
    ("late", "late", "full", (), "baseline", "late fusion (mean of unimodal heads)"),
    ("deq_unrolled", "deq", "unrolled", (), "baseline", "weight-tied unrolled (10 steps)"),
    ("weighted_sum_noise", "weighted-sum", "full", ("--noise-augment",), "isolation",
     "weighted sum + UDML's noise injection"),
    ("deq_noise", "deq", "full", ("--noise-augment",), "isolation", "deq + UDML's noise injection"),
    ("deq_udml_w1", "deq-udml", "full", ("--udml-weights", "fixed"), "isolation",
     "deq-udml with w ≡ 1 (noise, KL, auxiliary and noise losses kept)"),
    ("deq_udml_no_noise_loss", "deq-udml", "full", ("--no-noise-loss",), "isolation",
     "deq-udml without the noise loss"),
)
BUNDLED = {"uci_deq_udml", "uci_deq", "uci_weighted_sum", "uci_concat", "uci_sum", "uci_late",
           "uci_fzm_deq_udml", "uci_fzm_deq", "breast_cancer_deq_udml"}
SINGLE_VIEWS = ("pix", "fou", "zer", "mor")


def _table() -> dict[str, Run]:
    runs = {}
    for bench, spec in BENCHMARKS.items():
        for suffix, fusion, ablation, flags, group, label in ROWS:
            name = spec["prefix"] + suffix
            runs[name] = Run(name, bench, spec["data"], spec["views"], fusion, label, ablation, flags,
                             name in BUNDLED, group)
    for view in SINGLE_VIEWS:  # one modality, no fusion to speak of: encoder, projection, head
        name = f"uci_only_{view}"
        runs[name] = Run(name, "single", UCI, view, "sum", f"{view} alone (one modality, `--fusion sum`)",
                         group="single")
    runs["breast_cancer_deq_udml"] = Run("breast_cancer_deq_udml", "breast", BREAST, "mean,se,worst", "deq-udml",
                                         "breast cancer, deq-udml", bundled=True, group="bundled")
    return runs


RUNS = _table()


def run_path(name: str, seed: int) -> Path:
    return RUNS_DIR / f"{name}-s{seed}.pt"


def sweep_path(name: str, seed: int, kind: str) -> Path:
    return RUNS_DIR / f"{name}-s{seed}.{kind}.json"


def train_argv(run: Run, seed: int, out: str) -> list[str]:
    """The train command's arguments after ``deqstudio`` (every option spelled out)."""
    argv = ["train", "--dataset", str(run.data), "--out", out, "--modalities", run.views, "--fusion", run.fusion,
            "--epochs", str(EPOCHS), "--seed", str(seed), "--hidden", str(HIDDEN), "--device", "cpu",
            "--threads", str(THREADS)]
    if run.ablation != "full":
        argv += ["--ablation", run.ablation]
    return argv + list(run.flags)


def sweeps_for(run: Run) -> tuple[str, ...]:
    """Which sweeps the report reads for this run: Gaussian noise for every fused model; deq-udml also mask."""
    if run.group == "single":
        return ()
    return ("gaussian", "mask") if run.fusion == "deq-udml" and not run.flags else ("gaussian",)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["OMP_NUM_THREADS"] = str(THREADS)  # the sweeps' thread count (training sets its own, --threads)
    return env


def _cli(argv: list[str]) -> list[str]:
    return ["nice", "-n", "19", sys.executable, "-m", "deqstudio", *argv]


@dataclass
class Job:
    what: str
    argv: list[str]
    done: Path  # exists once the job has finished well
    log: Path
    stdout_to: Path | None = None  # a --json command: its stdout, written only when it succeeds


def _run_jobs(jobs: list[Job], parallel: int, poll_s: float = 5.0) -> int:
    """Run the jobs, ``parallel`` at a time, polling (no busy wait); returns the number that failed."""
    pending = [j for j in jobs if not j.done.exists()]
    total, failed, started = len(pending), 0, time.time()
    running: list[tuple[Job, subprocess.Popen, float, list]] = []
    print(f"{total} to run ({len(jobs) - total} already done), {parallel} at a time", flush=True)
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            job.log.parent.mkdir(parents=True, exist_ok=True)
            log = open(job.log, "w")  # noqa: SIM115 — closed when the job ends, below
            # a --json command prints into a part file, renamed to its final name once it has succeeded
            out = open(job.stdout_to.with_suffix(".part"), "w") if job.stdout_to else log  # noqa: SIM115
            proc = subprocess.Popen(_cli(job.argv), cwd=ROOT, env=_env(), stdout=out, stderr=log, text=True)
            running.append((job, proc, time.time(), [log, out]))
        time.sleep(poll_s)
        still = []
        for job, proc, t0, files in running:
            if proc.poll() is None:
                still.append((job, proc, t0, files))
                continue
            for fh in files:
                fh.close()
            seconds = time.time() - t0
            if proc.returncode == 0 and job.stdout_to is not None:
                part = job.stdout_to.with_suffix(".part")
                try:
                    json.loads(part.read_text())
                    part.replace(job.stdout_to)
                except ValueError:
                    pass  # not one JSON object: counted as failed below
            ok = proc.returncode == 0 and job.done.exists()
            failed += not ok
            left = len(pending) + len(still)
            print(f"{'done' if ok else 'FAILED'} {job.what} in {seconds:.0f} s ({left} left, "
                  f"{(time.time() - started) / 60:.0f} min so far){'' if ok else f'; see {job.log}'}", flush=True)
        running = still
    return failed


def _selected(only: str | None) -> list[Run]:
    if not only:
        return list(RUNS.values())
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise SystemExit(f"error: unknown run {unknown[0]!r}; known: {', '.join(RUNS)}")
    return [RUNS[n] for n in names]


def train(args) -> int:
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = sorted(_selected(args.only), key=lambda r: r.cost)  # the cheap runs first, then the DEQ rows
    jobs = []
    for run in runs:
        for seed in seeds:
            out = run_path(run.name, seed)
            jobs.append(Job(f"train {run.name} seed {seed}", train_argv(run, seed, str(out.relative_to(ROOT)))
                            + ["--quiet"], out, out.with_suffix(".log")))
    return _run_jobs(jobs, args.jobs)


def evaluate(args) -> int:
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = []
    for run in sorted(_selected(args.only), key=lambda r: r.cost):
        for seed in seeds:
            ck = run_path(run.name, seed)
            if not ck.exists():
                continue
            for kind in sweeps_for(run):
                out = sweep_path(run.name, seed, kind)
                jobs.append(Job(f"sweep {run.name} seed {seed} ({kind})",
                                ["sweep", "--checkpoint", str(ck.relative_to(ROOT)), "--dataset", str(run.data),
                                 "--kind", kind, "--json"], out, out.with_suffix(".log"), stdout_to=out))
    return _run_jobs(jobs, args.jobs)


def verify(args) -> int:
    """Run the bundled card's command again (into build/verify/) and compare the weights and test accuracy."""
    import torch

    name = args.name
    if name not in RUNS or not RUNS[name].bundled:
        raise SystemExit(f"error: {name!r} is not a bundled model")
    bundled = ROOT / "models" / f"{name}.pt"
    payload = torch.load(bundled, map_location="cpu", weights_only=True)
    card = (ROOT / "models" / f"{name}.md").read_text()
    command = next(line for line in card.splitlines() if line.startswith("deqstudio train "))
    argv = shlex.split(command)[1:]
    out = ROOT / "build" / "verify" / f"{name}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv[argv.index("--out") + 1] = str(out.relative_to(ROOT))
    print(f"running: deqstudio {' '.join(shlex.quote(a) for a in argv)}", flush=True)
    t0 = time.time()
    subprocess.run(_cli(argv + ["--quiet"]), cwd=ROOT, env=_env(), check=True)
    again = torch.load(out, map_location="cpu", weights_only=True)
    a, b = payload["state_dict"], again["state_dict"]
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    acc_a, acc_b = payload["metrics"]["test_accuracy"], again["metrics"]["test_accuracy"]
    print(f"{name}: retrained in {time.time() - t0:.0f} s; weights {'identical' if same else 'DIFFER'}; "
          f"test accuracy bundled {acc_a:.4f}, retrained {acc_b:.4f}")
    return 0 if same and acc_a == acc_b else 1


def plan(args) -> int:
    """What is done and what is left, with the CPU time the finished runs took."""
    import torch

    todo_train = todo_sweep = 0
    seconds = {}
    for run in RUNS.values():
        for seed in SEEDS:
            path = run_path(run.name, seed)
            if not path.exists():
                todo_train += 1
                todo_sweep += len(sweeps_for(run))
                continue
            metrics = torch.load(path, map_location="cpu", weights_only=True)["metrics"]
            seconds.setdefault(run.name, []).append(metrics["train_seconds"])
            todo_sweep += sum(not sweep_path(run.name, seed, k).exists() for k in sweeps_for(run))
    for name, secs in seconds.items():
        print(f"{name:<32} {len(secs)} seeds, {sum(secs) / len(secs):6.0f} s each")
    total = sum(sum(s) for s in seconds.values())
    print(f"trained: {total / 3600:.2f} CPU hours; left: {todo_train} trainings, {todo_sweep} sweeps")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("train", "evaluate", "all"):
        p = sub.add_parser(name)
        p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
        p.add_argument("--only", help="comma-separated run names (default: every run)")
        p.add_argument("--jobs", type=int, default=2, help="runs at once (default 2), each on one thread")
    sub.add_parser("report")
    sub.add_parser("plan")
    v = sub.add_parser("verify")
    v.add_argument("name")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.cmd in ("train", "all"):
        if train(args):
            raise SystemExit("some trainings failed; their logs are in build/runs/")
    if args.cmd in ("evaluate", "all"):
        if evaluate(args):
            raise SystemExit("some sweeps failed; their logs are in build/runs/")
    if args.cmd in ("report", "all"):
        from model_report import report  # scripts/model_report.py

        report(ROOT, RUNS_DIR, RUNS, BENCHMARKS, SEEDS)
    if args.cmd == "verify":
        raise SystemExit(verify(args))
    if args.cmd == "plan":
        raise SystemExit(plan(args))


if __name__ == "__main__":
    main()
