"""Hostile DEQ packages are refused with one ``error:`` line, before any program runs, reading nothing outside the
package: custom-op domains, external data outside (absolute, ``..``), outputs the program lacks, sizes that do not
match, NaN outputs, zip bombs, path-traversal and symbolic-link members, files that lead outside a folder."""

import contextlib
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import package_models as pm
from deqstudio.cli import main

_OPENED: list | None = None


def _audit(event, args):
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # records the files Python opens while a test watches (no effect otherwise)


@contextlib.contextmanager
def watching():
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


class Small(torch.nn.Module):
    def __init__(self, poison: bool = False) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.w = pm._contract(torch.nn.Linear(8, 8), 0.5)
        self.a = torch.nn.Linear(sum(pm.SIZES.values()), 8)
        self.head = torch.nn.Linear(8, 4)
        self.poison = poison

    def f(self, z, strong, weak, picture):
        out = torch.tanh(self.w(z) + self.a(torch.cat([strong, weak, picture], dim=1)))
        if self.poison:  # log(0) · 0 = NaN where the strong features are all zero
            out = out + 0 * torch.log(strong.abs().sum(dim=1, keepdim=True))
        return out


def _export(folder: Path, poison: bool = False) -> Path:
    model = Small(poison)
    example = {n: torch.rand(4, s) + 0.5 for n, s in pm.SIZES.items()}
    pm.exporter().export_package(folder, f=model.f, head=model.head, example=example, blocks=[("fused", 8)],
                                 fused_block="fused", class_names=pm.CLASSES, modalities=pm.IMAGE, quiet=True)
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("base") / "pkg")


@pytest.fixture
def pkg(base, tmp_path):
    """A fresh copy of the good package, and a folder beside it ("outside") that must never be read."""
    folder = tmp_path / "pkg"
    shutil.copytree(base, folder)
    (tmp_path / "outside").mkdir()
    return folder


def _refused(capsys, path, *words, command=("inspect",), outside: Path | None = None):
    """One error line naming the problem, exit status 2, and no file opened outside the package but its own code."""
    with watching() as opened:
        code = main([*command, str(path)] if command == ("inspect",) else [*command])
    out = capsys.readouterr()
    assert code == 2, out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    for word in words:
        assert word in lines[0], lines[0]
    if outside is not None:
        assert not [p for p in opened if Path(p).resolve().is_relative_to(outside.resolve())], opened
    return lines[0]


def _edit_onnx(path: Path, change) -> None:
    import onnx

    model = onnx.ModelProto()
    model.ParseFromString(path.read_bytes())
    change(model)
    path.write_bytes(model.SerializeToString())


def _edit_contract(folder: Path, change) -> None:
    contract = json.loads((folder / "contract.json").read_text())
    change(contract)
    (folder / "contract.json").write_text(json.dumps(contract))


def test_the_good_package_opens(pkg, capsys):
    assert main(["inspect", str(pkg)]) == 0
    assert "DEQ package" in capsys.readouterr().out


def test_a_custom_op_domain_is_refused(pkg, capsys):
    def custom(model):
        model.graph.node[0].domain = "com.evil"
        model.opset_import.add(domain="com.evil", version=1)

    _edit_onnx(pkg / "f.onnx", custom)
    _refused(capsys, pkg, "f.onnx", "custom domain", "com.evil")


def test_a_custom_op_hidden_in_a_subgraph_is_refused(pkg, capsys):
    from onnx import helper

    def hidden(model):
        inner = helper.make_graph([helper.make_node("Evil", [], ["y"], domain="com.evil")], "branch", [], [])
        model.graph.node.append(helper.make_node("If", ["cond"], ["out"], then_branch=inner, else_branch=inner))

    _edit_onnx(pkg / "f.onnx", hidden)
    _refused(capsys, pkg, "operator 'Evil'", "com.evil")


