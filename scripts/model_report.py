"""The bundled models and their evidence: models/<name>.pt, model cards, models/README.md.

Called by ``scripts/train_bundled.py report`` once every run exists in build/runs/ with its sweeps.
Every number written here is measured here, on the test split: accuracies from the checkpoints' stored
metrics, robustness and calibration from the ``deqstudio sweep --json`` outputs beside them, the logistic
regression reference and the convergence curves computed here. This module reads checkpoints and datasets
with torch, h5py and ``deqstudio.core`` only (the layers above core are not part of its contract); the
convergence curves and the logistic references are cached in build/runs/ (JSON), so a rerun only computes
what is missing.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from deqstudio.core import udml
from deqstudio.core.config import ModelConfig
from deqstudio.core.logistic import logistic_regression_accuracy
from deqstudio.core.model import FusionModel
from deqstudio.core.solvers import solve

LEVELS = (0, 1, 2, 3, 4, 5)
TABLE_STEPS = (1, 10, 20, 40, 100)
SPLIT_SEEDS = (0, 1, 2, 3, 4)  # the logistic reference's stratified resplits
# the rows of the robustness-curve tables, by suffix: UDML and what isolates its parts, then the baselines
CURVE_ROWS = ("deq_udml", "deq_udml_w1", "deq_udml_no_noise_loss", "deq_noise", "weighted_sum_noise", "deq",
              "weighted_sum", "concat", "sum", "late")
UDML_ROWS = ("deq_udml", "deq_udml_w1", "deq_udml_no_noise_loss")


def pm(values, digits=4, scale=1.0) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float) * scale
    if v.size == 0 or not np.all(np.isfinite(v)):
        return "—"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{digits}f}"


def sci(v) -> str:
    return "—" if not np.isfinite(v) else f"{v:.2e}"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Dataset:
    """The few things read from a dataset file (DEQ Studio schema), straight from HDF5."""

    def __init__(self, path: Path) -> None:
        with h5py.File(path, "r") as f:
            self.name = str(f.attrs["name"])
            self.labels = f["labels"][()].astype(np.int64)
            self.class_names = [str(c) for c in f["labels"].attrs["class_names"]]
            self.arrays = {k: v[()].reshape(len(self.labels), -1).astype(np.float32) for k, v in f["modalities"].items()}
            self.kinds = {k: str(v.attrs["kind"]) for k, v in f["modalities"].items()}
            self.splits = {k: v[()].astype(np.int64) for k, v in f["splits"].items()}

    def inputs(self, views, split="test") -> list[torch.Tensor]:
        idx = self.splits[split]
        return [torch.from_numpy(self.arrays[v][idx]) for v in views]


class Store:
    """Checkpoints, sweeps and datasets of the runs, each read once."""

    def __init__(self, root: Path, runs_dir: Path, runs: dict, seeds) -> None:
        self.root, self.dir, self.runs, self.seeds = root, runs_dir, runs, tuple(seeds)
        self._payload, self._sweep, self._ds = {}, {}, {}

    def path(self, name, seed) -> Path:
        return self.dir / f"{name}-s{seed}.pt"

    def payload(self, name, seed) -> dict:
        key = (name, seed)
        if key not in self._payload:
            self._payload[key] = torch.load(self.path(name, seed), map_location="cpu", weights_only=True)
        return self._payload[key]

    def model(self, name, seed) -> FusionModel:
        p = self.payload(name, seed)
        model = FusionModel(ModelConfig.from_dict(p["config"]))
        model.load_state_dict(p["state_dict"])
        return model.eval()

    def metric(self, name, key) -> np.ndarray:
        return np.array([self.payload(name, s)["metrics"].get(key, np.nan) for s in self.seeds], dtype=float)

    def sweep(self, name, seed, kind="gaussian") -> dict:
        key = (name, seed, kind)
        if key not in self._sweep:
            self._sweep[key] = json.loads((self.dir / f"{name}-s{seed}.{kind}.json").read_text())["modalities"]
        return self._sweep[key]

    def per_seed(self, name, modality, key, kind="gaussian") -> list:
        return [self.sweep(name, s, kind)[modality][key] for s in self.seeds]

    def dataset(self, path: Path) -> Dataset:
        if path not in self._ds:
            self._ds[path] = Dataset(self.root / path)
        return self._ds[path]


# ---------------------------------------------------------------- logistic regression reference

def stratified_split(labels: np.ndarray, seed: int, train=0.6, val=0.2):
    """A stratified train/val/test split of the whole dataset (60/20/20 per class, as the stored one)."""
    rng = np.random.default_rng(seed)
    parts = ([], [], [])
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_tr, n_va = int(round(train * len(idx))), int(round(val * len(idx)))
        for part, chunk in zip(parts, (idx[:n_tr], idx[n_tr:n_tr + n_va], idx[n_tr + n_va:])):
            part.append(chunk)
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def logistic(ds: Dataset, views, splits) -> float:
    x = np.concatenate([ds.arrays[v] for v in views], axis=1)
    parts = [(torch.from_numpy(x[i]), torch.from_numpy(ds.labels[i])) for i in splits]
    return logistic_regression_accuracy(*parts[0], *parts[1], *parts[2], len(ds.class_names))["test_accuracy"]


def logistic_references(store: Store, data: Path, view_sets) -> dict:
    """{"+".join(views): {"stored": acc, "resplit": [acc per seed]}}, cached in build/runs/logistic.json."""
    cache_path = store.dir / "logistic.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    ds = store.dataset(data)
    out = {}
    for views in view_sets:
        key = f"{ds.name}:{'+'.join(views)}"
        if key not in cache:
            stored = (ds.splits["train"], ds.splits["val"], ds.splits["test"])
            cache[key] = {"stored": logistic(ds, views, stored),
                          "resplit": [logistic(ds, views, stratified_split(ds.labels, s)) for s in SPLIT_SEEDS]}
            cache_path.write_text(json.dumps(cache, indent=1))
            print(f"logistic regression {key}: {cache[key]['stored']:.4f} (stored split), "
                  f"{np.mean(cache[key]['resplit']):.4f} (5 resplits)", flush=True)
        out["+".join(views)] = cache[key]
    return out


# ---------------------------------------------------------------- convergence (core only)

def held_curve(rel: np.ndarray, nstep: np.ndarray, horizon: int) -> np.ndarray:
    """(N, horizon) residuals, each sample's last finite value held after it stopped or broke down."""
    rel = np.asarray(rel, dtype=np.float64)
    out = np.full((rel.shape[0], horizon), np.nan)
    k = min(horizon, rel.shape[1])
    out[:, :k] = rel[:, :k]
    out[np.arange(horizon)[None, :] >= np.minimum(np.asarray(nstep).astype(int), horizon)[:, None]] = np.nan
    out[~np.isfinite(out)] = np.nan
    for j in range(1, horizon):
        gap = np.isnan(out[:, j])
        out[gap, j] = out[gap, j - 1]
    return out


