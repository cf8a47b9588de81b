"""Plugins (issue 17): a fake installed distribution on sys.path is listed from its metadata without being
imported, runs in the studio only after consent (asked again when a file changes), and never runs in a headless
command without --allow-plugin; safe mode hides it."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from deqstudio.cli import main
from deqstudio.errors import CheckpointError
from deqstudio.io.models import open_model
from deqstudio.io.plugins import ConsentStore, discover, find

ROOT = Path(__file__).resolve().parents[1]
MODULE = '''"""A DEQ Studio plugin for the tests: it writes to a marker file when imported and when run."""
import os


def _mark(what):
    with open(os.environ["FAKEPLUG_MARKER"], "a") as fh:
        fh.write(what + "\\n")


_mark("imported")


def open_model(path):
    from deqstudio.io.checkpoint import load_checkpoint

    _mark("ran")
    return load_checkpoint(path or os.environ["FAKEPLUG_CHECKPOINT"]).adapter
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch, small_files):
    site = tmp_path / "site"
    info = site / "fakeplug-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n"
                                   "Summary: A DEQ Studio test plugin\n")
    (info / "entry_points.txt").write_text("[deqstudio.adapters]\nfake = fakeplug_mod:open_model\n")
    (info / "RECORD").write_text("fakeplug_mod.py,,\nfakeplug-1.0.dist-info/METADATA,,\n"
                                 "fakeplug-1.0.dist-info/entry_points.txt,,\nfakeplug-1.0.dist-info/RECORD,,\n")
    module = site / "fakeplug_mod.py"
    module.write_text(MODULE)
    marker = tmp_path / "marker.txt"
    monkeypatch.setenv("FAKEPLUG_MARKER", str(marker))
    monkeypatch.setenv("FAKEPLUG_CHECKPOINT", str(small_files[0]))
    monkeypatch.setenv("DEQSTUDIO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("DEQSTUDIO_SAFE_MODE", raising=False)
    monkeypatch.syspath_prepend(str(site))
    yield SimpleNamespace(site=site, module=module, marker=marker, data=small_files[1])
    sys.modules.pop("fakeplug_mod", None)


def _marks(plugin) -> list[str]:
    return plugin.marker.read_text().split() if plugin.marker.exists() else []


def test_a_plugin_is_listed_from_metadata_without_being_imported(plugin, capsys):
    [fake] = [p for p in discover() if p.name == "fake"]
    assert (fake.version, fake.distribution, fake.target) == ("1.0", "fakeplug", "fakeplug_mod:open_model")
    assert fake.summary == "A DEQ Studio test plugin" and fake.files >= 2 and len(fake.files_hash) == 64
    assert main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert listed["fake"]["consented"] is False and listed["fake"]["version"] == "1.0"
    assert "fakeplug_mod" not in sys.modules and _marks(plugin) == []


def test_a_plugin_never_runs_headless_without_allow_plugin(plugin, capsys):
    with pytest.raises(CheckpointError, match="--allow-plugin fake"):
        open_model("plugin:fake")
    ConsentStore().grant(find("fake"))  # consent given in the studio does not count for a headless command
    for command in ("solve", "sweep"):
        assert main([command, "--checkpoint", "plugin:fake", "--dataset", str(plugin.data)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "--allow-plugin fake" in err[0]
    assert _marks(plugin) == [] and "fakeplug_mod" not in sys.modules
    assert main(["solve", "--checkpoint", "plugin:fake", "--dataset", str(plugin.data), "--allow-plugin", "fake",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fusion"] == "deq-udml"
    assert _marks(plugin) == ["imported", "ran"]


def test_safe_mode_hides_every_plugin(plugin, capsys, monkeypatch):
    argv = ["solve", "--checkpoint", "plugin:fake", "--dataset", str(plugin.data), "--allow-plugin", "fake"]
    assert main(["--safe-mode", *argv]) == 2
    assert "safe mode" in capsys.readouterr().err
    assert main([*argv, "--safe-mode"]) == 2
    assert "safe mode" in capsys.readouterr().err
    assert _marks(plugin) == []
    monkeypatch.setenv("DEQSTUDIO_SAFE_MODE", "1")
    assert discover() == []
    assert main(["plugins"]) == 0 and "safe mode" in capsys.readouterr().out


def test_a_fresh_headless_process_imports_nothing_of_a_plugin_not_allowed(plugin):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(plugin.site)]))
    proc = subprocess.run([sys.executable, "-m", "deqstudio", "solve", "--checkpoint", "plugin:fake", "--dataset",
                           str(plugin.data)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert _marks(plugin) == []


def test_the_studio_runs_a_plugin_only_after_consent_and_asks_again_after_a_change(window, qtbot, plugin,
                                                                                    monkeypatch, tmp_path):
    actions = window.plugins
    actions.store = ConsentStore(tmp_path / "consents.json")
    actions._fill()
    assert any(a.text() == "Open fake 1.0" for a in actions.menu.actions())
    fake = find("fake")
    box = actions.consent_box(fake)
    assert box.defaultButton().text() == "Don't run" and box.escapeButton() is box.defaultButton()
    assert "runs the plugin's Python code" in box.informativeText() and "fake 1.0" in box.informativeText()
    box.deleteLater()
    assert "fakeplug_mod" not in sys.modules and _marks(plugin) == []

    asked, answer = [], {"run": False}
    monkeypatch.setattr(actions, "ask_consent", lambda p: asked.append(p.files_hash) or answer["run"])
    session, before = window.session, window.session.checkpoint
    assert actions.open_with(fake) is False
    assert session.checkpoint is before and "fake" not in session.allowed_plugins and _marks(plugin) == []

    answer["run"] = True
    assert actions.open_with(fake) is True
    qtbot.waitUntil(lambda: session.checkpoint is not before and not window.runner.busy, timeout=60000)
    assert session.checkpoint.adapter.source.kind == "plugin" and _marks(plugin) == ["imported", "ran"]
    assert len(asked) == 2 and actions.store.granted(fake)
    assert session.saved().checkpoint is None  # a session keeps no path for a plugin's model

    assert actions.open_with(find("fake")) is True  # remembered: not asked again
    assert len(asked) == 2
    qtbot.waitUntil(lambda: _marks(plugin).count("ran") == 2 and not window.runner.busy, timeout=60000)

    plugin.module.write_text(MODULE + "\n# a changed line\n")
    changed = find("fake")
    assert changed.files_hash != fake.files_hash and not actions.store.granted(changed)
    answer["run"] = False
    assert actions.open_with(changed) is False and len(asked) == 3
