"""The equilibrium analyses in the application: the session computes them after each solve (never before the plots,
stale ones dropped), `solve --json` and the sweep report them, the Stability panel draws them, exports keep them."""

import json

import h5py
import numpy as np
import pytest

from deqstudio.cli import main
from deqstudio.core.corruptions import Corruption
from deqstudio.core.equilibrium.report import EquilibriumReport, StartsOutcome
from deqstudio.diagnostics.equilibrium import EQUILIBRIUM_STATISTICS, cell_statistics, nonlinear_severity
from deqstudio.errors import Cancelled

EQUILIBRIUM_KEYS = {"spectral_radius", "contraction_observed", "coupling", "sensitivity", "sensitivity_share",
                    "predicted_shift", "inits"}
BLOCKS = {"strong", "weak", "picture", "fused"}
MODALITIES = {"strong", "weak", "picture"}


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.out, out.err


def test_solve_json_has_an_equilibrium_object_for_each_run(small_files, capsys):
    ck, data = small_files
    code, out, _ = _run(capsys, "solve", "--checkpoint", str(ck), "--dataset", str(data), "--sample", "3",
                        "--corrupt", "weak=gaussian:4", "--json")
    assert code == 0
    info = json.loads(out)
    for eq, corrupted in ((info["equilibrium"], True), (info["clean"]["equilibrium"], False)):
        assert set(eq) >= EQUILIBRIUM_KEYS
        assert eq["spectral_radius"] > 0 and eq["unstable"] == (eq["spectral_radius"] >= 1)
        assert set(eq["coupling"]) == BLOCKS and all(set(row) == BLOCKS for row in eq["coupling"].values())
        assert set(eq["sensitivity"]) == set(eq["sensitivity_share"]) == MODALITIES
        assert sum(eq["sensitivity_share"].values()) == pytest.approx(1.0)
        assert eq["inits"]["count"] == 6 and set(eq["inits"]) >= {"count", "max_distance", "agree"}
        assert eq["derivatives"] == "autograd"
        if corrupted:
            assert set(eq["predicted_shift"]) == set(eq["actual_shift"]) == BLOCKS
            for block, value in eq["actual_shift"].items():
                assert value == pytest.approx(info["equilibrium_shift"][block], rel=1e-5, abs=1e-7)
        else:
            assert eq["predicted_shift"] is None
    # only weak was corrupted: the linear response moves the other modality blocks only through the fused block
    assert info["equilibrium"]["predicted_shift"]["weak"] > 0


def test_solve_text_says_whether_the_equilibrium_is_stable_and_unique(small_files, capsys):
    ck, data = small_files
    code, out, _ = _run(capsys, "solve", "--checkpoint", str(ck), "--dataset", str(data), "--sample", "3",
                        "--corrupt", "strong=mask:3")
    assert code == 0 and "ρ(J)" in out and "sensitivity share" in out and "starts" in out


def test_a_model_without_a_fixed_point_has_no_equilibrium(capsys):
    from deqstudio.paths import models_dir

    code, out, _ = _run(capsys, "solve", "--checkpoint", str(models_dir() / "uci_concat.pt"), "--json")
    info = json.loads(out)
    assert code == 0 and info["equilibrium"] is None and info["clean"]["equilibrium"] is None


def test_the_session_analyses_each_shown_result_after_its_solve(small_files):
    from deqstudio.session.state import Session

    ck, data = small_files
    session = Session()
    session.start_solving(synchronous=True)
    order = []
    session.result_changed.connect(lambda r: order.append(("result", r.request.generation)))
    session.equilibrium_changed.connect(lambda e: order.append(("equilibrium", e.generation)))
    session.open(ck, data)
    session.set_corruption("weak", Corruption("gaussian", 3.0))
    first, second = session.result.request.generation - 1, session.result.request.generation
    assert order == [("result", first), ("equilibrium", first), ("result", second), ("equilibrium", second)]
    eq = session.equilibrium
    assert eq.sample == session.sample and eq.corrupted.predicted_shift is not None
    assert eq.clean.predicted_shift is None and eq.clean.spectral_radius > 0
    # an analysis of a result no longer shown is dropped
    stale = type(eq)(generation=first, sample=eq.sample, clean=eq.clean, corrupted=eq.clean)
    session.accept_equilibrium(stale)
    assert session.equilibrium is eq
    session.stop_solving()