@torch.no_grad()
def fused_residual_per_step(model: FusionModel, inputs, solver: str, horizon: int = max(TABLE_STEPS)) -> list:
    """Mean relative residual of z_fuse at each of ``horizon`` steps, tolerance below reach (every step runs)."""
    features, _, logvars = model.encode(inputs)
    if model.config.is_udml:
        _, weights = model.udml_weights(logvars)
        features = udml.apply_residual_weights(features, weights)
    injection = model.fusion.block.inject(features)
    f = model.fusion.fixed_point_map(injection)
    _, trace = solve(f, torch.zeros_like(injection), solver=solver, max_iter=horizon, tol=1e-30,
                     divergence_factor=None)
    return held_curve(trace.block_rel[:, :, -1], trace.nstep, horizon).mean(axis=0).tolist()


def convergence_curve(store: Store, name: str, seed: int, solver: str) -> np.ndarray:
    cache = store.dir / f"{name}-s{seed}.conv-{solver}.json"
    if not cache.exists():
        run = store.runs[name]
        x = store.dataset(run.data).inputs(run.views.split(","))
        curve = fused_residual_per_step(store.model(name, seed), x, solver)
        cache.write_text(json.dumps(curve))
    return np.array(json.loads(cache.read_text()))


def convergence_table(store: Store, prefix: str) -> list[str]:
    rows = [("deq", "anderson", "full DEQ fusion, Anderson"),
            ("deq", "fixed_point", "full DEQ fusion, plain fixed-point iteration"),
            ("deq_udml", "anderson", "DEQ-UDML, Anderson"),
            ("deq_udml", "fixed_point", "DEQ-UDML, plain fixed-point iteration"),
            ("deq_unrolled", "fixed_point", "weight-tied unrolled model (trained with 10 steps), iterated")]
    lines = ["| model, solver | " + " | ".join(f"step {s}" for s in TABLE_STEPS) + " |",
             "|---|" + "---|" * len(TABLE_STEPS)]
    for suffix, solver, label in rows:
        mean = np.mean([convergence_curve(store, prefix + suffix, s, solver) for s in store.seeds], axis=0)
        lines.append(f"| {label} | " + " | ".join(sci(mean[s - 1]) for s in TABLE_STEPS) + " |")
    return lines


