"""Every file of the bad corpus through File › Open: a one-line message, no payload run, the app keeps working."""

import asyncio
import json
import os
import tempfile
from pathlib import Path

import pytest

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
        key = "checkpoint" if entry["target"] == "checkpoint" else "dataset"
        assert not _open(qtbot, window, **{key: str(BAD / name)}), name
        text = window.banner.text()
        assert window.banner.isVisible() and "\n" not in text and "Traceback" not in text, (name, text)
        keyword = entry.get("loader_keyword", entry["keyword"])  # File › Open uses the loaders, as the session does
        assert keyword in text, (name, keyword, text)
        assert (s.checkpoint.path, s.dataset.path) == before, name
    assert not _marker().exists()  # no payload ran
    # still working: a corruption re-solves the sample with what was open
    window.open_sample_with(s.sample, "strong=gaussian:2")
    qtbot.waitUntil(lambda: s.result.request.corruption_specs() == ["strong=gaussian:2"], timeout=30000)


@pytest.mark.parametrize("pair", MANIFEST["pairs"], ids=lambda p: f"{p['checkpoint']}+{p['dataset']}")
def test_a_checkpoint_and_dataset_that_do_not_fit_are_refused(window, qtbot, pair):
    ck = default_checkpoint() if pair["checkpoint"] == "@default" else BAD / pair["checkpoint"]
    before = window.session.checkpoint.path
    assert not _open(qtbot, window, checkpoint=str(ck), dataset=str(BAD / pair["dataset"]))
    assert pair["keyword"] in window.banner.text()
    assert window.session.checkpoint.path == before
