"""Whole pickled models read without running them: payloads that would create a file never run (the import
either recovers the same weights or is refused in one line), no module the file names is imported, and torch's
tensor rebuild is never handed the file's arguments unchecked."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

from deqstudio.cli import main
from deqstudio.errors import CheckpointError
from deqstudio.io import restricted_pickle
from deqstudio.io.checkpoint import load_checkpoint
from deqstudio.io.foreign import read_foreign
from official_files import mmimdb_model, official_modules, write_features

N = 24


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


class Payload:
    """Unpickled normally, this calls ``call(*args)``: here, something that creates the marker file."""

    def __init__(self, call, *args) -> None:
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def _payloads(marker):
    code = f"open({str(marker)!r}, 'w').write('ran')"
    return {
        "open": Payload(builtins.open, str(marker), "w"),
        "exec": Payload(builtins.exec, code),
        "eval": Payload(builtins.eval, f"__import__('builtins').exec({code!r})"),
        "system": Payload(os.system, f"touch {marker}"),
        "popen": Payload(os.popen, f"touch {marker}"),
    }


@pytest.fixture(scope="module")
def imdb(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    gen = torch.Generator().manual_seed(2)
    with official_modules() as classes:
        model = mmimdb_model(classes, (12, 20), (8, 8), 32, 4, gen)
    raw = [np.random.default_rng(0).standard_normal((N, k)).astype(np.float32) for k in (12, 20)]
    labels = (np.random.default_rng(1).random((N, 4)) > 0.5).astype(np.int64)
    write_features(folder / "data.h5", ("text", "image"), raw, labels, ["g0", "g1", "g2", "g3"])
    return folder, model, gen


def _save_model(model, path, **extra):
    with official_modules():
        for name, value in extra.items():
            setattr(model, name, value)
        try:
            torch.save(model, path)
        finally:
            for name in extra:
                delattr(model, name)


@pytest.mark.parametrize("kind", ["open", "exec", "eval", "system", "popen"])
def test_a_payload_inside_a_whole_model_never_runs_and_the_weights_come_through(imdb, tmp_path, capsys, kind):
    folder, model, _ = imdb
    marker = tmp_path / "created_by_payload"
    src = tmp_path / "hostile.pt"
    _save_model(model, src, note=_payloads(marker)[kind])
    code, _, err = _run(capsys, "import", "deqfusion", src, "--features", folder / "data.h5", "--out",
                        tmp_path / "o.pt", "--no-evaluate")
    assert not marker.exists()
    assert code == 0, err
    state = load_checkpoint(tmp_path / "o.pt").model.state_dict()
    torch.testing.assert_close(state["head.weight"], model.head.fc.weight.detach())
    torch.testing.assert_close(state["trunks.1.lin1.weight"], model.encoders[1].op1.lin.weight.detach())
    torch.testing.assert_close(state["trunks.0.norm0.running_var"], model.encoders[0].op0.running_var)


@pytest.mark.parametrize("kind", ["open", "exec", "system"])
def test_a_payload_as_the_whole_file_is_refused_in_one_line(imdb, tmp_path, capsys, kind):
    folder, _, _ = imdb
    marker = tmp_path / "created_by_payload"
    src = tmp_path / "payload.pt"
    torch.save({"state_dict": _payloads(marker)[kind]}, src)
    code, _, err = _run(capsys, "import", "deqfusion", src, "--features", folder / "data.h5", "--out",
                        tmp_path / "o.pt")
    assert not marker.exists() and not (tmp_path / "o.pt").exists()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: payload.pt: no DEQ fusion block")


def test_a_plain_pickle_payload_is_refused_in_one_line(imdb, tmp_path, capsys):
    """Not a zip archive: the legacy reader (weights_only) refuses it before anything runs."""
    folder, _, _ = imdb
    marker = tmp_path / "created_by_payload"
    src = tmp_path / "legacy.pt"
    src.write_bytes(pickle.dumps(_payloads(marker)["open"], protocol=2))
    code, _, err = _run(capsys, "import", "deqfusion", src, "--features", folder / "data.h5", "--out", tmp_path / "o.pt")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "legacy.pt" in err
    assert not marker.exists()


def test_no_module_the_file_names_is_imported(imdb, tmp_path, capsys, monkeypatch):
    """A class from a module whose import would create a file: the module is never imported."""
    folder, model, _ = imdb
    marker = tmp_path / "imported_marker"
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n"
                                        "class Thing:\n    def __init__(self):\n        self.x = 1\n")
    monkeypatch.syspath_prepend(str(package))
    import evilmod  # creates the marker: the module really does what the test says it does

    assert marker.exists()
    src = tmp_path / "names_evilmod.pt"
    _save_model(model, src, helper=evilmod.Thing())
    del sys.modules["evilmod"]
    marker.unlink()
    code, _, err = _run(capsys, "import", "deqfusion", src, "--features", folder / "data.h5", "--out",
                        tmp_path / "o.pt", "--no-evaluate")
    assert code == 0, err
    assert "evilmod" not in sys.modules and not marker.exists()
    assert "evilmod.Thing" in read_foreign(src).named_classes


def test_official_classes_are_placeholders_with_their_paths(imdb, tmp_path):
    _folder, model, _ = imdb
    src = tmp_path / "m.pt"
    _save_model(model, src)
    found = read_foreign(src)
    assert "training_structures" not in sys.modules and "fusions" not in sys.modules
    assert {"training_structures.Supervised_Learning.MMDL", "fusions.DEQ_fusion.DEQFusion",
            "fusions.solver.anderson", "unimodals.common_models.MaxOut_MLP"} <= set(found.named_classes)
    (candidate,) = found.candidates
    assert candidate.classes["fuse."] == "fusions.DEQ_fusion.DEQFusion"
    assert candidate.classes[""] == "training_structures.Supervised_Learning.MMDL"
    assert set(candidate.tensors) == set(model.state_dict())  # as Module.state_dict names them
    for key, value in model.state_dict().items():
        torch.testing.assert_close(candidate.tensors[key].tensor(), value)


def test_an_old_pickle_protocol_reads_the_same(imdb, tmp_path):
    """Protocol 1 rebuilds objects through copyreg._reconstructor: placeholders again, same tensors."""
    _folder, model, _ = imdb
    src = tmp_path / "p1.pt"
    with official_modules():
        torch.save(model, src, pickle_protocol=1)
    (candidate,) = read_foreign(src).candidates
    for key, value in model.state_dict().items():
        torch.testing.assert_close(candidate.tensors[key].tensor(), value)


def test_only_tensor_rebuild_functions_resolve():
    unpickler = restricted_pickle._Unpickler(io.BytesIO(b""), None)
    for module, name in (("os", "system"), ("builtins", "eval"), ("builtins", "getattr"), ("torch", "load"),
                         ("torch.serialization", "load"), ("numpy", "load"), ("subprocess", "Popen"),
                         ("torch._utils", "_rebuild_device_tensor_from_numpy")):
        got = unpickler.find_class(module, name)
        assert isinstance(got, type) and issubclass(got, restricted_pickle.Placeholder)
        assert got.class_path == f"{module}.{name}"
        instance = got("touch /tmp/never")  # "calling" it only records the arguments
        assert instance.args == ("touch /tmp/never",)
    assert unpickler.find_class("torch._utils", "_rebuild_tensor_v2") is restricted_pickle._tensor
    assert unpickler.find_class("collections", "OrderedDict") is OrderedDict


class _Rebuild:
    """Pickles as a call of torch's tensor rebuild with arguments of the test's choosing."""

    def __init__(self, *args) -> None:
        self.args = args

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


@pytest.mark.parametrize("args, words", [
    ((torch.ones(4).untyped_storage(), 0, (1000,), (1,), False, OrderedDict()), "past the end"),
    ((torch.ones(4).untyped_storage(), 14, (3,), (1,), False, OrderedDict()), "past the end"),  # of 16 bytes
    ((torch.ones(4).untyped_storage(), 0, (2, 2), (1,), False, OrderedDict()), "do not fit"),
    (("not a storage", 0, (2,), (1,), False, OrderedDict()), "other than a storage"),
    ((torch.ones(4).untyped_storage(), 0, (10**6, 10**6), (0, 0), False, OrderedDict()), "far more values"),
])
def test_tensor_rebuilds_are_checked(tmp_path, args, words):
    src = tmp_path / "rebuild.pt"
    torch.save({"x": _Rebuild(*args)}, src)
    with pytest.raises(CheckpointError) as info:
        read_foreign(src)
    assert words in str(info.value) and "nothing in it was run" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_decompression_bomb_is_refused_before_reading(tmp_path):
    src = tmp_path / "bomb.pt"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2))
        z.writestr("archive/data/0", b"\0" * (64 * 1024**2))
    src.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="decompression bomb"):
        read_foreign(src)