# ---------------------------------------------------------------- tables

def _steps(store: Store, name: str) -> str:
    run = store.runs[name]
    if not run.is_deq:
        return "—"
    steps = pm(store.metric(name, "test_mean_steps"), 1)
    if run.ablation in ("no-deq", "unrolled"):
        return f"{steps} (fixed)"
    return f"{steps} ({np.mean(store.metric(name, 'test_converged_fraction')):.1%} conv.)"


def _auc_cells(store: Store, name: str, views) -> list[str]:
    if store.runs[name].group == "single":
        return ["—"] * len(views)
    return [pm(store.per_seed(name, m, "auc"), 3) for m in views]


def accuracy_table(store: Store, bench: dict, lr: dict) -> list[str]:
    views = bench["views"].split(",")
    head = ("| model | test accuracy | " + " | ".join(f"AUC, {m} noisy" for m in views)
            + " | solver steps on test |")
    lines = [head, "|---|---|" + "---|" * len(views) + "---|"]
    groups = (("ablation", "*the paper's ablation (Table 6/7 rows)*"),
              ("baseline", "*other fusions*"),
              ("isolation", "*isolating UDML: noise injection without UDML, UDML without its weighting or noise loss*"))
    for group, title in groups:
        lines.append(f"| {title} | | " + " | " * len(views) + " |")
        for name, run in store.runs.items():
            if run.benchmark == bench["key"] and run.group == group:
                lines.append(f"| {run.label} | {pm(store.metric(name, 'test_accuracy'))} | "
                             + " | ".join(_auc_cells(store, name, views)) + f" | {_steps(store, name)} |")
    lines.append("| *one view alone* | | " + " | " * len(views) + " |")
    for m in views:
        name = f"uci_only_{m}"
        lines.append(f"| {store.runs[name].label} | {pm(store.metric(name, 'test_accuracy'))} | "
                     + " | ".join("—" for _ in views) + " | — |")
    joined = "+".join(views)
    lines.append(f"| logistic regression on {' + '.join(views)} (same split) | {lr[joined]['stored']:.4f} | "
                 + " | ".join("—" for _ in views) + " | — |")
    return lines


def logistic_table(lr: dict, views) -> list[str]:
    lines = ["| views | stored split (the models' test split) | 5 stratified resplits (mean ± std) |",
             "|---|---|---|"]
    for key in [*views, "+".join(views)]:
        label = key if "+" not in key else f"{' + '.join(key.split('+'))} concatenated"
        lines.append(f"| {label} | {lr[key]['stored']:.4f} | {pm(lr[key]['resplit'], 3)} |")
    return lines


