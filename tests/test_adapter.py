"""The one model interface (ModelAdapter), the one evaluation path, the public API and the small shared parts:
device policy, error texts, the runner's synchronous mode, the observable session."""

import numpy as np
import pytest
import torch

import deqstudio
from deqstudio.core.adapter import FUSED, NOT_PROVIDED, ModelAdapter, ModelRun
from deqstudio.core.corruptions import Corruption
from deqstudio.core.device import check_device_name, resolve_device
from deqstudio.core.evaluate import evaluate
from deqstudio.core.native import NativeAdapter
from deqstudio.core.solvers import SolverSettings, solve
from deqstudio.errors import DeqStudioError, InputError, WriteError, one_line, printable
from deqstudio.io.checkpoint import load_checkpoint, save_checkpoint
from deqstudio.io.dataset import read_dataset


@pytest.fixture(scope="module")
def opened(small_files):
    ck, data = small_files
    return load_checkpoint(ck), read_dataset(data)


def _inputs(adapter, ds, ids):
    return ds.arrays(adapter.modality_names, np.asarray(ids))


def test_a_native_checkpoint_is_a_model_adapter(opened):
    ck, ds = opened
    a = ck.adapter
    assert isinstance(a, ModelAdapter) and a is ck.adapter  # one adapter per checkpoint
    assert a.modality_names == ("strong", "weak", "picture") and a.class_names == ds.class_names
    assert [m.size for m in a.modalities] == [ds.modalities[n].dim for n in a.modality_names]
    assert a.modality("picture").kind == "image" and a.modality("picture").image_shape == (8, 8)
    assert a.block_names == ("strong", "weak", "picture", FUSED) and a.fused_block == FUSED
    assert all(b.size == ck.config.hidden for b in a.blocks)
    caps = a.capabilities
    assert caps.solver and caps.gates and caps.unimodal and caps.noise and caps.dependency
    assert a.solver_defaults == SolverSettings(ck.config.solver, ck.config.max_iter, ck.config.tol,
                                               ck.config.stop_mode, ck.config.solver_options)
    assert a.task == "multiclass" and a.source.kind == "native" and a.source.sha256 == ck.sha256
    np.testing.assert_array_equal(a.feature_scales[0], ck.model.normalisation()[1][0].numpy())
    with pytest.raises(ValueError, match="no modality 'sound'"):
        a.modality("sound")


