"""Every file in the bad-input corpus (tests/data/bad, scripts/make_bad_corpus.py) is refused clearly.

For each file: ``deqstudio inspect`` exits non-zero with one ``error: ...`` line naming the problem and
no traceback, and its loader raises its own error class; hostile pickles never run; checkpoint and
dataset files that are each valid but do not fit together are a LoadError naming what differs; text
from a file never reaches the terminal raw; FIFOs (made here: they cannot live in git) never block.
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
HOSTILE_TEXT = sorted(name for name, entry in FILES.items() if entry.get("hostile_text"))
LOADERS = {"checkpoint": (load_checkpoint, CheckpointError), "dataset": (read_dataset, DatasetError),
           "session": (lambda path: Session().load(path), LoadError)}


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
        assert lines[0].isprintable(), lines[0]  # no escape sequence or control character from the file
        assert entry.get("inspect_keyword", entry["keyword"]) in lines[0]
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
    before = (session.checkpoint, session.dataset, session.engine, session.solver, session.sample,
              dict(session.corruptions))
    target = FILES[name]["target"]
    with pytest.raises(LoadError) as info:
        if target == "session":
            session.load(BAD / name)
        else:
            session.open(**{f"{target}_path": BAD / name})
    assert name in str(info.value) and str(info.value).isprintable()
    after = (session.checkpoint, session.dataset, session.engine, session.solver, session.sample,
             dict(session.corruptions))
    assert all(now is then for now, then in zip(after[:3], before[:3])) and after[3:] == before[3:]


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


@pytest.mark.parametrize("name", HOSTILE_TEXT)
def test_text_from_a_file_is_printed_escaped(name, capsys):
    """Escape sequences and newlines in names and metadata: inspect's text and JSON show them escaped."""
    for extra in ([], ["--json"]):
        assert main(["inspect", str(BAD / name), *extra]) == 0
        out, err = capsys.readouterr()
        assert err == ""
        assert all(line.isprintable() for line in out.splitlines()), out
        assert not [line for line in out.splitlines() if line.lstrip().startswith("error")]
        assert "\\x1b" in out  # shown, as an escape
        if extra:
            json.loads(out)


FIFO_SCRIPT = r"""
import json, os, subprocess, sys, time
from pathlib import Path
from deqstudio.io.checkpoint import CheckpointError, load_checkpoint
from deqstudio.io.dataset import DatasetError, read_dataset
from deqstudio.io.inspect import InspectError, describe
from deqstudio.session.state import LoadError, Session

work, bad = Path(sys.argv[1]), Path(sys.argv[2])
fifo = work / "pipe"
os.mkfifo(fifo)
(work / "link.pt").symlink_to(fifo)
(work / "bad-corpus-fifo").symlink_to(fifo)  # the target ds_external_link.h5 names
(work / "ds_external_link.h5").write_bytes((bad / "ds_external_link.h5").read_bytes())
(work / "names_fifo.json").write_text(json.dumps({"format": "deqstudio-session", "version": 1,
                                                  "checkpoint": str(fifo)}))
cases = [
    ("load_checkpoint fifo", lambda: load_checkpoint(fifo), CheckpointError),
    ("load_checkpoint link", lambda: load_checkpoint(work / "link.pt"), CheckpointError),
    ("read_dataset fifo", lambda: read_dataset(fifo), DatasetError),
    ("read_dataset link", lambda: read_dataset(work / "link.pt"), DatasetError),
    ("describe fifo", lambda: describe(fifo), InspectError),
    ("session fifo", lambda: Session().load(fifo), LoadError),
    ("session naming a fifo", lambda: Session().load(work / "names_fifo.json"), LoadError),
    ("open fifo", lambda: Session().open(fifo, None), LoadError),
    ("external link to a fifo", lambda: read_dataset(work / "ds_external_link.h5"), DatasetError),
]
for label, call, error in cases:
    t0 = time.monotonic()
    try:
        call()
        print(label, "|", "LOADED")
    except error as exc:
        print(label, "|", f"{time.monotonic() - t0:.1f}s", "|", exc)
for argv in (["inspect", str(fifo)], ["solve", "--checkpoint", str(work / "link.pt")],
             ["solve", "--dataset", str(fifo)], ["gui", "--session", str(fifo)],
             ["gui", "--session", str(work / "names_fifo.json")], ["gui", "--checkpoint", str(fifo)]):
    run = subprocess.run([sys.executable, "-m", "deqstudio", *argv], capture_output=True, text=True, timeout=60)
    print("cli " + argv[0] + " " + argv[1], "|", run.returncode, "|", run.stderr.strip().replace(chr(10), "//"))
"""


def test_a_fifo_never_blocks_a_loader_or_a_command(tmp_path):
    """A FIFO (or a link to one) as checkpoint, dataset, session or external target answers at once."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    run = subprocess.run([sys.executable, "-c", FIFO_SCRIPT, str(tmp_path), str(BAD)], capture_output=True,
                         text=True, timeout=240, cwd=ROOT, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 15, run.stdout
    for line in lines:
        label, *rest = line.split(" | ")
        if label.startswith("cli "):
            code, err = rest
            assert code == "2" and err.startswith("error: ") and "//" not in err, line
            assert "named pipe" in err, line
        else:
            assert rest[0] != "LOADED", line
            assert ("external link" if "external" in label else "named pipe") in rest[-1], line