def calibration_table(store: Store, bench: dict) -> list[str]:
    views = bench["views"].split(",")
    lines = ["| model | " + " | ".join(f"ρ σ̂, {m}" for m in views) + " | " + " | ".join(f"ρ PE, {m}" for m in views)
             + " |", "|---|" + "---|" * (2 * len(views))]
    for suffix in UDML_ROWS:
        name = bench["prefix"] + suffix
        lines.append(f"| {store.runs[name].label} | "
                     + " | ".join(pm(store.per_seed(name, m, "noise_spearman"), 3) for m in views) + " | "
                     + " | ".join(pm(store.per_seed(name, m, "pe_spearman"), 3) for m in views) + " |")
    return lines


def sigma_table(store: Store, name: str) -> list[str]:
    """Mean σ̂ per severity for Gaussian noise (trained on) and masking (never seen), deq-udml."""
    lines = ["| corrupted modality | kind | mean σ̂ at severity " + " / ".join(map(str, LEVELS))
             + " | ρ (UDML σ̂) | ρ (PE) |", "|---|---|---|---|---|"]
    views = store.runs[name].views.split(",")
    for m in views:
        for kind in ("gaussian", "mask"):
            est = np.mean([store.sweep(name, s, kind)[m]["noise_estimate"] for s in store.seeds], axis=0)
            note = "" if kind == "gaussian" else " (not trained on)"
            lines.append(f"| {m} | {kind}{note} | " + " / ".join(f"{v:.2f}" for v in est) + " | "
                         + pm(store.per_seed(name, m, "noise_spearman", kind), 3) + " | "
                         + pm(store.per_seed(name, m, "pe_spearman", kind), 3) + " |")
    return lines


def curve_tables(store: Store, bench: dict) -> list[str]:
    views = bench["views"].split(",")
    lines = []
    for m in views:
        lines += [f"**{m} corrupted with Gaussian noise** (test accuracy, mean over 5 seeds)", "",
                  "| model | " + " | ".join(f"sev. {lvl}" for lvl in LEVELS) + " | AUC |",
                  "|---|" + "---|" * (len(LEVELS) + 1)]
        for suffix in CURVE_ROWS:
            name = bench["prefix"] + suffix
            acc = np.mean(store.per_seed(name, m, "accuracy"), axis=0)
            lines.append(f"| {store.runs[name].label} | " + " | ".join(f"{a:.3f}" for a in acc)
                         + f" | {np.mean(store.per_seed(name, m, 'auc')):.3f} |")
        lines.append("")
    return lines


# ---------------------------------------------------------------- the reading

def mean_auc(store: Store, name: str, views) -> np.ndarray:
    """Per seed, the AUC averaged over the modalities (one corrupted at a time)."""
    return np.mean([store.per_seed(name, m, "auc") for m in views], axis=0)


def mean_drop(store: Store, name: str, views) -> np.ndarray:
    """Per seed, clean accuracy minus AUC averaged over the modalities: what noise costs, whatever the clean level."""
    return np.mean([[sw[m]["accuracy"][0] - sw[m]["auc"] for sw in (store.sweep(name, s) for s in store.seeds)]
                    for m in views], axis=0)


def _diff(xa: np.ndarray, xb: np.ndarray) -> tuple[float, float, str]:
    diff = float(xa.mean() - xb.mean())
    se = float(np.sqrt(xa.var(ddof=1) / len(xa) + xb.var(ddof=1) / len(xb)))
    return diff, se, "clear" if abs(diff) > 2 * se else "within the seed spread"


def effect(store: Store, bench: dict, a: str, b: str, measure=mean_auc) -> tuple[float, float, str]:
    """measure(a) − measure(b) averaged over modalities and seeds, its standard error over seeds, and a verdict."""
    views = bench["views"].split(",")
    return _diff(measure(store, bench["prefix"] + a, views), measure(store, bench["prefix"] + b, views))


