"""Shared fixtures: offscreen Qt, one session-wide qasync loop, the small committed checkpoint and dataset,
and a guard that gives every test the process state it started with."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as deqstudio sets it, in case a test imports torch first
# the sweeps' progress files (deqstudio.diagnostics.sweep_store) go to a fresh folder, never the user's cache
os.environ["XDG_CACHE_HOME"] = __import__("tempfile").mkdtemp(prefix="deqstudio-tests-cache-")

import shutil
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


def pytest_terminal_summary(terminalreporter, config):
    """Name the random order's seed also under -q (pytest-randomly prints it only in the header)."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and config.pluginmanager.has_plugin("randomly"):
        terminalreporter.write_line(f"tests ran in random order, seed {seed}: --randomly-seed={seed} repeats it, "
                                    "-p no:randomly runs them in file order")


@pytest.fixture(autouse=True)
def restore_process_state():
    """Put back what a test may change for the whole process: torch's intra-op thread count, default dtype,
    grad mode, deterministic-algorithms flag and global RNG; numpy's error handling and legacy global RNG;
    the environment variables and the working directory.

    Without it a test that sets, say, the thread count changes the numbers every later test sees, so
    results depend on the order the tests run in and on ``-k``.
    """
    import torch

    threads, dtype, grad = torch.get_num_threads(), torch.get_default_dtype(), torch.is_grad_enabled()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch_rng = torch.random.get_rng_state()
    np_err, np_rng = np.geterr(), np.random.get_state()
    environ, cwd = dict(os.environ), os.getcwd()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)
    torch.set_grad_enabled(grad)
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # setting it costs seconds the first time
        torch.use_deterministic_algorithms(deterministic)
    torch.random.set_rng_state(torch_rng)
    np.seterr(**np_err)
    np.random.set_state(np_rng)
    for key in set(os.environ) - set(environ) - {"PYTEST_CURRENT_TEST"}:
        del os.environ[key]
    for key, value in environ.items():
        if key != "PYTEST_CURRENT_TEST" and os.environ.get(key) != value:
            os.environ[key] = value
    if os.getcwd() != cwd:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def small_files(tmp_path_factory):
    """The committed synthetic dataset (4 classes; vectors ``strong`` and ``weak``, an 8 x 8 image
    ``picture``) and a small deq-udml checkpoint trained on it, copied so that no test can change them.

    They are files, not trained here: a model trained during the run depends on torch's thread count.
    ``scripts/make_test_fixtures.py`` rebuilds them.
    """
    folder = tmp_path_factory.mktemp("small")
    ck, data = folder / "syn.pt", folder / "syn.h5"
    shutil.copyfile(DATA / "syn.pt", ck)
    shutil.copyfile(DATA / "syn.h5", data)
    return ck, data


@pytest.fixture(scope="session")
def packages(small_files, tmp_path_factory):
    """The three models of ``tests/package_models.py`` exported at test time to DEQ packages (the native one
    and the 2-D one as folders, the tuple one as a zip), with their eager models: {label: (path, model)}."""
    import torch

    import package_models as pm
    from deqstudio.io.checkpoint import load_checkpoint
    from deqstudio.io.dataset import read_dataset

    ck_path, data = small_files
    ds = read_dataset(data)
    example = {n: torch.as_tensor(x) for n, x in zip(pm.SIZES, ds.arrays(list(pm.SIZES), ds.split("train")[:8]))}
    folder = tmp_path_factory.mktemp("packages")
    exporter = pm.exporter()
    checkpoint = load_checkpoint(ck_path)
    model = checkpoint.model
    tuple_model, attention_model = pm.TupleDEQ(), pm.AttentionDEQ()
    out = {"native": (folder / "native", model), "tuple": (folder / "tuple.zip", tuple_model),
           "attention": (folder / "attention", attention_model)}
    specs = {"native": pm.native_spec(model, example, checkpoint.dependency.get("logit_magnitude")), "tuple": pm.tuple_spec(tuple_model, example),
             "attention": pm.attention_spec(attention_model, example)}
    for label, (path, _) in out.items():
        differences = exporter.export_package(path, quiet=True, **specs[label])
        assert max(differences.values()) < 1e-4, (label, differences)
    return out


@pytest.fixture(scope="session")
def event_loop_qt(qapp):
    """The one qasync loop for the whole test session, running inside Qt's own event loop."""
    import asyncio

    import qasync

    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    return loop


@pytest.fixture
def window(qtbot, event_loop_qt, small_files, tmp_path, monkeypatch):
    """The studio window on the small synthetic checkpoint and dataset, first solve done."""
    import asyncio

    from deqstudio.gui.main_window import MainWindow
    from deqstudio.session.recent import RecentFiles

    ck, data = small_files
    win = MainWindow(recent=RecentFiles(tmp_path / "recent.json"))
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    opening = asyncio.ensure_future(win.open_files(ck, data))
    qtbot.waitUntil(lambda: opening.done() and win.session.result is not None and not win.runner.busy, timeout=60000)
    yield win
    win.close()


class SolveCounter:
    """Wraps an engine's ``solve`` to count the solves that ran and how many ran at once."""

    def __init__(self, engine) -> None:
        import threading

        self._lock = threading.Lock()
        self._real = engine.solve
        self.started = self.finished = self.running = self.most_at_once = 0
        self.requests = []

    def __call__(self, request):
        with self._lock:
            self.started += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.requests.append(request)
        try:
            return self._real(request)
        finally:
            with self._lock:
                self.running -= 1
                self.finished += 1


@pytest.fixture
def count_solves(monkeypatch):
    """``count_solves(window)``: from now on, count the solves of the window's engine."""

    def install(win) -> SolveCounter:
        engine = win.session.engine
        counter = SolveCounter(engine)
        monkeypatch.setattr(engine, "solve", counter)
        return counter

    return install


def _converging_sample(win, qtbot, exclude=()) -> int:
    """The test sample the open model solves cleanly in the fewest steps (from the samples table)."""
    qtbot.waitUntil(lambda: win.session.table is not None and win.session.table.complete, timeout=60000)
    t = win.session.table
    ok = t.converged & ~np.isin(t.indices, list(exclude))
    assert ok.any(), "the model converges on no sample of the split"
    return int(t.indices[ok][np.argmin(t.steps[ok])])


@pytest.fixture
def converging_sample():
    """``converging_sample(window, qtbot, exclude=())``: a sample chosen for converging, not by position."""
    return _converging_sample


@pytest.fixture
def show_sample():
    """``show_sample(window, qtbot, sample)``: select ``sample`` as a user would and wait for its solve."""

    def show(win, qtbot, sample: int):
        win.open_sample_with(sample)
        qtbot.waitUntil(lambda: win.session.result.request.sample == sample and not win.runner.busy, timeout=30000)
        return win.session.result

    return show