def test_a_newer_solve_stops_a_running_analysis(small_files):
    from deqstudio.session.state import Session
    from deqstudio.session.values import EquilibriumRequest

    ck, data = small_files
    session = Session()
    session.open(ck, data)
    result = session.engine.solve(session.request())
    session.accept(result)
    request = EquilibriumRequest(result.request.generation, result)
    session.request()  # a newer solve was asked for
    with pytest.raises(Cancelled):
        session.engine_equilibrium(request)


def test_the_clean_report_is_kept_per_sample(small_files):
    from deqstudio.session.state import Session

    ck, data = small_files
    session = Session()
    session.open(ck, data)
    session.set_corruption("strong", Corruption("mask", 2.0))
    one = session.engine.equilibrium(session.engine.solve(session.request()))
    session.set_corruption("strong", Corruption("mask", 4.0))
    two = session.engine.equilibrium(session.engine.solve(session.request()))
    assert two.clean is one.clean and two.corrupted is not one.corrupted


def test_sweep_reports_spectral_radius_and_nonlinearity_per_level(small_files, capsys, tmp_path):
    ck, data = small_files
    csv_path, h5_path = tmp_path / "sweep.csv", tmp_path / "sweep.h5"
    code, out, _ = _run(capsys, "sweep", "--checkpoint", str(ck), "--dataset", str(data), "--modality", "weak",
                        "--json")
    assert code == 0
    entry = json.loads(out)["modalities"]["weak"]
    levels = entry["levels"]
    for key in ("spectral_radius_mean", "spectral_radius_p95", "unstable_fraction", "shift_ratio"):
        assert len(entry[key]) == len(levels)
    assert all(0 < m <= p for m, p in zip(entry["spectral_radius_mean"], entry["spectral_radius_p95"]))
    assert all(0 <= u <= 1 for u in entry["unstable_fraction"])
    assert entry["shift_ratio"][0] is None and all(r > 0 for r in entry["shift_ratio"][1:])
    assert "nonlinear_severity" in entry
    for path in (csv_path, h5_path):
        assert _run(capsys, "sweep", "--checkpoint", str(ck), "--dataset", str(data), "--modality", "weak",
                    "--out", str(path))[0] == 0
    header = csv_path.read_text().splitlines()[0].split(",")
    assert set(EQUILIBRIUM_STATISTICS) | {"nonlinear_severity"} <= set(header)
    with h5py.File(h5_path) as h5:
        g = h5["robustness"]
        np.testing.assert_allclose(g["spectral_radius_mean"][0], entry["spectral_radius_mean"], rtol=1e-12)
        assert g["nonlinear_severity"].shape == (1,)


def test_sweep_spectral_radius_is_the_mean_of_each_samples_radius(small_files):
    """A sweep cell's ρ statistics against the dense eigenvalues of each sample's Jacobian."""
    import torch

    from deqstudio.core.equilibrium import linearise
    from deqstudio.core.equilibrium.spectral import dense_radius
    from deqstudio.diagnostics.evaluation import Evaluator
    from deqstudio.diagnostics.robustness import robustness_sweep
    from deqstudio.io.checkpoint import load_checkpoint
    from deqstudio.io.dataset import read_dataset

    ck, data = small_files
    ev = Evaluator(load_checkpoint(ck).adapter, read_dataset(data))
    sweep = robustness_sweep(ev, modalities=["strong"], levels=(0.0, 2.0))
    ids = ev.dataset.split("test")
    run = ev.run(ids, {"strong": Corruption("gaussian", 2.0, 0)})
    problem = ev.fixed_point_problem(ids, {"strong": Corruption("gaussian", 2.0, 0)})
    rho = dense_radius(linearise(problem, torch.as_tensor(run.run.z_star)).dense())
    assert sweep.spectral_radius_mean[0, 1] == pytest.approx(rho.mean(), rel=1e-3)
    assert sweep.spectral_radius_p95[0, 1] == pytest.approx(np.percentile(rho, 95), rel=1e-2)
    assert sweep.unstable_fraction[0, 1] == pytest.approx((rho >= 1).mean(), abs=1.5 / len(rho))


