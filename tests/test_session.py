"""The Qt-free session: engine results, requests, the newest-wins runner, session files."""

import asyncio
import threading
from dataclasses import dataclass

import numpy as np
import pytest

from deqstudio.core.corruptions import Corruption
from deqstudio.core.solvers import SolverSettings
from deqstudio.session.runner import Runner
from deqstudio.session.state import LoadError, Session


@pytest.fixture
def session(small_files):
    ck, data = small_files
    s = Session()
    s.open(ck, data)
    return s


def test_engine_solves_clean_and_corrupted(session):
    session.set_corruption("strong", Corruption("gaussian", 5.0, seed=1))
    result = session.engine.solve(session.request())
    info = session.info
    assert info.block_names == ("strong", "weak", "picture", "fused")
    for run in (result.clean, result.corrupted):
        k = run.nstep
        assert run.rel.shape == (k,) and run.block_rel.shape == (k, 4)
        assert run.probabilities.shape == (k, 4) and run.gates.shape == (k, 3)
        np.testing.assert_allclose(run.probabilities[run.best_step], run.final_probabilities, rtol=1e-4, atol=1e-6)
        assert run.sigma_hat.shape == (3,) and run.weights.sum() == pytest.approx(3.0, rel=1e-5)
    assert result.shift.shape == (4,) and result.shift[0] > 0
    before, after = result.images["picture"]
    assert before.shape == (8, 8) and np.array_equal(before, after)  # picture was not corrupted
    # the clean run is cached: a second request reuses it
    again = session.engine.solve(session.request())
    assert again.clean is result.clean


def test_corrupting_the_image_changes_the_after_picture(session):
    session.set_corruption("picture", Corruption("impulse", 5.0))
    result = session.engine.solve(session.request())
    before, after = result.images["picture"]
    assert not np.array_equal(before, after)
    with pytest.raises(ValueError, match="does not apply"):
        session.set_corruption("weak", Corruption("blur", 1.0))


def test_browse_table_covers_the_split(session):
    table = session.engine.browse("test")
    n = len(session.dataset.split("test"))
    assert table.indices.shape == table.steps.shape == table.final_rel.shape == (n,)
    assert table.correct.mean() > 0.4


def test_mismatched_dataset_is_a_clear_load_error_and_keeps_the_old(session, tmp_path):
    from deqstudio.io.dataset import write_dataset
    from deqstudio.io.synthetic import SyntheticModality, make_synthetic

    other = make_synthetic(n=60, num_classes=4, modalities=(SyntheticModality("audio", 5),), seed=2)
    path = write_dataset(other, tmp_path / "other.h5")
    before = session.dataset
    with pytest.raises(LoadError, match="modality 'strong' is missing"):
        session.open(dataset_path=path)
    assert session.dataset is before and session.engine is not None


@dataclass(frozen=True)
class _Req:
    generation: int
    value: int


def _run_own_loop(scenario):
    """Run a coroutine on a private loop in its own thread: the GUI tests keep a qasync loop running on
    the main thread for the whole session, and asyncio allows one running loop per thread."""
    out = {}

    def target():
        out["value"] = asyncio.run(scenario())

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "scenario did not finish"
    return out["value"]


def test_runner_newest_wins_and_drops_stale():
    delivered, ran = [], []
    gate = threading.Event()

    def work(req):
        ran.append(req.value)
        gate.wait(5)
        return req.value

    async def scenario():
        runner = Runner(work, delivered.append)
        for g in range(1, 201):
            runner.submit(_Req(g, g))
        gate.set()
        await runner.wait_idle()
        runner.shutdown()
        return runner

    _run_own_loop(scenario)
    # the first request was in flight, 199 replaced each other in the waiting slot: the first is stale
    # (dropped), the last is delivered; nothing else ran
    assert ran == [1, 200]
    assert delivered == [200]


def test_session_file_round_trip(session, tmp_path):
    session.set_corruption("weak", Corruption("mask", 2.5, seed=3))
    session.set_solver(SolverSettings(solver="broyden", max_iter=30))
    session.set_sample(int(session.dataset.split("test")[3]))
    path = session.save(tmp_path / "s.json")
    other = Session()
    other.load(path)
    assert other.corruptions["weak"] == Corruption("mask", 2.5, seed=3)
    assert other.solver.solver == "broyden" and other.sample == session.sample
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LoadError, match="not a readable session file"):
        other.load(tmp_path / "bad.json")


def test_an_analysis_runs_on_its_own_copy_of_the_model(session):
    """Moving or changing the studio's model while an analysis runs must not change (or break) the analysis."""
    import torch

    from deqstudio.session.analyses import convergence_job

    undisturbed = convergence_job(session.engine, "test", solvers=("anderson",), max_iter=30).start()
    assert undisturbed.wait(120) and not undisturbed.error
    job = convergence_job(session.engine, "test", solvers=("anderson",), max_iter=30)
    with torch.no_grad():  # what a device move or another checkpoint would do to the studio's model
        for p in session.engine.adapter.model.parameters():
            p.mul_(-3.0)
    job.start()
    assert job.wait(120) and not job.error
    np.testing.assert_array_equal(job.result.steps, undisturbed.result.steps)
    np.testing.assert_allclose(job.result.final_rel, undisturbed.result.final_rel)


def test_a_gpu_notice_lasts_only_while_the_gpu_is_asked_for_and_solves_restore_the_thread_count(session):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this checks the fallback of a machine without CUDA")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        session.set_device("cuda")
        result = session.engine.solve(session.request())
        assert result.device == "cpu" and "CUDA is not available" in result.notice
        assert torch.get_num_threads() == 2  # a solve uses one thread but must not leave the process on one
        session.set_device("cpu")
        assert session.engine.solve(session.request()).notice == ""
    finally:
        torch.set_num_threads(before)  # nor may this test: later tests run on the thread count they were given