def _externalise(pkg: Path, location_of) -> Path:
    """Move f.onnx's weights to an external file; ``location_of(real_file)`` is the location the model names."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.ModelProto()
    model.ParseFromString((pkg / "f.onnx").read_bytes())
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    onnx.save_model(model, str(pkg / "f.onnx"))  # writes pkg/weights.bin
    real, location = location_of(pkg / "weights.bin")
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    (pkg / "f.onnx").write_bytes(model.SerializeToString())
    return real


def test_external_data_inside_the_package_is_read_from_it(pkg, capsys, small_files):
    before = json.loads((main(["inspect", str(pkg), "--json"]), capsys.readouterr().out)[1])
    _externalise(pkg, lambda f: (f, "weights.bin"))
    assert (pkg / "weights.bin").stat().st_size > 0
    assert main(["solve", "--checkpoint", str(pkg), "--dataset", str(small_files[1]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["converged"]
    assert main(["inspect", str(pkg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] != before["sha256"]  # the weights file is in the hash


@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_external_data_outside_the_package_is_refused_unread(pkg, capsys, where):
    outside = pkg.parent / "outside"

    def move(f):
        target = outside / "weights.bin"
        shutil.move(f, target)  # real weights: a loader that followed the path would succeed
        return target, (str(target) if where == "absolute" else "../outside/weights.bin")

    target = _externalise(pkg, move)
    assert target.stat().st_size > 0
    words = ("absolute path",) if where == "absolute" else ("outside the", "(..)")
    _refused(capsys, pkg, "f.onnx", *words, outside=outside)


def test_a_contract_naming_outputs_the_program_lacks_is_refused(pkg, capsys):
    _edit_contract(pkg, lambda c: c["programs"]["f"].update(outputs=["z_new"]))
    _refused(capsys, pkg, "f.onnx", "no output(s) 'z_new'")


@pytest.mark.parametrize("change, words", [
    (lambda c: c["blocks"][0].update(size=9), ("'z' has 8 features, its contract says 9",)),
    (lambda c: c["modalities"][0].update(size=15), ("'strong' has 16 features, its contract says 15",)),
    (lambda c: c["class_names"].append("class 4"), ("'logits' has 4 features, its contract says 5",)),
])
def test_shapes_that_do_not_match_the_contract_are_refused(pkg, capsys, change, words):
    _edit_contract(pkg, change)
    _refused(capsys, pkg, *words)


def test_nan_outputs_are_refused_before_any_solve(tmp_path, capsys, small_files):
    poisoned = _export(tmp_path / "nan", poison=True)
    _refused(capsys, poisoned, "program f", "non-finite", command=(
        "solve", "--checkpoint", str(poisoned), "--dataset", str(small_files[1])))


def _zip(base: Path, out: Path, extra=()) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(base.iterdir()):
            z.write(p, p.name)
        for info, data in extra:
            z.writestr(info, data)
    return out


def test_a_zipped_package_opens(base, tmp_path, capsys):
    assert main(["inspect", str(_zip(base, tmp_path / "good.zip"))]) == 0
    assert "DEQ package" in capsys.readouterr().out
    with zipfile.ZipFile(tmp_path / "folder.zip", "w") as z:  # a zipped folder: everything under one top folder
        for p in sorted(base.iterdir()):
            z.write(p, f"my_model/{p.name}")
    assert main(["inspect", str(tmp_path / "folder.zip"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["programs"]["f"]["file"] == "f.onnx"


def test_a_zip_bomb_is_refused_before_decompressing(base, tmp_path, capsys):
    out = tmp_path / "bomb.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(base / "contract.json", "contract.json")
        with z.open("f.onnx", "w", force_zip64=True) as fh:
            for _ in range(64):
                fh.write(bytes(1 << 20))
    assert out.stat().st_size < 1 << 20
    _refused(capsys, out, "decompression bomb")


def _link(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (0o120777 << 16)
    return info


@pytest.mark.parametrize("member, words", [
    ("../evil.txt", ("outside the package (..)",)),
    ("sub/../../evil.txt", ("outside the package (..)",)),
    ("/tmp/evil.txt", ("absolute path",)),
    ("C:/evil.txt", ("absolute path",)),
    ("link", ("symbolic link",)),
])
def test_a_zip_with_path_traversal_or_link_members_is_refused(base, tmp_path, capsys, member, words):
    info = _link(member, "/etc/passwd") if member == "link" else zipfile.ZipInfo(member)
    out = _zip(base, tmp_path / "evil.zip", [(info, "/etc/passwd" if member == "link" else "boo")])
    _refused(capsys, out, *words)
    assert not (tmp_path.parent / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_a_folder_package_cannot_reach_outside(pkg, capsys):
    outside = pkg.parent / "outside"
    shutil.move(pkg / "head.onnx", outside / "head.onnx")
    _edit_contract(pkg, lambda c: c["programs"]["head"].update(file="../outside/head.onnx"))
    _refused(capsys, pkg, "(..)", outside=outside)
    _edit_contract(pkg, lambda c: c["programs"]["head"].update(file="head.onnx"))
    os.symlink(outside / "head.onnx", pkg / "head.onnx")
    _refused(capsys, pkg, "head.onnx", "leads outside the package", outside=outside)


@pytest.mark.parametrize("text, words", [
    ("{", ("not valid JSON",)),
    ('{"format": "deqstudio-package", "version": 9}', ("version 9",)),
    ('{"format": "deqstudio-package", "version": 1, "class_names": ["a"], "modalities": [{"name": "m", "size": 2}],'
     ' "blocks": [{"name": "b", "size": 2}], "programs": {"head": {"file": "h", "inputs": ["z"], '
     '"outputs": ["l"]}}}', ("required program(s) f",)),
    ('{"format": "deqstudio-package", "version": 1, "class_names": ["a"], "modalities": [{"name": "m", "size": 2}],'
     ' "blocks": [{"name": "b", "size": 2}], "programs": {"f": {"file": "f", "inputs": ["z"], "outputs": ["y"]}, '
     '"head": {"file": "h", "inputs": ["z"], "outputs": ["l"]}, "evil": {}}}', ("unknown program(s) 'evil'",)),
])
def test_a_bad_contract_is_one_error_line(tmp_path, capsys, text, words):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "contract.json").write_text(text)
    _refused(capsys, tmp_path / "p", *words)