COMPARISONS = (
    ("noise injection alone, DEQ fusion", "deq_noise", "deq"),
    ("noise injection alone, weighted sum", "weighted_sum_noise", "weighted_sum"),
    ("deq-udml against noise-augmented deq (what UDML adds beyond its noise)", "deq_udml", "deq_noise"),
    ("UDML's weighting (deq-udml against deq-udml with w ≡ 1)", "deq_udml", "deq_udml_w1"),
    ("the noise loss (deq-udml against deq-udml without it)", "deq_udml", "deq_udml_no_noise_loss"),
    ("deq-udml against deq trained without noise (the lead reported before)", "deq_udml", "deq"),
)


def reading(store: Store, bench: dict) -> list[str]:
    """The comparisons that separate the effects, as numbers (mean over modalities, 5 seeds)."""
    lines = ["| comparison (first − second) | Δ AUC | | Δ accuracy lost to noise (clean − AUC) | |",
             "|---|---|---|---|---|"]
    for label, a, b in COMPARISONS:
        d, se, verdict = effect(store, bench, a, b)
        d2, se2, verdict2 = effect(store, bench, a, b, mean_drop)
        lines.append(f"| {label} | {d:+.3f} ± {se:.3f} | {verdict} | {d2:+.3f} ± {se2:.3f} | {verdict2} |")
    return lines


def _says(diff: float, verdict: str) -> str:
    return f"{diff:+.3f} ({'clear' if verdict == 'clear' else 'within the seed spread'})"


def _mean_rho(store: Store, name: str, views, key: str) -> float:
    return float(np.mean([[v for v in store.per_seed(name, m, key) if v is not None] for m in views]))


EFFECT_NAMES = {"lead": "deq-udml's training as a whole (against deq without noise)",
                "noise_deq": "noise injection for deq", "noise_ws": "noise injection for the weighted sum",
                "beyond": "deq-udml's components beyond its noise injection", "weighting": "UDML's weighting",
                "noise_loss": "the noise loss"}


def reading_paragraph(store: Store, bench: dict) -> str:
    """One paragraph naming, from the numbers, which component produces the robustness and what it is not."""
    views = bench["views"].split(",")
    p = bench["prefix"]
    e = {key: effect(store, bench, a, b) for key, a, b in (
        ("lead", "deq_udml", "deq"), ("noise_deq", "deq_noise", "deq"), ("noise_ws", "weighted_sum_noise", "weighted_sum"),
        ("beyond", "deq_udml", "deq_noise"), ("weighting", "deq_udml", "deq_udml_w1"),
        ("noise_loss", "deq_udml", "deq_udml_no_noise_loss"))}
    clear_up = {k for k, (d, _, v) in e.items() if v == "clear" and d > 0}
    clear_down = {k for k, (d, _, v) in e.items() if v == "clear" and d < 0}
    sources = []
    if clear_up & {"noise_deq", "noise_ws"}:
        sources.append("seeing noise in training (UDML's noise injection)")
    if "beyond" in clear_up:
        sources.append("the rest of deq-udml's training beside its weighting (the auxiliary unimodal losses and the "
                       "probabilistic encoder with its KL term)" if "weighting" not in clear_up else
                       "deq-udml's own components beyond its noise")
    if "weighting" in clear_up:
        sources.append("UDML's weighting w = g(1/(s·α))")
    source = " and ".join(sources) if sources else "no single component that stands out from the seed spread"
    acc = {n: store.metric(p + n, "test_accuracy").mean() for n in ("deq_udml", "deq_udml_w1", "deq_noise", "deq")}
    rho = {n: _mean_rho(store, p + n, views, "noise_spearman") for n in UDML_ROWS}
    rho_pe = _mean_rho(store, p + "deq_udml", views, "pe_spearman")
    if "weighting" in clear_up:
        weighting_note = f"UDML's weighting adds {_says(*e['weighting'][::2])} over w ≡ 1 with everything else kept"
    elif "weighting" in clear_down:
        weighting_note = ("UDML's weighting costs robustness here: with w ≡ 1 and everything else kept the AUC "
                          f"changes by {_says(-e['weighting'][0], e['weighting'][2])}")
    else:
        weighting_note = ("UDML's weighting is not what makes deq-udml robust here: with w ≡ 1 and everything else "
                          f"kept the AUC changes by {_says(-e['weighting'][0], e['weighting'][2])}")
    against = [EFFECT_NAMES[k] for k in EFFECT_NAMES if k in clear_down]
    return (
        f"**Reading.** Robustness to one noisy modality on {' + '.join(views)} comes from {source}. deq-udml's AUC "
        f"lead over deq trained without noise is {_says(*e['lead'][::2])}; giving deq the same noise injection "
        f"alone changes its AUC by {_says(*e['noise_deq'][::2])}, and the weighted sum's by "
        f"{_says(*e['noise_ws'][::2])}; deq-udml against that noise-augmented deq differs by "
        f"{_says(*e['beyond'][::2])}. {weighting_note}; without the noise loss by {_says(-e['noise_loss'][0], e['noise_loss'][2])}. "
        f"Clean test accuracy: deq-udml {acc['deq_udml']:.4f}, with w ≡ 1 {acc['deq_udml_w1']:.4f}, deq with noise "
        f"{acc['deq_noise']:.4f}, deq {acc['deq']:.4f}. The noise loss is what calibrates σ̂: its Spearman ρ with "
        f"the injected severity, averaged over modalities, is {rho['deq_udml']:+.2f} for deq-udml, "
        f"{rho['deq_udml_w1']:+.2f} with w ≡ 1 and {rho['deq_udml_no_noise_loss']:+.2f} without the noise loss "
        f"(PE: {rho_pe:+.2f}). So σ̂ is a noise detector whose reading the studio's UDML panel can be trusted for "
        "to the extent of that ρ, for Gaussian noise, the kind it was trained on; a calibrated σ̂ and a robust model "
        "are separate facts, and the AUCs here are for Gaussian noise on one modality at a time, not for masking, "
        "dropped or mismatched modalities, nor for the paper's datasets."
        + (f" Clearly against robustness here: {', '.join(against)}." if against else "")
    )


