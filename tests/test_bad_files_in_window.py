"""Every file of the bad corpus through File › Open: a one-line message, no payload run, the app keeps working."""

import asyncio
import json
import os
import tempfile
from pathlib import Path

import pytest

from deqstudio.core.corruptions import Corruption

from deqstudio.paths import default_checkpoint

BAD = Path(__file__).parent / "data" / "bad"
MANIFEST = json.loads((BAD / "MANIFEST.json").read_text())
SINGLES = sorted((name, e) for name, e in MANIFEST["files"].items() if not e.get("valid_alone"))


def _marker() -> Path:
    spec = MANIFEST["payload_marker"]
    return Path(os.environ.get(spec["env"], os.path.join(tempfile.gettempdir(), "deqstudio_payload_ran")))


def _open(qtbot, win, **files):
    done = asyncio.ensure_future(win.open_files(**files))
    qtbot.waitUntil(done.done, timeout=60000)
    return done.result()


def test_every_bad_file_is_refused_with_a_message_and_the_window_keeps_working(window, qtbot):
    _marker().unlink(missing_ok=True)
    s = window.session
    before = (s.checkpoint.path, s.dataset.path)
    for name, entry in SINGLES:
        window.hide_message()
        if entry["target"] == "session":  # File › Load session
            settings = (s.solver, s.sample, dict(s.corruptions))
            window.load_session(str(BAD / name))
            assert (s.solver, s.sample, dict(s.corruptions)) == settings, name
        else:
            assert not _open(qtbot, window, **{entry["target"]: str(BAD / name)}), name
        text = window.banner.text()
        assert window.banner.isVisible() and text.isprintable() and "Traceback" not in text, (name, text)
        keyword = entry.get("loader_keyword", entry["keyword"])  # File › Open uses the loaders, as the session does
        assert keyword in text, (name, keyword, text)
        assert (s.checkpoint.path, s.dataset.path) == before, name
    assert not _marker().exists()  # no payload ran
    # still working: a corruption re-solves the sample with what was open
    window.open_sample_with(s.sample, dict([Corruption.parse("strong=gaussian:2")]))
    qtbot.waitUntil(lambda: s.result.request.corruption_specs() == ["strong=gaussian:2"], timeout=30000)


@pytest.mark.parametrize("pair", MANIFEST["pairs"], ids=lambda p: f"{p['checkpoint']}+{p['dataset']}")
def test_a_checkpoint_and_dataset_that_do_not_fit_are_refused(window, qtbot, pair):
    ck = default_checkpoint() if pair["checkpoint"] == "@default" else BAD / pair["checkpoint"]
    before = window.session.checkpoint.path
    assert not _open(qtbot, window, checkpoint=str(ck), dataset=str(BAD / pair["dataset"]))
    assert pair["keyword"] in window.banner.text()
    assert window.session.checkpoint.path == before


def test_a_fifo_as_session_or_recent_file_answers_at_once(window, qtbot, tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    s = window.session
    before = (s.checkpoint.path, s.dataset.path, s.solver, s.sample)
    window.load_session(str(fifo))  # would block the window forever if it were opened
    assert "named pipe" in window.banner.text()
    window.hide_message()
    window.open_path(str(fifo))  # drag-and-drop or Open Recent
    assert "named pipe" in window.banner.text()
    assert (s.checkpoint.path, s.dataset.path, s.solver, s.sample) == before


def test_a_session_saved_on_cuda_opens_on_the_cpu_and_says_so(window, qtbot, tmp_path, small_files):
    from deqstudio.core.device import available_devices

    if "cuda" in available_devices():
        pytest.skip("this machine has CUDA: the session's device is available")
    ck, data = small_files
    path = tmp_path / "cuda-session.json"
    path.write_text(json.dumps({"format": "deqstudio-session", "version": 1, "checkpoint": str(ck),
                                "dataset": str(data), "sample": int(window.session.dataset.split("test")[2]),
                                "solver": {"solver": "anderson", "device": "cuda"}}))
    window.load_session(str(path))
    message = window.statusBar().currentMessage() + " " + (window.banner.text() if window.banner.isVisible() else "")
    assert "CUDA is not available" in message and "CPU" in message, message
    assert window.session.device == "cpu" and window.solver_panel.device.currentText() == "cpu"
    qtbot.waitUntil(lambda: window.session.result is not None and not window.runner.busy
                    and window.session.result.device == "cpu", timeout=60000)
