"""Every file in the bad-input corpus (tests/data/bad, scripts/make_bad_corpus.py) is refused clearly.

For each file: ``deqstudio inspect`` exits non-zero with one ``error: ...`` line naming the problem and
no traceback, and its loader raises its own error class; hostile pickles never run; checkpoint and
dataset files that are each valid but do not fit together are a LoadError naming what differs.
"""

import json
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest

from deqstudio.cli import main
from deqstudio.io.checkpoint import CheckpointError, load_checkpoint
from deqstudio.io.dataset import DatasetError, read_dataset
from deqstudio.io.inspect import InspectError, describe
from deqstudio.paths import default_checkpoint, default_dataset
from deqstudio.session.state import LoadError, Session

ROOT = Path(__file__).resolve().parent.parent
BAD = Path(__file__).resolve().parent / "data" / "bad"
MANIFEST = json.loads((BAD / "MANIFEST.json").read_text())
FILES = MANIFEST["files"]
BROKEN = sorted(name for name, entry in FILES.items() if not entry.get("valid_alone"))
VALID_ALONE = sorted(name for name, entry in FILES.items() if entry.get("valid_alone"))
PAYLOADS = sorted(name for name, entry in FILES.items() if entry.get("payload"))
MARKER_ENV = MANIFEST["payload_marker"]["env"]
DEFAULT_MARKER = Path(tempfile.gettempdir()) / "deqstudio_payload_ran"
LOADERS = {"checkpoint": (load_checkpoint, CheckpointError), "dataset": (read_dataset, DatasetError)}


@pytest.fixture(scope="module", autouse=True)
def payload_marker(tmp_path_factory):
    """Point every payload at a marker in a fresh folder; whatever a test does, no marker may appear."""
    marker = tmp_path_factory.mktemp("payload") / "ran"
    DEFAULT_MARKER.unlink(missing_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(MARKER_ENV, str(marker))
        yield marker
    assert not marker.exists(), "a code payload in the corpus ran"
    assert not DEFAULT_MARKER.exists(), "a code payload in the corpus ran"


def _bad_path(name: str) -> Path:
    return default_checkpoint() if name == "@default" else BAD / name


def test_the_manifest_lists_exactly_the_corpus_and_it_is_small():
    on_disk = {p.name for p in BAD.iterdir()} - {"MANIFEST.json"}
    assert on_disk == set(FILES)
    assert len(BROKEN) >= 40 and len(PAYLOADS) >= 2
    sizes = {p.name: p.stat().st_size for p in BAD.iterdir()}
    assert sum(sizes.values()) < 600 * 1024
    assert max(sizes.values()) < 48 * 1024
    for name, entry in FILES.items():
        assert entry["target"] in LOADERS and entry["problem"], name
        assert entry.get("valid_alone") or entry["keyword"], name
    for pair in MANIFEST["pairs"]:
        assert (pair["checkpoint"] == "@default" or pair["checkpoint"] in VALID_ALONE) and pair["dataset"] in VALID_ALONE


def test_the_corpus_is_what_the_script_builds():
    """Deterministic and up to date: the script rebuilds every file byte for byte."""
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_bad_corpus.py"), "--check"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("name", BROKEN)
def test_inspect_prints_one_error_line_naming_the_problem(name, capsys):
    entry = FILES[name]
    for extra in ([], ["--json"]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = main(["inspect", str(BAD / name), *extra])
        out, err = capsys.readouterr()
        assert code != 0
        assert "Traceback" not in out + err
        assert out == ""
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"error: {name}: ")
        assert entry["keyword"] in lines[0]
        assert not [str(w.message) for w in caught]


@pytest.mark.parametrize("name", BROKEN)
def test_the_loader_raises_its_own_error_naming_the_problem(name):
    entry = FILES[name]
    load, error = LOADERS[entry["target"]]
    with pytest.raises(error) as info:
        load(BAD / name)
    message = str(info.value)
    assert message.startswith(f"{name}: ") and "\n" not in message
    assert entry.get("loader_keyword", entry["keyword"]) in message
    with pytest.raises(InspectError):
        describe(BAD / name)


@pytest.mark.parametrize("name", BROKEN)
def test_the_session_refuses_the_file_and_keeps_what_was_open(name, default_session):
    session = default_session
    before = (session.checkpoint, session.dataset, session.engine)
    kwargs = {"checkpoint_path": BAD / name} if FILES[name]["target"] == "checkpoint" else {"dataset_path": BAD / name}
    with pytest.raises(LoadError) as info:
        session.open(**kwargs)
    assert name in str(info.value)
    assert all(now is then for now, then in zip((session.checkpoint, session.dataset, session.engine), before))


@pytest.fixture(scope="module")
def default_session():
    session = Session()
    session.open(default_checkpoint(), default_dataset())
    assert session.ready
    return session


@pytest.mark.parametrize("name", PAYLOADS)
def test_a_code_payload_never_runs(name, payload_marker):
    raw = (BAD / name).read_bytes()
    if zipfile.is_zipfile(BAD / name):
        with zipfile.ZipFile(BAD / name) as z:
            raw = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"exec" in raw or b"system" in raw  # the hostile global really is in the pickle
    with pytest.raises(CheckpointError):
        load_checkpoint(BAD / name)
    assert main(["inspect", str(BAD / name)]) != 0
    with pytest.raises(LoadError):
        Session().open(BAD / name, default_dataset())
    assert not payload_marker.exists() and not DEFAULT_MARKER.exists()


def test_the_payload_is_live_when_unpickled_unsafely(tmp_path):
    """The marker check means something: torch.load(weights_only=False) does run the payload."""
    marker = tmp_path / "ran"
    code = f"import torch; torch.load({str(BAD / 'ck_payload_exec.pt')!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, MARKER_ENV: str(marker)}, timeout=120,
                   capture_output=True)
    assert marker.read_text() == "payload ran"


@pytest.mark.parametrize("name", VALID_ALONE)
def test_pair_files_are_valid_on_their_own(name, capsys):
    assert main(["inspect", str(BAD / name)]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("pair", MANIFEST["pairs"], ids=lambda p: f"{p['checkpoint']}+{p['dataset']}")
def test_a_valid_checkpoint_and_dataset_that_do_not_fit_are_a_load_error(pair):
    ck, data = _bad_path(pair["checkpoint"]), BAD / pair["dataset"]
    session = Session()
    with pytest.raises(LoadError) as info:
        session.open(ck, data)
    message = str(info.value)
    assert pair["keyword"] in message and "\n" not in message
    assert not session.ready and session.checkpoint is None and session.dataset is None


def test_a_mismatched_dataset_leaves_the_open_pair_in_place(default_session):
    session = default_session
    before = (session.checkpoint, session.dataset, session.engine)
    with pytest.raises(LoadError, match="modality 'zer' is missing"):
        session.open(dataset_path=BAD / "uci_renamed_modalities.h5")
    assert all(now is then for now, then in zip((session.checkpoint, session.dataset, session.engine), before))