# ---------------------------------------------------------------- cards and the README

def reproduce_command(store: Store, name: str, seed: int) -> str:
    """The run's recorded train command, writing to models/<name>.pt instead of build/runs/."""
    command = store.payload(name, seed)["training"]["command"]
    return re.sub(r"--out \S+", f"--out models/{name}.pt", command)


def model_card(store: Store, name: str, seed: int, lr: dict | None) -> str:
    run = store.runs[name]
    p = store.payload(name, seed)
    m, cfg = p["metrics"], p["config"]
    ds = store.dataset(run.data)
    views = run.views.split(",")
    sizes = {k: len(v) for k, v in ds.splits.items()}
    secs = store.metric(name, "train_seconds")
    lines = [
        f"# {name}", "",
        f"{run.label}, trained by DEQ Studio on CPU.", "",
        "| | |", "|---|---|",
        f"| dataset | `{run.data}` ({ds.name}, sha256 `{p['dataset'].get('sha256', '')[:16]}…`) |",
        f"| modalities | {', '.join(f'{v} ({ds.kinds[v]})' for v in views)} |",
        f"| classes | {len(ds.class_names)} |",
        f"| split | stratified, stored in the dataset: {sizes['train']} train / {sizes['val']} val / {sizes['test']} test |",
        f"| fusion | `{run.fusion}`" + (f", ablation `{run.ablation}`" if run.ablation != "full" else "")
        + f", hidden {cfg['hidden']} |",
        f"| bundled seed | {seed} (best validation accuracy of seeds {', '.join(map(str, store.seeds))}) |",
        f"| test accuracy, this checkpoint | {m['test_accuracy']:.4f} |",
        f"| test accuracy, 5 seeds | {pm(store.metric(name, 'test_accuracy'))} |",
    ]
    if "test_mean_steps" in m:
        lines.append(f"| solver on test | {m['test_mean_steps']:.1f} steps on average, "
                     f"{m['test_converged_fraction']:.1%} converged (tol {cfg['tol']:g}, rel) |")
    if (store.dir / f"{name}-s{seed}.gaussian.json").exists():
        lines.append("| robustness AUC, one modality with Gaussian noise (severity 0–5), this checkpoint | "
                     + ", ".join(f"{v} {store.sweep(name, seed)[v]['auc']:.3f}" for v in views) + " |")
        lines.append("| the same, 5 seeds | " + ", ".join(f"{v} {pm(store.per_seed(name, v, 'auc'), 3)}" for v in views)
                     + " |")
    if lr is not None:
        lines.append(f"| logistic regression on the concatenated views | {lr['stored']:.4f} (same split) |")
    lines += [
        f"| training time (wall clock, at low priority on a shared 2-core machine) | {m['train_seconds']:.0f} s for this seed ({secs.mean():.0f} ± {secs.std(ddof=1):.0f} s "
        f"over 5 seeds; {m['epochs_run']} epochs, best epoch {m['best_epoch']}), {p['training']['threads']} thread(s), "
        f"{p['training'].get('cpu', '?')} |",
        f"| file | `models/{name}.pt`, sha256 `{sha256(store.path(name, seed))[:16]}…` |", "",
        f"Reproduce (bit-identical weights and test accuracy on the same CPU, torch {p['training'].get('torch', '?')}, "
        f"with the stated `--threads`):", "", "```", reproduce_command(store, name, seed), "```", "",
    ]
    return "\n".join(lines)