def test_a_run_has_every_quantity_per_sample_and_what_is_absent_is_none(opened):
    ck, ds = opened
    ids = ds.split("test")[:5]
    run = ck.adapter(_inputs(ck.adapter, ds, ids), playback=True)
    m, c, d = 3, ds.num_classes, 4 * ck.config.hidden
    assert run.probabilities.shape == run.logits.shape == (5, c)
    np.testing.assert_allclose(run.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert run.z_star.shape == (5, d) and run.sigma_hat.shape == run.weights.shape == run.pe.shape == (5, m)
    assert run.energy.shape == (5, m)
    t = run.trace
    assert t.extras["probabilities"].shape[:2] == t.rel.shape and t.states is None
    best = t.extras["probabilities"][np.arange(5), t.best_step]
    np.testing.assert_allclose(best, run.probabilities, rtol=1e-4, atol=1e-6)  # the returned state's readout
    one = run.rows(np.array([2]))
    np.testing.assert_array_equal(one.probabilities, run.probabilities[2:3])
    assert one.trace.nstep[0] == t.nstep[2]


def test_models_without_a_solver_or_udml_say_so_in_their_capabilities(opened, tmp_path):
    from deqstudio.core.model import FusionModel
    from deqstudio.workflows.training import TrainRequest, build_config

    _, ds = opened
    torch.manual_seed(0)
    concat = NativeAdapter(FusionModel(build_config(ds, TrainRequest(fusion="concat", hidden=8))))
    caps = concat.capabilities
    assert not (caps.solver or caps.gates or caps.noise or caps.unimodal or caps.dependency)
    assert concat.blocks == () and concat.fused_block is None and concat.solver_defaults is None
    run = concat(_inputs(concat, ds, ds.split("test")[:3]))
    assert run.trace is None and run.z_star is None and run.sigma_hat is None and run.energy is None
    no_gate = NativeAdapter(FusionModel(build_config(ds, TrainRequest(fusion="deq", ablation="no-gate", hidden=8))))
    assert no_gate.capabilities.solver and not no_gate.capabilities.gates  # its gate admits nothing
    assert NOT_PROVIDED == "not provided by this model"


def test_one_evaluation_path_gives_the_same_numbers_in_any_batching(opened):
    """Batches are solved on their own and joined: the same equilibria as one batch (to a tight tolerance, since
    matrix products round differently per batch size), and the training loop's predictions are this path's."""
    ck, ds = opened
    ids = ds.split("test")
    x = _inputs(ck.adapter, ds, ids)
    tight = SolverSettings(tol=1e-6, max_iter=300)
    whole = evaluate(ck.adapter, x, settings=tight, batch_size=len(ids))
    pieces = evaluate(ck.adapter, x, settings=tight, batch_size=7)
    both = pieces.trace.converged & whole.trace.converged
    assert both.mean() > 0.8  # most samples reach the tight tolerance either way
    np.testing.assert_allclose(pieces.probabilities[both], whole.probabilities[both], atol=1e-3)
    np.testing.assert_array_equal(pieces.probabilities.argmax(1), whole.probabilities.argmax(1))
    assert pieces.trace.rel.shape == (len(ids), pieces.trace.nstep.max())  # joined, padded to the slowest
    assert np.isnan(pieces.trace.rel[np.arange(len(ids)), -1][pieces.trace.nstep < pieces.trace.nstep.max()]).all()
    from deqstudio.core.training import predict

    logits = predict(ck.model, [torch.from_numpy(a) for a in x], batch_size=11)
    np.testing.assert_array_equal(logits.numpy(), evaluate(ck.adapter, x, batch_size=11).logits)
    empty = evaluate(ck.adapter, [a[:0] for a in x])
    assert empty.probabilities.shape == (0, ds.num_classes)


def test_the_fixed_point_problem_is_the_map_the_model_solves(opened):
    ck, ds = opened
    ids = ds.split("test")[:6]
    x = _inputs(ck.adapter, ds, ids)
    problem = ck.adapter.fixed_point_problem(x)
    z, _ = solve(problem.f, problem.z0, tol=ck.config.tol, max_iter=ck.config.max_iter)
    run = ck.adapter(x)
    np.testing.assert_allclose(z.numpy(), run.z_star, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        readout = torch.softmax(problem.head(z), 1).numpy()
    np.testing.assert_allclose(readout, run.probabilities, rtol=1e-5, atol=1e-6)
    assert problem.layout.names == ck.adapter.block_names


def test_version_1_and_2_checkpoints_still_load(opened, tmp_path):
    """Version 1 kept an unread copy of the input normalisation beside the state dict; version 2 does not;
    version 3 adds the import record and the config fields task, encoder, normalise_inputs, relu_after_norm,
    which older files lack and load with their defaults."""
    ck, _ = opened
    path = save_checkpoint(tmp_path / "v3.pt", ck.model, metrics=ck.metrics, dataset=ck.dataset,
                           dependency=ck.dependency)
    payload = torch.load(path, weights_only=True)
    assert payload["version"] == 3 and "normalisation" not in payload and payload["imported"] == {}
    payload.pop("imported")
    for key in ("task", "encoder", "normalise_inputs", "relu_after_norm"):
        payload["config"].pop(key)
    for m in payload["config"]["modalities"]:
        m.pop("encoder_hidden")
    payload["version"] = 2
    torch.save(payload, tmp_path / "v2.pt")
    means, stds = ck.model.normalisation()
    names = ck.config.modality_names
    payload.update(version=1, normalisation={"mean": dict(zip(names, means)), "std": dict(zip(names, stds))})
    torch.save(payload, tmp_path / "v1.pt")
    for name in ("v1.pt", "v2.pt"):
        old = load_checkpoint(tmp_path / name)
        assert old.config == ck.config and old.imported == {} and old.adapter.source.kind == "native"
        for a, b in zip(old.model.state_dict().values(), ck.model.state_dict().values()):
            torch.testing.assert_close(a, b)


def test_the_public_api_is_small_and_lazy():
    import subprocess
    import sys

    assert set(deqstudio.__all__) == {"ModelAdapter", "SolverSettings", "SolverTrace", "__version__",
                                      "load_checkpoint", "read_dataset", "solve"}
    assert deqstudio.solve is solve and deqstudio.load_checkpoint is load_checkpoint
    code = "import sys, deqstudio; assert 'torch' not in sys.modules; deqstudio.SolverSettings; " \
           "assert 'torch' not in sys.modules; deqstudio.solve; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError):
        deqstudio.engine  # noqa: B018 — only the public names resolve


def test_the_readme_example_runs(monkeypatch):
    """The five-line example of README.md's "Python API" section, as written there, from the checkout's root."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    readme = (root / "README.md").read_text()
    block = re.search(r"## Python API.*?```python\n(.*?)```", readme, re.S)
    assert block, "README.md has a Python API section with an example"
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # our own README
    assert namespace["run"].probabilities.shape[0] == 8


def test_device_names_and_the_fallback():
    for ok in ("auto", "cpu", "cuda", "cuda:1"):
        assert check_device_name(ok) == ok
    for bad in ("tpu", "cuda:x", "", None, "CPU"):
        with pytest.raises(ValueError, match="unknown device"):
            check_device_name(bad)
    if torch.cuda.is_available():
        pytest.skip("the fallback of a machine without CUDA")
    assert resolve_device("auto").device == "cpu" and resolve_device("auto").notice == ""
    placed = resolve_device("cuda")
    assert placed.device == "cpu" and "CUDA is not available" in placed.notice
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda", strict=True)


def test_one_error_hierarchy_with_printable_one_line_messages():
    err = InputError("bad\nfile \x1b[31mred\x1b[0m")
    assert isinstance(err, DeqStudioError) and isinstance(err, ValueError)
    assert str(err) == "bad file \\x1b[31mred\\x1b[0m" and str(err).isprintable()
    assert isinstance(WriteError("x"), OSError) and isinstance(WriteError("x"), DeqStudioError)
    assert len(one_line("x" * 1000)) == 400 and printable(b"\xff\xfe") == "\\xff\\xfe"


def test_the_runner_in_synchronous_mode_delivers_before_submit_returns():
    from dataclasses import dataclass

    from deqstudio.session.runner import Runner

    @dataclass(frozen=True)
    class Request:
        generation: int

    delivered, failed = [], []
    runner = Runner(lambda r: r.generation * 10, delivered.append, lambda r, e: failed.append(e), synchronous=True)
    runner.submit(Request(1))
    runner.submit(Request(2))
    assert delivered == [10, 20] and not runner.busy
    broken = Runner(lambda r: 1 / 0, delivered.append, lambda r, e: failed.append(type(e)), synchronous=True)
    broken.submit(Request(3))
    assert failed == [ZeroDivisionError]


def test_the_solve_worker_uses_one_thread_without_changing_anyone_elses(opened, event_loop_qt, qtbot):
    """torch's thread count per thread: the worker's is 1; the main thread's stays, and an analysis started after
    the worker set its own runs on the process's count, not on the 1 torch would hand a new thread."""
    from deqstudio.session.analyses import AnalysisJob
    from deqstudio.session.state import Session

    ck, ds = opened
    before = torch.get_num_threads()
    session = Session()
    session.open(ck.path, ds.path)
    runner = session.start_solving()
    seen = {}
    real = session.engine.solve

    def solve_and_look(request):
        seen["worker"] = torch.get_num_threads()
        return real(request)

    session.engine.solve = solve_and_look
    session.solve()
    qtbot.waitUntil(lambda: session.result is not None and not runner.busy, timeout=30000)
    job = AnalysisJob("threads", lambda progress, cancel: torch.get_num_threads()).start()
    assert job.wait(30)
    session.stop_solving()
    assert seen["worker"] == 1 and torch.get_num_threads() == before and job.result == before


def test_views_follow_the_session(opened, qtbot):
    """A bare session in synchronous mode and the SolveView on it: setters solve, the view draws each result."""
    from deqstudio.gui.solve_view import SolveView
    from deqstudio.session.state import Session

    ck, ds = opened
    session = Session()
    session.start_solving(synchronous=True)
    view = SolveView(session)
    qtbot.addWidget(view)
    results = []
    session.result_changed.connect(results.append)
    session.open(ck.path, ds.path)
    assert len(results) == 1 and view.result is results[-1]
    session.set_corruption("strong", Corruption("gaussian", 3.0))
    assert len(results) == 2 and view.result.severities["strong"] == 3.0
    x, _ = view.residual.series("fused")
    assert len(x) == results[-1].corrupted.nstep
    session.set_step(0)
    assert view.step == 0 and view.probabilities.note.startswith("step 1:")
    session.set_corruptions({"strong": Corruption("gaussian", 0.0), "weak": Corruption("mask", 2.0)})
    assert len(results) == 3 and results[-1].request.corruption_specs() == ["weak=mask:2"]  # one solve
    session.stop_solving()


def test_model_run_rows_accept_slices():
    run = ModelRun(np.eye(3), np.eye(3))
    assert run.rows(slice(1, 3)).probabilities.shape == (2, 3) and len(run) == 3