def test_nonlinear_severity_is_the_first_level_beyond_twice():
    levels = np.array([0.0, 1.0, 2.0, 3.0])
    assert nonlinear_severity(levels, np.array([np.nan, 1.1, 2.5, 3.0])) == 2.0
    assert nonlinear_severity(levels, np.array([np.nan, 0.9, 0.45, 1.0])) == 2.0
    assert np.isnan(nonlinear_severity(levels, np.array([np.nan, 1.0, 1.9, 0.6])))
    stats = cell_statistics({"spectral_radius": np.array([0.5, 1.5, np.nan, 0.7]),
                             "shift_ratio": np.array([1.0, 3.0, np.nan, 2.0])})
    assert stats["spectral_radius_mean"] == pytest.approx(0.9) and stats["unstable_fraction"] == pytest.approx(1 / 3)
    assert stats["shift_ratio"] == 2.0


def test_trace_file_keeps_the_equilibrium(small_files, tmp_path):
    from deqstudio.session import headless
    from deqstudio.session.traces import read_trace_hdf5, write_trace_hdf5

    ck, data = small_files
    loaded = headless.load(ck, data)
    result = headless.solve(loaded, 3, ["picture=blur:3"])
    eq = headless.equilibrium(loaded, result)
    write_trace_hdf5(result, tmp_path / "t.h5", equilibrium=eq)
    back = read_trace_hdf5(tmp_path / "t.h5")
    got = back["corrupted"]["equilibrium"]
    assert got["spectral_radius"] == pytest.approx(eq.corrupted.spectral_radius)
    np.testing.assert_allclose(got["coupling"], eq.corrupted.coupling)
    np.testing.assert_allclose(got["predicted_shift"], eq.corrupted.predicted_shift)
    assert "predicted_shift" not in back["clean"]["equilibrium"]


def test_bench_measures_the_analysis_against_one_solve(small_files):
    from deqstudio.diagnostics.equilibrium import bench_equilibrium
    from deqstudio.io.checkpoint import load_checkpoint
    from deqstudio.io.dataset import read_dataset

    ck, data = small_files
    out = bench_equilibrium(load_checkpoint(ck).adapter, read_dataset(data), repeats=2)
    assert out["equilibrium_over_solve"] > 0 and out["solve_ms_median"] > 0 and out["starts"] == 6
    assert set(out["equilibrium_stages_ms_last"]) == {"jacobian", "spectral", "coupling", "sensitivity", "starts",
                                                      "response"}


# -- the Stability panel -----------------------------------------------------------------------------------------
def _wait_for_equilibrium(win, qtbot):
    s = win.session
    qtbot.waitUntil(lambda: s.result is not None and s.equilibrium is not None
                    and s.equilibrium.generation == s.result.request.generation and not win.runner.busy,
                    timeout=60000)
    return s.equilibrium


def test_the_stability_panel_shows_the_shown_samples_analysis(window, qtbot, tmp_path, converging_sample,
                                                              show_sample):
    show_sample(window, qtbot, converging_sample(window, qtbot))
    window.session.set_corruption("weak", Corruption("gaussian", 1.0))
    eq = _wait_for_equilibrium(window, qtbot)
    panel = window.stability
    assert panel.equilibrium is eq and panel.isVisible()
    text = panel.summary.text()
    assert "ρ(J)" in text and f"sample {window.session.sample}" in text and "agree" in text
    _, rows = panel.data_table()
    kinds = {r[0] for r in rows}
    assert {"spectral_radius", "coupling", "sensitivity_share", "predicted_shift", "actual_shift",
            "gate_share", "weight_share"} <= kinds
    coupling = {(r[2], r[3]): r[4] for r in rows if r[0] == "coupling" and r[1] == "corrupted"}
    assert coupling[("fused", "weak")] == pytest.approx(eq.corrupted.coupling[3, 1])
    assert panel.bars["sensitivity"].opts["height"] is not None
    window.grab().save(str(tmp_path / "window.png"))
    assert window.export_plot("stability", str(tmp_path / "stability.csv")), window.last_error
    assert (tmp_path / "stability.csv").read_text().startswith("quantity,run,key,key2,value")
    out = tmp_path / "report"
    assert window.export_report(str(out)), window.last_error
    assert (out / "stability.png").stat().st_size > 0 and "src='stability.png'" in (out / "report.html").read_text()
    assert "ρ(J)" in (out / "report.html").read_text()
    with h5py.File(out / "trace.h5") as h5:
        assert "equilibrium" in h5["corrupted"]


