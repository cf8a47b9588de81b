"""The Qt-free analyses (``deqstudio.diagnostics``) against hand-computed results on small cases.

Pure helpers (spearman, area_under_curve, held_curve, the result writers) are checked on hand-built
arrays. The analyses themselves run on the bundled default model restricted to a few test samples
(extra splits, chosen by what the model does with them, see ``uci``), and every number they report is
recomputed here with ``Evaluator.run`` (or ``solve`` on ``Evaluator.fixed_point_problem``) on the same samples and
corruptions.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from deqstudio.core.fusion.deq_fusion import SolverSettings
from deqstudio.core.model import FusionModel
from deqstudio.core.solvers import solve
from deqstudio.diagnostics.convergence import (
    SOLVERS,
    TABLE_STEPS,
    convergence_stats,
    held_curve,
    solver_race,
)
from deqstudio.core.corruptions import Corruption
from deqstudio.core.adapter import ModelRun
from deqstudio.diagnostics.evaluation import BatchOutcome, Evaluator
from deqstudio.diagnostics.stats import area_under_curve, spearman
from deqstudio.errors import Cancelled
from deqstudio.diagnostics.results import read_hdf5, write_csv, write_hdf5
from deqstudio.diagnostics.robustness import (
    LEVELS,
    RobustnessSweep,
    robustness_sweep,
    sweep_plan,
    tipping_points,
)
from deqstudio.io.checkpoint import load_checkpoint
from deqstudio.io.dataset import read_dataset
from deqstudio.io.synthetic import make_synthetic
from deqstudio.workflows.training import TrainRequest, build_config
from deqstudio.paths import default_checkpoint, default_dataset, models_dir

NAN = float("nan")


def read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def num(cell: str) -> float:
    """A CSV cell back to a float: the writer leaves NaN empty."""
    return NAN if cell == "" else float(cell)


def assert_same(a, b):
    """Equal arrays, NaN equal to NaN, exactly."""
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def first_level(levels, hit: np.ndarray) -> np.ndarray:
    """Per sample (columns of the (L, N) mask ``hit``), the first level where it is True, NaN if never."""
    out = np.full(hit.shape[1], np.nan)
    for j in range(hit.shape[0] - 1, -1, -1):
        out[hit[j]] = levels[j]
    return out


# --------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Batches here are a few samples: one intra-op thread is as fast, and far faster on a busy machine
    (two threads spin against other processes for the two cores). Restored for the other modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


MAX_ITER = 30  # the solver analyses' horizon
CANDIDATES = 160  # the first test samples, from which the extra splits are chosen
TIP_LEVELS = [1.0, 2.0, 3.0, 4.0, 5.0]
CLEAR = 0.05  # a probability margin between the two best classes that no machine's rounding overturns


def _clear(outcome) -> np.ndarray:
    """Samples whose best class leads the second by at least CLEAR (a near-tie may tip on another machine)."""
    top = np.sort(outcome.probabilities, axis=1)
    return top[:, -1] - top[:, -2] >= CLEAR


@pytest.fixture(scope="module")
def uci():
    """The bundled default model on the bundled dataset, with small extra splits of test samples chosen
    by what the model does with them (never by position, so that they hold on any machine):

    ``tiny`` (24): samples the model gets right and converges on; 8 of them change their prediction
    when the ``fou`` view is shuffled at severity 5 (every sample gets another one's), 16 do not;
    ``few`` (8): samples every solver converges on within MAX_ITER steps, for the solver analyses;
    ``tipping`` (6): two samples each that first flip at two different severities of the ``fou``
    shuffle, and two that never flip.
    """
    ck = load_checkpoint(default_checkpoint())
    full = read_dataset(default_dataset())
    pool = full.split("test")[:CANDIDATES].copy()
    ev = Evaluator(ck.model, full)
    clean = ev.run(pool)
    good = clean.correct & clean.converged & _clear(clean)
    shuffled = [ev.run(pool, {"fou": Corruption("shuffle", level, 0)}) for level in TIP_LEVELS]
    flipped = np.array([r.predictions != clean.predictions for r in shuffled])
    clear = np.all([_clear(r) for r in shuffled], axis=0)
    flips = good & clear & flipped[-1]
    stays = good & clear & ~flipped.any(axis=0)
    assert flips.sum() >= 8 and stays.sum() >= 16, "too few samples of each kind among the candidates"
    tiny = np.sort(np.concatenate([pool[flips][:8], pool[stays][:16]]))

    every_solver = np.ones(len(pool), bool)
    for solver in SOLVERS:
        r = ev.run(pool, settings=SolverSettings(solver=solver, max_iter=MAX_ITER, tol=ck.config.tol, stop_mode="rel"))
        every_solver &= r.converged & (r.steps <= MAX_ITER * 2 // 3)  # converged with steps to spare
    few = pool[good & every_solver][:8]
    assert len(few) == 8

    first_flip = first_level(TIP_LEVELS, flipped)
    levels = [v for v in np.unique(first_flip[good & clear]) if np.isfinite(v) and (first_flip[good & clear] == v).sum() >= 2]
    assert len(levels) >= 2, "no two severities at which samples first flip"
    tipping = np.concatenate([pool[good & clear & (first_flip == v)][:2] for v in levels[:2]] + [pool[stays][:2]])

    ds = dataclasses.replace(full, splits={**full.splits, "tiny": tiny, "few": few, "tipping": tipping})
    return ck, ds, Evaluator(ck.model, ds)


@pytest.fixture(scope="module")
def baseline(uci):
    _, ds, _ = uci
    return Evaluator(load_checkpoint(models_dir() / "uci_concat.pt").model, ds)


@pytest.fixture(scope="module")
def untrained():
    """An untrained tiny concat model (no solver, no UDML) on a small synthetic dataset."""
    torch.manual_seed(0)
    ds = make_synthetic(n=60, num_classes=3, seed=1)
    model = FusionModel(build_config(ds, TrainRequest(fusion="concat", hidden=8)))
    return Evaluator(model, ds)


# --------------------------------------------------------------------------------------------- spearman

def test_spearman_monotone_and_reversed():
    a = np.array([0.3, 1.0, 2.5, 4.0, 9.0])
    assert spearman(a, np.exp(a)) == pytest.approx(1.0, abs=1e-12)
    assert spearman(a, -a**3) == pytest.approx(-1.0, abs=1e-12)
    # ranks only: any monotone transform of either side leaves rho unchanged
    b = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    assert spearman(a, b) == pytest.approx(spearman(np.log(a), b**3), abs=1e-12)


def test_spearman_with_ties_by_hand():
    # average ranks: a -> [1, 2.5, 2.5, 4], b -> [1, 3, 2, 4]; centred: [-1.5, 0, 0, 1.5] and
    # [-1.5, 0.5, -0.5, 1.5]; covariance sum 4.5, variance sums 4.5 and 5 -> 4.5 / sqrt(22.5) = 3 / sqrt(10)
    a, b = [1, 2, 2, 3], [1, 3, 2, 4]
    assert spearman(a, b) == pytest.approx(3 / math.sqrt(10), abs=1e-12)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_matches_scipy_on_heavily_tied_data():
    rng = np.random.default_rng(3)
    for _ in range(5):
        a = rng.integers(0, 4, 50).astype(float)
        b = a + rng.integers(0, 3, 50)
        assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    # 2-D inputs are flattened
    m = rng.standard_normal((3, 4))
    assert spearman(m, m**3) == pytest.approx(1.0, abs=1e-12)


def test_spearman_drops_non_finite_pairs():
    a = [1.0, 2.0, NAN, 3.0, 4.0, np.inf]
    b = [2.0, 1.0, 9.0, 3.0, 4.0, 0.0]
    # the pairs left: (1, 2), (2, 1), (3, 3), (4, 4)
    expected = stats.spearmanr([1, 2, 3, 4], [2, 1, 3, 4]).statistic
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12) and expected == pytest.approx(0.8)


def test_spearman_is_nan_when_undefined():
    assert math.isnan(spearman([1, 1, 1, 1], [1, 2, 3, 4]))  # constant side
    assert math.isnan(spearman([1, 2, 3], [7, 7, 7]))
    assert math.isnan(spearman([1.0], [2.0]))  # fewer than two pairs
    assert math.isnan(spearman([], []))
    assert math.isnan(spearman([1, NAN, 3], [NAN, 2, 4]))  # one finite pair left
    with pytest.raises(ValueError, match="equal lengths"):
        spearman([1, 2, 3], [1, 2])


# ------------------------------------------------------------------------------------- area under curve

def test_area_under_curve_is_trapezoid_over_level_span():
    # trapezoids on 0..5: (1+.9)/2 + (.9+.8)/2 + (.8+.6)/2 + (.6+.4)/2 + (.4+.2)/2 = 3.3; span 5
    assert area_under_curve(LEVELS, [1.0, 0.9, 0.8, 0.6, 0.4, 0.2]) == pytest.approx(3.3 / 5, abs=1e-15)
    # uneven levels: 0.5 * (1 + .8)/2 + 1.5 * (.8 + .2)/2 = 1.2 over the span 2
    assert area_under_curve([0.0, 0.5, 2.0], [1.0, 0.8, 0.2]) == pytest.approx(0.6, abs=1e-15)
    # a span not starting at 0: 2 * (.5 + 1)/2 over 2
    assert area_under_curve([1.0, 3.0], [0.5, 1.0]) == pytest.approx(0.75, abs=1e-15)
    # a flat curve's normalised area is its value: a mean accuracy, not an area
    assert area_under_curve([0, 1, 2, 3, 4, 5], [0.7] * 6) == pytest.approx(0.7, abs=1e-15)


def test_area_under_curve_undefined_cases():
    assert math.isnan(area_under_curve([0.0], [1.0]))
    assert math.isnan(area_under_curve([], []))
    assert math.isnan(area_under_curve([0, 1, 2], [1.0, NAN, 0.5]))  # an unfinished (cancelled) curve


# ------------------------------------------------------------------------------------------ held curve

def test_held_curve_forward_fills_after_each_samples_last_step():
    rel = np.array([
        [0.5, 0.1, 0.01, 0.001],  # stopped after 3 steps: the 4th column is beyond it and ignored
        [1.0, 0.4, NAN, NAN],  # stopped after 2
        [0.9, NAN, 0.2, 0.3],  # a NaN step inside the run is held over from the step before
        [0.7, 0.6, 0.5, 0.4],  # no step at all: nothing to hold
    ])
    nstep = np.array([3, 2, 4, 0])
    before = rel.copy()
    out = held_curve(rel, nstep, 6)
    expected = np.array([
        [0.5, 0.1, 0.01, 0.01, 0.01, 0.01],
        [1.0, 0.4, 0.4, 0.4, 0.4, 0.4],
        [0.9, 0.9, 0.2, 0.3, 0.3, 0.3],
        [NAN] * 6,
    ])
    assert_same(out, expected)
    assert_same(rel, before)  # the input is not modified
    # a horizon shorter than the trace cuts it; steps past the horizon count as the horizon
    assert_same(held_curve(rel, nstep, 2), expected[:, :2])
    assert_same(held_curve(rel[:1], [10], 5), [[0.5, 0.1, 0.01, 0.001, 0.001]])


def test_held_curve_holds_the_last_finite_value_after_an_infinite_step():
    # a solve whose last step overflowed (‖f(z) − z‖ = inf with f(z) finite, e.g. a huge iterate through
    # a bounded block): the docstring says the last *finite* value is held, 0.2 here; the code holds inf,
    # which then makes every later step of the mean curve (ConvergenceStats, SolverRace) infinite
    assert_same(held_curve(np.array([[0.5, 0.2, np.inf]]), np.array([3]), 5), [[0.5, 0.2, 0.2, 0.2, 0.2]])


# -------------------------------------------------------------------------------------- result writers

def test_write_csv_cells(tmp_path):
    third = 1 / 3
    rows = [["a", third, np.float32(0.1), np.int64(3), np.bool_(True), NAN, np.inf, 7, 0.1 + 0.2]]
    path = write_csv(tmp_path / "t.csv", ("s", "f", "f32", "i", "b", "nan", "inf", "int", "sum"), rows)
    header, body = read_csv(path)
    assert header == ["s", "f", "f32", "i", "b", "nan", "inf", "int", "sum"]
    assert body == [["a", repr(third), repr(float(np.float32(0.1))), "3", "True", "", "", "7", repr(0.1 + 0.2)]]
    assert float(body[0][1]) == third and float(body[0][8]) == 0.1 + 0.2  # full precision


def test_write_and_read_hdf5(tmp_path):
    arrays = {"x": np.array([[1.5, NAN], [1 / 3, -2.0]]), "names": np.array(["pix", "fou"]),
              "flags": np.array([True, False]), "ids": np.arange(3, dtype=np.int64)}
    attrs = {"model": "m.pt", "n": 4, "ok": False, "tags": ["a", "bc"], "none": None, "empty": [], "tol": 1e-4}
    write_hdf5(tmp_path / "r.h5", "g", arrays, attrs)
    got, got_attrs = read_hdf5(tmp_path / "r.h5", "g")
    assert set(got) == set(arrays)
    assert_same(got["x"], arrays["x"])
    assert got["names"].tolist() == ["pix", "fou"]
    assert got["flags"].dtype == bool and got["flags"].tolist() == [True, False]
    assert got["ids"].dtype == np.int64 and got["ids"].tolist() == [0, 1, 2]
    assert got_attrs["model"] == "m.pt" and got_attrs["n"] == 4 and not got_attrs["ok"]
    assert got_attrs["tags"] == ["a", "bc"] and got_attrs["none"] == "" and got_attrs["empty"] == []
    assert got_attrs["tol"] == 1e-4


# ---------------------------------------------------------------------------------- evaluator, outcome

def test_batch_outcome_accuracy():
    def outcome(labels, preds):
        n = len(labels)
        probabilities = np.eye(3)[np.array(preds, dtype=int)]  # one-hot: the prediction is each row's argmax
        return BatchOutcome(np.arange(n), np.array(labels), ModelRun(probabilities, np.log(probabilities + 1e-9)),
                            has_solver=False)

    o = outcome([0, 1, 2, 2], [0, 2, 2, 1])
    assert o.correct.tolist() == [True, False, True, False] and o.accuracy == 0.5
    assert math.isnan(outcome([], []).accuracy)


def test_evaluator_batches_cancel_and_inputs(uci):
    ck, ds, ev = uci
    ids = ds.split("few")
    whole = ev.run(ids)
    assert whole.probabilities.shape == (8, 10) and whole.sigma_hat.shape == (8, 3) and whole.pe.shape == (8, 3)
    assert_same(whole.predictions, whole.probabilities.argmax(1))
    assert_same(whole.labels, ds.labels[ids])
    small = Evaluator(ck.model, ds, batch_size=3)
    parts = small.run(ids)  # three batches: 3 + 3 + 2
    assert_same(parts.predictions, whole.predictions)
    np.testing.assert_allclose(parts.probabilities, whole.probabilities, atol=1e-5)
    # the cancel callback is asked before each batch
    calls = []
    with pytest.raises(Cancelled):
        small.run(ids, cancel=lambda: calls.append(1) or len(calls) >= 2)
    assert len(calls) == 2
    empty = ev.run(np.zeros(0, np.int64))
    assert math.isnan(empty.accuracy) and len(empty.predictions) == 0 and empty.sigma_hat is None
    # severity 0 is the clean input whatever the kind; a kind the modality does not admit is refused
    clean = ev.inputs(ids)
    assert [a.dtype for a in clean] == [np.float32] * 3
    assert_same(ev.inputs(ids, {"fou": Corruption("blur", 0.0)})[1], clean[1])
    with pytest.raises(ValueError, match="does not apply"):
        ev.inputs(ids, {"fou": Corruption("blur", 1.0)})


# ------------------------------------------------------------------- RobustnessSweep built by hand

def hand_sweep(baseline: bool = True, kinds=("gaussian", "gaussian")) -> RobustnessSweep:
    third = 1 / 3
    return RobustnessSweep(
        model="m.pt", split="test", levels=np.array([0.0, 1.0, 2.0, 4.0]),
        modality=np.array(["a", "b"]), kind=np.array(kinds),
        accuracy=np.array([[1.0, 0.8, 0.6, 0.2], [0.9, 0.9, 0.7, 0.5]]),
        mean_steps=np.array([[10.0, 11.5, third, 14.0], [12.0, 12.25, 13.0, 0.1 + 0.2]]),
        converged_fraction=np.array([[1.0, 1.0, 0.95, 0.9], [1.0, 1.0, 1.0, 0.875]]),
        noise_estimate=np.array([[0.1, 0.2, NAN, 0.4], [0.3, 0.3, 0.35, 0.5]]),
        pe_estimate=np.full((2, 4), NAN),
        noise_spearman=np.array([0.5, NAN]), pe_spearman=np.array([NAN, -0.25]),
        samples=20, complete=True, baseline="base.pt" if baseline else "",
        baseline_accuracy=np.array([[1.0, 0.6, 0.4, 0.2], [0.8, 0.8, 0.8, 0.8]]) if baseline else None,
        seconds=1.25,
    )


# by hand, on levels 0, 1, 2, 4 (span 4):
#   a: (1 + .8)/2 + (.8 + .6)/2 + 2 (.6 + .2)/2 = 2.4 -> 0.6
#      baseline (1 + .6)/2 + (.6 + .4)/2 + 2 (.4 + .2)/2 = 1.9 -> 0.475
#   b: (.9 + .9)/2 + (.9 + .7)/2 + 2 (.7 + .5)/2 = 2.9 -> 0.725; baseline flat 0.8
AUC = np.array([0.6, 0.725])
BASE_AUC = np.array([0.475, 0.8])


def test_hand_sweep_auc_and_relative_robustness():
    s = hand_sweep()
    np.testing.assert_allclose(s.auc, AUC, rtol=0, atol=1e-15)
    np.testing.assert_allclose(s.baseline_auc, BASE_AUC, rtol=0, atol=1e-15)
    np.testing.assert_allclose(s.relative_robustness, [0.6 / 0.475, 0.725 / 0.8], rtol=1e-14)
    assert s.relative_robustness[0] > 1 > s.relative_robustness[1]
    s = hand_sweep(baseline=False)
    assert np.isnan(s.baseline_auc).all() and np.isnan(s.relative_robustness).all()
    assert s.curve("b") == 1
    with pytest.raises(KeyError):
        s.curve("b", "mask")
    s.accuracy[1, 2] = NAN  # an unfinished curve has no area
    assert np.isnan(s.auc[1]) and s.auc[0] == pytest.approx(0.6)


@pytest.mark.parametrize("with_baseline", [True, False])
def test_hand_sweep_csv_round_trip(tmp_path, with_baseline):
    s = hand_sweep(with_baseline)
    header, rows = read_csv(s.to_csv(tmp_path / "sweep.csv"))
    assert tuple(header) == RobustnessSweep.COLUMNS
    assert len(rows) == 2 * 4
    col = {name: i for i, name in enumerate(header)}
    base = s.baseline_accuracy if with_baseline else np.full((2, 4), NAN)
    for r, row in enumerate(rows):
        c, j = divmod(r, 4)
        assert row[col["modality"]] == s.modality[c] and row[col["kind"]] == s.kind[c]
        got = {k: num(row[col[k]]) for k in header[2:]}
        want = {
            "severity": s.levels[j], "accuracy": s.accuracy[c, j], "mean_steps": s.mean_steps[c, j],
            "converged_fraction": s.converged_fraction[c, j], "noise_estimate": s.noise_estimate[c, j],
            "pe_estimate": s.pe_estimate[c, j], "baseline_accuracy": base[c, j], "auc": s.auc[c],
            "relative_robustness": s.relative_robustness[c], "noise_spearman": s.noise_spearman[c],
            "pe_spearman": s.pe_spearman[c],
        }
        for key, value in want.items():  # exact: floats are written with repr, NaN as an empty cell
            assert got[key] == value or (math.isnan(got[key]) and math.isnan(value)), (r, key)
        assert (row[col["noise_estimate"]] == "") == (c == 0 and j == 2)
        assert row[col["pe_estimate"]] == ""
    assert num(rows[2][col["mean_steps"]]) == 1 / 3 and num(rows[7][col["mean_steps"]]) == 0.1 + 0.2


@pytest.mark.parametrize("with_baseline", [True, False])
def test_hand_sweep_hdf5_round_trip(tmp_path, with_baseline):
    s = hand_sweep(with_baseline)
    arrays, attrs = read_hdf5(s.to_hdf5(tmp_path / "sweep.h5"), "robustness")
    names = ("levels", "accuracy", "mean_steps", "converged_fraction", "noise_estimate", "pe_estimate",
             "noise_spearman", "pe_spearman")
    assert set(arrays) == {*names, "modality", "kind", "auc"} | ({"baseline_accuracy"} if with_baseline else set())
    for name in names:
        assert_same(arrays[name], getattr(s, name))
    assert arrays["modality"].tolist() == ["a", "b"] and arrays["kind"].tolist() == ["gaussian", "gaussian"]
    assert_same(arrays["auc"], s.auc)
    if with_baseline:
        assert_same(arrays["baseline_accuracy"], s.baseline_accuracy)
    assert attrs == {"model": "m.pt", "split": "test", "samples": 20, "complete": True,
                     "baseline": "base.pt" if with_baseline else "", "seconds": 1.25, "metric": "accuracy"}


def test_hand_sweep_json():
    s = hand_sweep()
    out = s.to_json()
    json.dumps(out, allow_nan=False)  # NaN cells are None, so it is strict JSON
    assert set(out) == {"a", "b"}  # one kind swept: keyed by modality
    a = out["a"]
    assert a["kind"] == "gaussian" and a["levels"] == [0.0, 1.0, 2.0, 4.0]
    assert a["accuracy"] == [1.0, 0.8, 0.6, 0.2]
    assert a["mean_steps"] == [10.0, 11.5, 1 / 3, 14.0]
    assert a["noise_estimate"] == [0.1, 0.2, None, 0.4] and a["pe_estimate"] == [None] * 4
    assert a["converged_fraction"] == [1.0, 1.0, 0.95, 0.9]
    assert a["auc"] == pytest.approx(0.6) and a["noise_spearman"] == 0.5 and a["pe_spearman"] is None
    assert a["baseline_accuracy"] == [1.0, 0.6, 0.4, 0.2]
    assert a["relative_robustness"] == pytest.approx(0.6 / 0.475)
    assert out["b"]["noise_spearman"] is None and out["b"]["pe_spearman"] == -0.25
    plain = hand_sweep(baseline=False).to_json()
    assert "baseline_accuracy" not in plain["a"] and "relative_robustness" not in plain["a"]
    assert set(hand_sweep(kinds=("gaussian", "mask")).to_json()) == {"a=gaussian", "b=mask"}


# ------------------------------------------------------------------------------------------ sweep plan

def test_sweep_plan(uci):
    ev = uci[2]
    assert sweep_plan(ev) == [("pix", "gaussian"), ("fou", "gaussian"), ("zer", "gaussian")]
    every = sweep_plan(ev, ["fou", "pix"], ("all",))
    assert every == [("fou", k) for k in ("gaussian", "mask", "drop", "shuffle")] + [
        ("pix", k) for k in ("gaussian", "mask", "drop", "shuffle", "blur", "impulse", "contrast")]
    assert sweep_plan(ev, ["fou", "pix"], ["blur"]) == [("pix", "blur")]  # skipped where it does not apply
    with pytest.raises(ValueError, match="unknown modality 'mor'"):
        sweep_plan(ev, ["mor"])
    with pytest.raises(ValueError, match="does not apply"):
        sweep_plan(ev, ["fou"], ["blur"])
    with pytest.raises(ValueError, match="nothing to sweep"):
        sweep_plan(ev, ["fou", "zer"], ["blur"])


# ---------------------------------------------------------------------- robustness sweep, real model

SWEEP_KIND = "shuffle"
SWEEP_MODALITIES = ("fou", "zer")


@pytest.fixture(scope="module")
def real_sweep(uci, baseline):
    ev = uci[2]
    progress = []
    s = robustness_sweep(ev, modalities=list(SWEEP_MODALITIES), kinds=[SWEEP_KIND], split="tiny", seed=0,
                         baseline=baseline, model_name="uci_deq_udml.pt", baseline_name="uci_concat.pt",
                         progress=progress.append)
    return s, progress


@pytest.fixture(scope="module")
def by_hand(uci, baseline):
    """Evaluator.run at every (modality, level) of the real sweep: (model outcome, baseline accuracy)."""
    _, ds, ev = uci
    ids = ds.split("tiny")
    clean, base_clean = ev.run(ids), baseline.run(ids).accuracy
    out = {}
    for m in SWEEP_MODALITIES:
        for level in LEVELS:
            if level == 0:
                out[m, level] = (clean, base_clean)
            else:
                corr = {m: Corruption(SWEEP_KIND, level, 0)}
                out[m, level] = (ev.run(ids, corr), baseline.run(ids, corr).accuracy)
    return out


def test_real_sweep_structure(real_sweep):
    s, progress = real_sweep
    assert s.complete and s.samples == 24 and s.split == "tiny"
    assert s.model == "uci_deq_udml.pt" and s.baseline == "uci_concat.pt" and s.seconds > 0
    assert_same(s.levels, LEVELS)
    assert s.modality.tolist() == list(SWEEP_MODALITIES) and s.kind.tolist() == [SWEEP_KIND] * 2
    for name in ("accuracy", "mean_steps", "converged_fraction", "noise_estimate", "pe_estimate", "baseline_accuracy"):
        arr = getattr(s, name)
        assert arr.shape == (2, 6) and np.isfinite(arr).all(), name
    assert ((s.accuracy >= 0) & (s.accuracy <= 1)).all()
    assert progress == pytest.approx([k / 12 for k in range(1, 13)])
    assert s.extra["predictions"].shape == (2, 6, 24) and (s.extra["predictions"] >= 0).all()


def test_real_sweep_matches_evaluator_cell_by_cell(uci, real_sweep, by_hand):
    _, ds, ev = uci
    s, _ = real_sweep
    ids = ds.split("tiny")
    assert_same(s.extra["sample_ids"], ids) and assert_same(s.extra["labels"], ds.labels[ids])
    for c, m in enumerate(SWEEP_MODALITIES):
        mi = ev.names.index(m)
        for j, level in enumerate(LEVELS):
            r, base = by_hand[m, level]
            assert s.accuracy[c, j] == r.accuracy, (m, level)
            assert s.mean_steps[c, j] == pytest.approx(r.steps.mean(), abs=1e-12)
            assert s.converged_fraction[c, j] == pytest.approx(r.converged.mean(), abs=1e-12)
            assert s.noise_estimate[c, j] == pytest.approx(r.sigma_hat[:, mi].mean(), rel=1e-12)
            assert s.pe_estimate[c, j] == pytest.approx(r.pe[:, mi].mean(), rel=1e-12)
            assert s.baseline_accuracy[c, j] == base
            assert_same(s.extra["predictions"][c, j], r.predictions)
        # the estimate of the corrupted modality's noise, ranked against the injected severity
        lv = np.repeat(LEVELS, len(ids))
        sig = np.concatenate([by_hand[m, level][0].sigma_hat[:, mi] for level in LEVELS])
        pe = np.concatenate([by_hand[m, level][0].pe[:, mi] for level in LEVELS])
        assert s.noise_spearman[c] == pytest.approx(stats.spearmanr(lv, sig).statistic, abs=1e-9)
        assert s.pe_spearman[c] == pytest.approx(stats.spearmanr(lv, pe).statistic, abs=1e-9)
    # severity 0 is the clean evaluation, shared by every curve
    clean = ev.run(ids).accuracy
    assert s.accuracy[0, 0] == s.accuracy[1, 0] == clean
    np.testing.assert_allclose(s.relative_robustness, s.auc / s.baseline_auc, rtol=1e-15)
    for c in range(2):
        assert s.auc[c] == pytest.approx(np.trapezoid(s.accuracy[c], LEVELS) / 5, abs=1e-15)


def test_real_sweep_shuffled_view_costs_accuracy(real_sweep):
    s, _ = real_sweep
    fou = s.curve("fou", SWEEP_KIND)
    # ``tiny`` was chosen (see ``uci``) as 24 samples the model gets right when clean, 8 of which change
    # their prediction (so become wrong) when every sample gets another one's fou view (severity 5)
    assert s.accuracy[fou, 0] == 1.0 and s.accuracy[fou, -1] == pytest.approx(16 / 24, abs=1e-12)
    assert s.auc[fou] < 1.0


def test_real_sweep_exports(tmp_path, real_sweep):
    s, _ = real_sweep
    header, rows = read_csv(s.to_csv(tmp_path / "s.csv"))
    col = {name: i for i, name in enumerate(header)}
    assert len(rows) == 12
    got = np.array([num(r[col["accuracy"]]) for r in rows]).reshape(2, 6)
    assert_same(got, s.accuracy)
    got = np.array([num(r[col["noise_estimate"]]) for r in rows]).reshape(2, 6)
    assert_same(got, s.noise_estimate)
    arrays, attrs = read_hdf5(s.to_hdf5(tmp_path / "s.h5"), "robustness")
    assert_same(arrays["accuracy"], s.accuracy) and assert_same(arrays["baseline_accuracy"], s.baseline_accuracy)
    assert attrs["complete"] and attrs["samples"] == 24
    out = s.to_json()
    assert set(out) == set(SWEEP_MODALITIES)
    for c, m in enumerate(SWEEP_MODALITIES):
        assert out[m]["levels"] == list(LEVELS)
        assert out[m]["accuracy"] == s.accuracy[c].tolist()
        assert out[m]["mean_steps"] == s.mean_steps[c].tolist()
        assert out[m]["noise_estimate"] == s.noise_estimate[c].tolist()


# Cells in sweep order: (fou, 0) (fou, 1) (fou, 2) (zer, 0) (zer, 1) (zer, 2). The cancel callback is
# asked before each cell and each evaluation, so a cancel after 3 cells stops there, even though
# (zer, 0) would only have reused the clean evaluation made for (fou, 0).
CANCEL_CASES = {
    0: [[0, 0, 0], [0, 0, 0]],
    2: [[1, 1, 0], [0, 0, 0]],
    3: [[1, 1, 1], [0, 0, 0]],
    4: [[1, 1, 1], [1, 0, 0]],
    5: [[1, 1, 1], [1, 1, 0]],
}


@pytest.mark.parametrize("after", sorted(CANCEL_CASES))
def test_cancelled_sweep_keeps_finished_cells(uci, real_sweep, after):
    ev = uci[2]
    full, _ = real_sweep
    progress = []
    levels = (0.0, 1.0, 2.0)
    s = robustness_sweep(ev, modalities=list(SWEEP_MODALITIES), kinds=[SWEEP_KIND], levels=levels, split="tiny",
                         progress=progress.append, cancel=lambda: len(progress) >= after)
    filled = np.array(CANCEL_CASES[after], bool)
    assert not s.complete and s.samples == 24
    assert progress == pytest.approx([k / 6 for k in range(1, filled.sum() + 1)])
    for name in ("accuracy", "mean_steps", "converged_fraction", "noise_estimate", "pe_estimate"):
        arr = getattr(s, name)
        assert arr.shape == (2, 3)
        assert_same(np.isfinite(arr), filled)
        # what was finished is what the full sweep has at those levels
        assert_same(arr[filled], getattr(full, name)[:, :3][filled])
    assert s.baseline_accuracy is None
    assert_same(s.extra["predictions"][~filled], np.full((int((~filled).sum()), 24), -1))
    assert_same(s.extra["predictions"][filled], full.extra["predictions"][:, :3][filled])
    # rank correlations over the levels each curve reached: NaN when it reached fewer than two
    # (one level is a constant severity); an unfinished curve has no AUC
    for c in range(2):
        reached = filled[c].sum()
        assert np.isnan(s.noise_spearman[c]) == (reached < 2)
        assert np.isnan(s.auc[c]) == (reached < 3)


def test_sweep_of_an_untrained_model_without_solver_or_udml(untrained):
    s = robustness_sweep(untrained, levels=(0.0, 2.5, 5.0), split="test")
    assert s.complete and s.modality.tolist() == ["strong", "weak", "picture"]
    assert s.accuracy.shape == (3, 3) and np.isfinite(s.accuracy).all()
    assert np.isnan(s.mean_steps).all() and np.isnan(s.converged_fraction).all()  # no solver: not applicable
    assert s.to_json()["weak"]["mean_steps"] == [None] * 3 and s.to_json()["weak"]["converged_fraction"] == [None] * 3
    assert np.isnan(s.noise_estimate).all() and np.isnan(s.pe_estimate).all()  # no UDML
    assert np.isnan(s.noise_spearman).all() and np.isnan(s.pe_spearman).all()
    assert s.to_json()["weak"]["noise_estimate"] == [None, None, None]
    ids = untrained.dataset.split("test")
    assert s.accuracy[1, 2] == untrained.run(ids, {"weak": Corruption("gaussian", 5.0)}).accuracy
    with pytest.raises(ValueError, match="no solver"):
        convergence_stats(untrained)
    with pytest.raises(ValueError, match="no fixed point"):
        untrained.fixed_point_problem(ids[:2])
    with pytest.raises(ValueError, match="no fixed point"):
        solver_race(untrained, ids[:2])


# ------------------------------------------------------------------------------------- tipping points

@pytest.fixture(scope="module")
def tip_by_hand(uci):
    _, ds, ev = uci
    ids = ds.split("tipping")  # two samples each flipping first at two severities, two never (see ``uci``)
    clean = ev.run(ids)
    runs = [ev.run(ids, {"fou": Corruption("shuffle", level, 0)}) for level in TIP_LEVELS]
    flipped = np.array([r.predictions != clean.predictions for r in runs])
    broke = np.array([~r.converged & clean.converged for r in runs])
    return ids, clean, first_level(TIP_LEVELS, flipped), first_level(TIP_LEVELS, broke)


def test_tipping_points_are_the_first_flipping_level(uci, tip_by_hand, tmp_path):
    ev = uci[2]
    ids, clean, flip, diverge = tip_by_hand
    progress = []
    tp = tipping_points(ev, ids, "fou", "shuffle", levels=TIP_LEVELS, progress=progress.append)
    assert tp.modality == "fou" and tp.kind == "shuffle"
    assert_same(tp.levels, TIP_LEVELS) and assert_same(tp.sample_ids, ids)
    assert_same(tp.clean_prediction, clean.predictions) and assert_same(tp.labels, clean.labels)
    assert_same(tp.flip, flip)
    assert_same(tp.diverge, diverge)
    assert progress == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    # the chosen samples make it a real test: some flip (at different levels), some never do
    assert np.isnan(flip).any() and len(set(flip[np.isfinite(flip)])) >= 2

    header, rows = read_csv(tp.to_csv(tmp_path / "tp.csv"))
    assert header == ["sample", "label", "clean_prediction", "flip_severity", "diverge_severity"]
    assert [int(r[0]) for r in rows] == ids.tolist()
    assert [int(r[2]) for r in rows] == clean.predictions.tolist()
    assert_same([num(r[3]) for r in rows], flip)
    arrays, attrs = read_hdf5(tp.to_hdf5(tmp_path / "tp.h5"), "tipping_points")
    assert attrs == {"modality": "fou", "kind": "shuffle", "complete": True}
    assert_same(arrays["flip"], flip) and assert_same(arrays["sample_ids"], ids)


def test_cancelled_tipping_points(uci, tip_by_hand):
    ev = uci[2]
    ids, _, flip, _ = tip_by_hand
    progress = []
    # stopped after the first three levels: flips found up to severity 3 stay, later ones are not seen
    tp = tipping_points(ev, ids, "fou", "shuffle", levels=TIP_LEVELS, progress=progress.append,
                        cancel=lambda: len(progress) >= 3)
    assert len(progress) == 3
    assert_same(tp.flip, np.where(flip <= 3, flip, np.nan))
    assert not tp.complete
    # cancelled before the clean evaluation: an empty, incomplete result, as a sweep cancelled at once
    empty = tipping_points(ev, ids, "fou", "shuffle", levels=TIP_LEVELS, cancel=lambda: True)
    assert not empty.complete and np.isnan(empty.flip).all() and np.isnan(empty.diverge).all()
    assert (empty.clean_prediction == -1).all()
    assert_same(empty.labels, ev.dataset.labels[ids])
    with pytest.raises(ValueError, match="does not apply"):
        tipping_points(ev, ids, "fou", "blur")


# -------------------------------------------------------------------------------- fixed-point problem

def test_fixed_point_problem_reproduces_the_models_solve(uci):
    _, ds, ev = uci
    model, config = ev.adapter.model, ev.adapter.config
    ids = ds.split("few")
    for corruptions in (None, {"fou": Corruption("gaussian", 3.0, 0)}):
        problem = ev.fixed_point_problem(ids, corruptions)
        f, z0 = problem.f, problem.z0
        assert z0.shape == (8, (len(ev.names) + 1) * config.hidden) and not z0.any()
        z, trace = solve(f, z0, solver=config.solver, max_iter=config.max_iter, tol=config.tol,
                         stop_mode=config.stop_mode)
        r = ev.run(ids, corruptions)
        assert_same(trace.nstep, r.steps)
        assert_same(trace.converged, r.converged)
        np.testing.assert_allclose(trace.final_rel, r.final_rel, rtol=1e-6)
        with torch.no_grad():
            out = model([torch.from_numpy(a) for a in ev.inputs(ids, corruptions)])
            np.testing.assert_allclose(z.numpy(), out.z_star.numpy(), rtol=1e-5, atol=1e-6)
            # z* is a fixed point to the model's tolerance, and the head on its fused block gives the predictions
            fz = f(z)
            rel = ((fz - z).norm(dim=1) / fz.norm(dim=1)).numpy()
            logits = model.head(model.fusion.block.fused(z))
        assert (rel <= 10 * config.tol).all()
        assert_same(logits.argmax(1).numpy(), r.predictions)


# ------------------------------------------------------------------------------ convergence statistics

@pytest.fixture(scope="module")
def conv(uci):
    ev = uci[2]
    progress = []
    cs = convergence_stats(ev, split="few", max_iter=MAX_ITER, model_name="uci_deq_udml.pt", progress=progress.append)
    return cs, progress


def test_convergence_stats(uci, conv):
    _, ds, ev = uci
    cs, progress = conv
    ids = ds.split("few")
    tol = ev.adapter.config.tol
    assert cs.complete and cs.tol == tol and cs.max_iter == MAX_ITER and cs.split == "few"
    assert cs.solvers.tolist() == list(SOLVERS) and progress == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert_same(cs.sample_ids, ids)
    assert cs.steps.shape == cs.final_rel.shape == cs.converged.shape == (3, 8)
    assert ((cs.steps >= 1) & (cs.steps <= MAX_ITER)).all()
    assert (cs.final_rel[cs.converged] <= tol).all()
    assert cs.converged.all()  # ``few`` was chosen for converging with every solver (see ``uci``)
    assert cs.wall_s.shape == (3,) and (cs.wall_s > 0).all()
    for s, solver in enumerate(SOLVERS):
        r = ev.run(ids, settings=SolverSettings(solver=solver, max_iter=MAX_ITER, tol=tol, stop_mode="rel"))
        assert_same(cs.steps[s], r.steps)
        assert_same(cs.converged[s], r.converged)
    # per-step curves over the whole horizon; the first step from z0 = 0 is the same for every solver,
    # and its residual f(0) - 0 relative to f(0) is 1 (up to the 1e-9 guard)
    for curve in (cs.mean_rel_per_step, cs.mean_fused_rel_per_step):
        assert curve.shape == (3, MAX_ITER) and np.isfinite(curve).all()
        np.testing.assert_allclose(curve[:, 0], 1.0, atol=1e-6)
    table = cs.fused_at()
    assert table.shape == (3, len(TABLE_STEPS))
    for i, step in enumerate(TABLE_STEPS):
        if step <= MAX_ITER:
            assert_same(table[:, i], cs.mean_fused_rel_per_step[:, step - 1])
        else:
            assert np.isnan(table[:, i]).all()


def test_convergence_stats_exports(tmp_path, conv):
    cs, _ = conv
    header, rows = read_csv(cs.to_csv(tmp_path / "c.csv"))
    assert header == ["solver", "step", "mean_rel_residual", "mean_fused_rel_residual"]
    assert len(rows) == 3 * MAX_ITER
    assert [r[0] for r in rows[::MAX_ITER]] == list(SOLVERS)
    assert [int(r[1]) for r in rows[:MAX_ITER]] == list(range(1, MAX_ITER + 1))
    assert_same(np.array([float(r[2]) for r in rows]).reshape(3, MAX_ITER), cs.mean_rel_per_step)
    assert_same(np.array([float(r[3]) for r in rows]).reshape(3, MAX_ITER), cs.mean_fused_rel_per_step)
    arrays, attrs = read_hdf5(cs.to_hdf5(tmp_path / "c.h5"), "convergence")
    assert arrays["solvers"].tolist() == list(SOLVERS)
    for name in ("sample_ids", "steps", "final_rel", "converged", "wall_s", "mean_rel_per_step",
                 "mean_fused_rel_per_step"):
        assert_same(arrays[name], getattr(cs, name))
    assert attrs == {"model": "uci_deq_udml.pt", "split": "few", "tol": cs.tol, "max_iter": MAX_ITER,
                     "complete": True}


def test_cancelled_convergence_stats_keeps_finished_solvers(uci, conv):
    ev = uci[2]
    full, _ = conv
    progress = []
    cs = convergence_stats(ev, split="few", max_iter=MAX_ITER, progress=progress.append,
                           cancel=lambda: len(progress) >= 1)
    assert not cs.complete and len(progress) == 1
    assert_same(cs.steps[0], full.steps[0]) and assert_same(cs.mean_rel_per_step[0], full.mean_rel_per_step[0])
    # the solvers not reached: no steps, no residuals, no time
    assert (cs.steps[1:] == 0).all() and not cs.converged[1:].any()
    assert np.isnan(cs.final_rel[1:]).all() and np.isnan(cs.wall_s[1:]).all()
    assert np.isnan(cs.mean_rel_per_step[1:]).all() and np.isnan(cs.mean_fused_rel_per_step[1:]).all()


# -------------------------------------------------------------------------------------- solver race

def test_solver_race(uci, tmp_path):
    _, ds, ev = uci
    config = ev.adapter.config
    ids = ds.split("few")[:5]
    race = solver_race(ev, ids, max_iter=MAX_ITER)
    assert race.solvers.tolist() == [*SOLVERS, "unrolled"]
    assert_same(race.sample_ids, ids)
    assert race.rel_per_step.shape == (4, MAX_ITER) and np.isfinite(race.rel_per_step).all()
    np.testing.assert_allclose(race.rel_per_step[:, 0], 1.0, atol=1e-6)  # f(0) from z0 = 0 for everyone
    # K unrolled applications from zero: the trace records the K + 1 iterates z_0 .. z_K and keeps z_K = f^K(0)
    assert (race.evaluations[:3] <= MAX_ITER).all() and race.evaluations[3] == config.unrolled_steps + 1
    assert_same(race.converged_fraction[:3], [1.0, 1.0, 1.0])
    assert race.wall_ms.shape == (4,) and (race.wall_ms > 0).all()
    # by hand: the same solves on the same problem; disagreement relative to the first solver's z*
    problem = ev.fixed_point_problem(ids)
    f, z0 = problem.f, problem.z0
    zs, evals, curves = [], [], []
    runs = [(s, MAX_ITER, config.tol, False) for s in SOLVERS] + [("fixed_point", config.unrolled_steps + 1, 1e-30, True)]
    for solver, limit, tol, last in runs:
        z, trace = solve(f, z0, solver=solver, max_iter=limit, tol=tol, divergence_factor=None, return_final=last)
        zs.append(z.double())
        evals.append(trace.nstep.mean())
        curves.append(held_curve(trace.rel, trace.nstep, MAX_ITER).mean(axis=0))
    dis = [float(((z - zs[0]).norm(dim=1) / zs[0].norm(dim=1)).mean()) for z in zs]
    np.testing.assert_allclose(race.evaluations, evals)
    np.testing.assert_allclose(race.rel_per_step, np.stack(curves), rtol=1e-6)
    np.testing.assert_allclose(race.z_disagreement, dis, rtol=1e-5, atol=1e-12)
    assert race.z_disagreement[0] == 0
    # converged solvers agree to about the tolerance; ten unrolled steps are further off
    assert (race.z_disagreement[1:3] < 10 * config.tol).all()
    assert race.z_disagreement[3] > race.z_disagreement[1:3].max()

    header, rows = read_csv(race.to_csv(tmp_path / "race.csv"))
    assert header == ["solver", "step", "mean_rel_residual"] and len(rows) == 4 * MAX_ITER
    assert_same(np.array([float(r[2]) for r in rows]).reshape(4, MAX_ITER), race.rel_per_step)
    arrays, attrs = read_hdf5(race.to_hdf5(tmp_path / "race.h5"), "solver_race")
    assert attrs == {}
    assert arrays["solvers"].tolist() == race.solvers.tolist()
    for name in ("sample_ids", "rel_per_step", "evaluations", "wall_ms", "converged_fraction", "z_disagreement"):
        assert_same(arrays[name], getattr(race, name))