def report(root: Path, runs_dir: Path, runs: dict, benchmarks: dict, seeds) -> None:
    from train_bundled import sweeps_for  # scripts/train_bundled.py

    t0 = time.time()
    torch.set_num_threads(1)
    store = Store(root, runs_dir, runs, seeds)
    missing = [f"{n}-s{s}" for n in runs for s in seeds if not store.path(n, s).exists()]
    missing += [f"{n}-s{s}.{k}" for n, r in runs.items() for s in seeds for k in sweeps_for(r)
                if not (runs_dir / f"{n}-s{s}.{k}.json").exists()]
    if missing:
        raise SystemExit(f"missing runs or sweeps (train and evaluate them first): {', '.join(missing[:20])}"
                         + (f" and {len(missing) - 20} more" if len(missing) > 20 else ""))
    benches = [{"key": k, **v} for k, v in benchmarks.items()]
    lrs = {}
    for bench in benches:
        views = bench["views"].split(",")
        lrs[bench["key"]] = logistic_references(store, bench["data"], [[v] for v in views] + [views])
    models = root / "models"
    for name, run in runs.items():
        if not run.bundled:
            continue
        best = max(seeds, key=lambda s: (store.payload(name, s)["metrics"]["val_accuracy"], -s))
        shutil.copyfile(store.path(name, best), models / f"{name}.pt")
        lr = lrs[run.benchmark][run.views.replace(",", "+")] if run.benchmark in lrs else None
        (models / f"{name}.md").write_text(model_card(store, name, best, lr))
        print(f"bundled {name} (seed {best})", flush=True)

    text = [
        "# Bundled models", "",
        "Every model here was trained by `scripts/train_bundled.py train` (5 seeds each, CPU, one thread, through",
        "`deqstudio train`) and measured by `scripts/train_bundled.py evaluate` (`deqstudio sweep --json`) and",
        "`scripts/train_bundled.py report`, which wrote this file, picked the bundled seed of each model (best",
        "validation accuracy) and wrote its card. All accuracies are on the test split stored in the dataset",
        "file; mean ± std are over seeds 0–4 (sample std).", "",
        "| file | what | card |", "|---|---|---|",
    ]
    for name, run in runs.items():
        if run.bundled:
            text.append(f"| `{name}.pt` | {run.label} on {', '.join(run.views.split(','))} | [{name}.md]({name}.md) |")
    text += [
        "", "The default model the studio opens is `uci_deq_udml.pt` (UCI Multiple Features, pix as a 16×15 image "
        "plus fou and zer).", "",
        "**How to read the robustness columns.** AUC is the mean test accuracy over Gaussian-noise severities 0–5 "
        "(trapezoid rule; severity s adds noise of s × the DESIGN.md §4.3 std per feature) with one modality "
        "corrupted at a time, the other two clean: what `deqstudio sweep --json` reports as `auc`. deq-udml is "
        "trained with Gaussian noise of random level injected per sample and per modality in the second half of "
        "its epochs; a model trained without noise has never seen a noisy input. The rows *+ UDML's noise "
        "injection* give deq and the weighted sum exactly that noise (same epochs, same levels, the same draws "
        "for the same seed), and nothing else of UDML; they separate the effect of seeing noise in training from "
        "the effect of UDML's weighting.", "",
    ]
    for bench in benches:
        views = bench["views"].split(",")
        lr = lrs[bench["key"]]
        text += [
            f"## {bench['title']}", "",
            f"{' + '.join(views)}, {HIDDEN}-wide features, 40 epochs with early stopping on validation.", "",
            *accuracy_table(store, bench, lr), "",
            "Logistic regression (L2 strength chosen on validation from 1e-4…1, standardised raw features) on each "
            "view and on the views concatenated, on the stored split and on 5 stratified 60/20/20 resplits of the "
            "whole dataset (seeds 0–4):", "",
            *logistic_table(lr, views), "",
            "### What separates the effects (robustness AUC, averaged over the three corrupted modalities)", "",
            "Δ is the difference of the 5-seed means ± its standard error over seeds; *clear* when it exceeds "
            "twice that. The second Δ compares how much accuracy noise takes away (clean accuracy − AUC; "
            "negative: the first model loses less), which a higher clean accuracy alone does not change.", "",
            *reading(store, bench), "",
            reading_paragraph(store, bench), "",
            "### Noise calibration: Spearman ρ between the predicted noise and the injected severity", "",
            "Test split, one modality with Gaussian noise at a time, ρ pooled over severities 0–5 per seed, mean ± "
            "std over seeds. σ̂ is UDML's noise predictor; PE is the mean predicted variance exp(log σ²) of the "
            "modality's probabilistic encoder (the PE baseline of the UDML paper). Only the deq-udml variants have "
            "either; the other rows have no noise estimate.", "",
            *calibration_table(store, bench), "",
            "Mean σ̂ per severity of the bundled configuration (`deq-udml`), with masking as a kind training never "
            "injected:", "",
            *sigma_table(store, bench["prefix"] + "deq_udml"), "",
            "### Convergence: mean relative residual of z_fuse per solver step (the paper's Table 9 view)", "",
            "Test split, clean inputs, tolerance below reach so every step runs; ‖f(z)_fuse − z_fuse‖ / "
            "‖f(z)_fuse‖ averaged over the test samples and 5 seeds; a sample whose solver broke down holds its "
            "last finite value. The weight-tied unrolled model was trained for exactly 10 steps; iterating it "
            "further shows whether its map has an equilibrium at all.", "",
            *convergence_table(store, bench["prefix"]), "",
            "### Robustness curves", "",
            *curve_tables(store, bench),
        ]
    text += [
        "## Commands", "", "```",
        ".venv/bin/python scripts/train_bundled.py all          # train, evaluate, report; resumable",
        ".venv/bin/python scripts/train_bundled.py verify NAME  # retrain a bundled card's command, compare",
        "```", "", "One run of each kind, as `deqstudio train` recorded it (seed 0):", "", "```",
        *[store.payload(n, 0)["training"]["command"] for n, r in runs.items()
          if r.benchmark == "fzm" or r.group == "single"], "```", "",
        f"Measured with torch {torch.__version__}, Python {platform.python_version()}, on "
        f"{store.payload('uci_deq_udml', 0)['training'].get('cpu', platform.machine())}; the runs took "
        f"{sum(store.metric(n, 'train_seconds').sum() for n in runs) / 3600:.1f} hours of training in all, "
        "summed over runs (wall clock per run, one thread each, two runs at a time at low priority on a 2-core "
        "machine shared with other work, so these times are upper bounds).", "",
    ]
    (models / "README.md").write_text("\n".join(text))
    print(f"wrote models/README.md in {time.time() - t0:.0f} s")


HIDDEN = 64