def test_with_nothing_corrupted_the_shift_plot_still_names_the_blocks(window, qtbot):
    eq = _wait_for_equilibrium(window, qtbot)
    assert eq.corrupted.predicted_shift is None  # the window opens on a clean sample
    item = window.stability.shift.getPlotItem()
    assert "nothing corrupted" in item.titleLabel.text
    ticks = item.getAxis("bottom")._tickLevels[0]
    assert [name for _, name in ticks] == list(eq.corrupted.block_names)
    assert item.vb.viewRange()[0] == pytest.approx([-0.6, len(ticks) - 0.4])


def test_a_new_result_marks_the_panel_as_updating(window, qtbot):
    _wait_for_equilibrium(window, qtbot)
    panel = window.stability
    window.session.set_corruption("strong", Corruption("mask", 3.0))
    qtbot.waitUntil(lambda: window.session.result.severities["strong"] == 3.0, timeout=30000)
    if window.session.equilibrium.generation != window.session.result.request.generation:
        assert "updating" in panel.state.text()
    _wait_for_equilibrium(window, qtbot)
    assert panel.state.text() == ""


def _report(rho: float, agree_distance: float, blocks=("a", "b", "fused"), modalities=("a", "b")) -> EquilibriumReport:
    n = len(blocks)
    starts = StartsOutcome(count=6, converged=6, max_distance=agree_distance, threshold=1e-3)
    return EquilibriumReport(
        block_names=blocks, modality_names=modalities, derivatives="finite-difference", spectral_radius=rho,
        spectral_method="arnoldi", spectral_steps=20, contraction_observed=0.9, coupling=np.eye(n) * rho,
        labels=(0,), sensitivity=np.array([[0.2, 0.6]]), adjoint=[], starts=starts,
        predicted_shift=np.array([0.1, 0.2, 0.3]), actual_shift=np.array([0.5, 0.2, 0.9]), predicted_total=0.4,
        actual_total=1.2)


def test_an_unstable_equilibrium_and_disagreeing_starts_raise_alarms(qtbot, tmp_path):
    """The panel on its own, drawing a constructed analysis: ρ ≥ 1 and two equilibria, said loudly."""
    from types import SimpleNamespace

    from deqstudio.core.adapter import Capabilities
    from deqstudio.gui.plots.stability import StabilityPanel
    from deqstudio.session.values import EquilibriumResult

    panel = StabilityPanel()
    qtbot.addWidget(panel)
    panel.resize(460, 540)
    panel.show()
    run = SimpleNamespace(gate_share=np.array([[0.5, 0.5]]), best_step=0, weights=np.array([1.5, 0.5]))
    result = SimpleNamespace(corrupted=run, clean=SimpleNamespace(), fusion="deq", modality_names=("a", "b"),
                             capabilities=Capabilities(solver=True, gates=True))
    eq = EquilibriumResult(generation=1, sample=5, clean=_report(0.8, 1e-5), corrupted=_report(1.25, 0.3))
    panel.show_equilibrium(result, eq)
    qtbot.wait(20)  # the layout settles before the picture
    text = panel.summary.text()
    assert "unstable" in text and "cannot converge" in text and "DISAGREE" in text and "non-linear" in text
    panel.grab().save(str(tmp_path / "alarm.png"))


def test_a_delayed_request_made_stale_never_runs(event_loop_qt, qtbot):
    """The analysis runner: a request waits its delay; one dropped (a newer solve) meanwhile never runs, and one
    submitted while another waited waits its own delay before running."""
    import asyncio
    import time
    from types import SimpleNamespace

    from deqstudio.session.runner import Runner

    ran, delivered = [], []

    async def scenario():
        runner = Runner(lambda req: ran.append((req.generation, time.perf_counter())) or req.generation,
                        delivered.append)
        runner.submit(SimpleNamespace(generation=1), delay=0.05)
        runner.drop()
        await asyncio.sleep(0.02)
        runner.submit(SimpleNamespace(generation=2), delay=0.05)  # waits behind the sleeping first
        runner.drop()
        await asyncio.sleep(0.15)
        assert not runner.busy
        start = time.perf_counter()
        runner.submit(SimpleNamespace(generation=3), delay=0.05)
        await asyncio.sleep(0.03)
        runner.submit(SimpleNamespace(generation=4), delay=0.05)  # 3 is stale now; 4 waits a delay of its own
        await runner.wait_idle(5)
        runner.shutdown()
        return start

    task = asyncio.ensure_future(scenario())
    qtbot.waitUntil(task.done, timeout=10000)
    start = task.result()
    assert [g for g, _ in ran] == [4] and delivered == [4]
    assert ran[0][1] - start >= 0.09
