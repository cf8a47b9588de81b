"""Shared fixtures: offscreen Qt, one session-wide qasync loop, a small trained checkpoint."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as deqstudio sets it, in case a test imports torch first

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_files(tmp_path_factory):
    """A synthetic dataset (with an image modality) and a deq-udml checkpoint trained on it briefly."""
    from deqstudio.io.checkpoint import save_checkpoint
    from deqstudio.io.dataset import write_dataset
    from deqstudio.io.synthetic import make_synthetic
    from deqstudio.io.training_run import TrainRequest, train_model

    folder = tmp_path_factory.mktemp("small")
    ds = make_synthetic(n=240, num_classes=4, seed=0)
    data = write_dataset(ds, folder / "syn.h5")
    model, metrics, dependency, info = train_model(
        ds, TrainRequest(fusion="deq-udml", epochs=10, hidden=16, device="cpu", jac_weight=1.0, batch_size=16))
    ck = save_checkpoint(folder / "syn.pt", model, metrics=metrics, dataset=ds.identity(), dependency=dependency,
                         training=info)
    return ck, data


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
    asyncio.ensure_future(win.open_files(ck, data))
    qtbot.waitUntil(lambda: win.session.result is not None and not win.runner.busy, timeout=60000)
    yield win
    win.close()
