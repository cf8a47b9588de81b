"""``deqstudio import deqfusion``: official-layout files (random weights, the documented key names) imported and
solved to the probabilities DESIGN.md §3.1's equations give, computed in float64 by a reference that reads the
official keys (tests/official_files.py); ambiguity and damaged state dicts as one ``error:`` line each."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deqstudio.cli import main
from deqstudio.core.solvers.settings import SolverSettings
from deqstudio.io.checkpoint import load_checkpoint
from deqstudio.io.dataset import read_dataset
from deqstudio.io.guard import file_sha256
from official_files import (block_state, brca_features, brca_state, maxout_features, mmimdb_model, official_modules,
                            reference_fused, reference_probabilities, user_model_state, write_features)

TIGHT = SolverSettings(tol=1e-6, max_iter=300)
N = 36


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _probabilities(path, arrays):
    ck = load_checkpoint(path)
    run = ck.adapter([np.asarray(a, dtype=np.float32) for a in arrays], TIGHT)
    assert run.trace.converged.all()
    return ck, run.probabilities


def _head(sd, stem, z):
    return z @ sd[f"{stem}.weight"].double().T + sd[f"{stem}.bias"].double()


# -- the root DEQ_fusion.py inside a user's model ---------------------------------------------------------
@pytest.fixture(scope="module")
def root_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("root")
    gen = torch.Generator().manual_seed(11)
    n, d, classes = 3, 32, 4
    sd = user_model_state(n, d, classes, gen)
    feats = [torch.randn(N, d, generator=gen) * 2 for _ in range(n)]
    labels = np.arange(N) % classes
    torch.save({"state_dict": sd, "epoch": 12}, folder / "user.pt")
    write_features(folder / "features.h5", ("a", "b", "c"), [f.numpy() for f in feats], labels,
                   [f"c{i}" for i in range(classes)])
    return folder, sd, feats


def test_root_layout_solves_to_the_reference(root_files, capsys):
    folder, sd, feats = root_files
    out = folder / "imported.pt"
    code, text, _ = _run(capsys, "import", "deqfusion", folder / "user.pt", "--features", folder / "features.h5",
                         "--out", out)
    assert code == 0
    for words in ("under 'fusion.'", "learned scalars", "variant: root", "head: classifier",
                  "branch 0 ← a", "corruptions act on imported features", f"saved {out}"):
        assert words in text, words
    ck, probs = _probabilities(out, feats)
    z = reference_fused(sd, "fusion.", feats, mixing=True, relu_after_norm=False)
    ref = reference_probabilities(_head(sd, "classifier", z), multilabel=False).numpy()
    assert np.abs(probs - ref).max() < 2e-3
    # what the checkpoint records about where it came from
    rec = ck.imported
    assert rec["source_file"] == str((folder / "user.pt").resolve())
    assert rec["source_sha256"] == file_sha256(folder / "user.pt")
    assert (rec["prefix"], rec["variant"], rec["head"], rec["mixing"]) == ("fusion.", "root", "classifier", "learned")
    assert rec["modality_order"] == ["a", "b", "c"] and rec["inputs"] == "features"
    assert torch.load(out, weights_only=True)["version"] == 3
    source = ck.adapter.source
    assert source.kind == "imported" and source.description == "imported from user.pt"
    assert ck.adapter.input_note == "corruptions act on imported features"
    assert not ck.config.normalise_inputs and ck.adapter.feature_scales == (None, None, None)
    assert "test_accuracy" in ck.metrics and ck.metrics["test_converged_fraction"] == 1.0


def test_modality_order_follows_modalities(root_files, tmp_path, capsys):
    """--modalities c,a,b feeds dataset modality c to branch 0: the reference with the features permuted."""
    folder, sd, feats = root_files
    out = tmp_path / "perm.pt"
    code, _, _ = _run(capsys, "import", "deqfusion", folder / "user.pt", "--features", folder / "features.h5",
                      "--out", out, "--modalities", "c,a,b", "--no-evaluate")
    assert code == 0
    ck = load_checkpoint(out)
    assert ck.adapter.modality_names == ("c", "a", "b")
    order = [feats[2], feats[0], feats[1]]
    _, probs = _probabilities(out, order)
    z = reference_fused(sd, "fusion.", order, mixing=True, relu_after_norm=False)
    assert np.abs(probs - reference_probabilities(_head(sd, "classifier", z), False).numpy()).max() < 2e-3


def test_variant_mmimdb_on_request(root_files, tmp_path, capsys):
    folder, sd, feats = root_files
    out = tmp_path / "relu_after.pt"
    code, text, _ = _run(capsys, "import", "deqfusion", folder / "user.pt", "--features", folder / "features.h5",
                         "--out", out, "--variant", "mmimdb", "--no-evaluate")
    assert code == 0 and "ReLU after the fused GroupNorm" in text
    _, probs = _probabilities(out, feats)
    z = reference_fused(sd, "fusion.", feats, mixing=True, relu_after_norm=True)
    assert np.abs(probs - reference_probabilities(_head(sd, "classifier", z), False).numpy()).max() < 2e-3


@pytest.mark.parametrize("wrap", ["plain", "model", "list"])
def test_wrapped_state_dicts(root_files, tmp_path, capsys, wrap):
    folder, sd, _ = root_files
    payload = {"plain": sd, "model": {"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}},
               "list": [sd, {"state": {}, "param_groups": []}, 40]}[wrap]
    src = tmp_path / "wrapped.pth"
    torch.save(payload, src)
    code, _, err = _run(capsys, "import", "deqfusion", src, "--features", folder / "features.h5", "--out",
                        tmp_path / "o.pt", "--no-evaluate")
    assert code == 0, err
    _same_weights(load_checkpoint(tmp_path / "o.pt").model.state_dict(), sd)


def _same_weights(state, sd, prefix="fusion.", head="classifier"):
    """The converted weights hold the file's values (conv layers stacked, GroupNorm affines concatenated)."""
    for i in range(3):
        torch.testing.assert_close(state["fusion.block.w1"][i], sd[f"{prefix}func_.branches.{i}.conv1.weight"])
        torch.testing.assert_close(state["fusion.block.b2"][i], sd[f"{prefix}func_.branches.{i}.conv2.bias"])
        torch.testing.assert_close(state["fusion.block.gn3_bias"][32 * i: 32 * (i + 1)],
                                   sd[f"{prefix}func_.branches.{i}.gn3.bias"])
        torch.testing.assert_close(state["fusion.block.mix_weights"][i: i + 1], sd[f"{prefix}weights.{i}"])
    torch.testing.assert_close(state["fusion.block.fuse_norm.weight"], sd[f"{prefix}func_.branches.3.gn3.weight"])
    torch.testing.assert_close(state["fusion.block.gate.bias"], sd[f"{prefix}func_.branches.3.gate.bias"])
    torch.testing.assert_close(state["head.weight"], sd[f"{head}.weight"])


def test_multilabel_head_on_features(tmp_path, capsys):
    """A root block with a multilabel head: a sigmoid per label, no softmax."""
    gen = torch.Generator().manual_seed(5)
    n, d, labels_n = 2, 32, 5
    sd = user_model_state(n, d, labels_n, gen)
    feats = [torch.randn(N, d, generator=gen) * 2 for _ in range(n)]
    labels = (torch.rand(N, labels_n, generator=gen) > 0.5).long().numpy()
    torch.save(sd, tmp_path / "ml.pt")
    write_features(tmp_path / "ml.h5", ("x", "y"), [f.numpy() for f in feats], labels, [f"g{i}" for i in range(labels_n)])
    code, text, _ = _run(capsys, "import", "deqfusion", tmp_path / "ml.pt", "--features", tmp_path / "ml.h5",
                         "--out", tmp_path / "ml_out.pt")
    assert code == 0 and "multilabel (a sigmoid per label)" in text and "micro f1" in text
    ck, probs = _probabilities(tmp_path / "ml_out.pt", feats)
    assert ck.config.task == "multilabel" and ck.adapter.task == "multilabel"
    z = reference_fused(sd, "fusion.", feats, mixing=True, relu_after_norm=False)
    ref = reference_probabilities(_head(sd, "classifier", z), multilabel=True).numpy()
    assert np.abs(probs - ref).max() < 2e-3
    assert not np.allclose(probs.sum(axis=1), 1.0)  # not a softmax
    assert {"test_micro_f1", "test_macro_f1", "test_exact_match"} <= set(ck.metrics)


# -- BRCA's MMDynamic layout ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brca_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("brca")
    gen = torch.Generator().manual_seed(3)
    dims, d, classes = (20, 20, 13), 32, 5
    sd = brca_state(dims, d, classes, gen)
    raw = [torch.rand(N, k, generator=gen) for k in dims]
    labels = np.arange(N) % classes
    torch.save(sd, folder / "checkpoint_best.pt")
    names = ("mrna", "dna", "mirna")
    write_features(folder / "raw.h5", names, [r.numpy() for r in raw], labels, [f"c{i}" for i in range(classes)])
    feats = brca_features(sd, raw)
    write_features(folder / "feats.h5", names, [f.float().numpy() for f in feats], labels,
                   [f"c{i}" for i in range(classes)])
    return folder, sd, raw, feats


def test_brca_layout_with_its_encoders_solves_to_the_reference(brca_files, capsys):
    folder, sd, raw, feats = brca_files
    out = folder / "brca_raw.pt"
    code, text, _ = _run(capsys, "import", "deqfusion", folder / "checkpoint_best.pt", "--features",
                         folder / "raw.h5", "--out", out)
    assert code == 0
    for words in ("under 'deq_fusion.'", "plain sum", "head: MMClasifier.0.clf.0", "MMDynamic encoders"):
        assert words in text, words
    ck, probs = _probabilities(out, raw)
    z = reference_fused(sd, "deq_fusion.", feats, mixing=False, relu_after_norm=False)
    ref = reference_probabilities(_head(sd, "MMClasifier.0.clf.0", z), False).numpy()
    assert np.abs(probs - ref).max() < 2e-3
    assert ck.config.encoder == "mmdynamic" and ck.adapter.input_note == ""
    assert ck.adapter.capabilities.unimodal  # the TCP classifiers: the energy score
    run = ck.adapter([r.numpy()[:1] for r in raw])
    assert run.energy is not None and run.energy.shape == (1, 3)


def test_brca_layout_on_dumped_features(brca_files, capsys):
    folder, sd, _, feats = brca_files
    out = folder / "brca_feats.pt"
    code, text, _ = _run(capsys, "import", "deqfusion", folder / "checkpoint_best.pt", "--features",
                         folder / "feats.h5", "--out", out, "--no-evaluate")
    assert code == 0 and "corruptions act on imported features" in text
    _, probs = _probabilities(out, [f.float() for f in feats])
    z = reference_fused(sd, "deq_fusion.", [f.float() for f in feats], mixing=False, relu_after_norm=False)
    assert np.abs(probs - reference_probabilities(_head(sd, "MMClasifier.0.clf.0", z), False).numpy()).max() < 2e-3


# -- a whole MM-IMDB-style pickle (multilabel) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def mmimdb_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mmimdb")
    gen = torch.Generator().manual_seed(8)
    in_dims, first, d, genres = (12, 40), (8, 16), 32, 6
    with official_modules() as classes:
        model = mmimdb_model(classes, in_dims, first, d, genres, gen)
        torch.save(model, folder / "best_deq.pt")
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    raw = [torch.randn(N, k, generator=gen) for k in in_dims]
    labels = (torch.rand(N, genres, generator=gen) > 0.6).long().numpy()
    write_features(folder / "imdb.h5", ("text", "image"), [r.numpy() for r in raw], labels,
                   [f"genre{i}" for i in range(genres)])
    return folder, sd, raw


def test_mmimdb_whole_pickle_solves_to_the_reference(mmimdb_files, capsys):
    folder, sd, raw = mmimdb_files
    out = folder / "imdb.pt"
    code, text, _ = _run(capsys, "import", "deqfusion", folder / "best_deq.pt", "--features", folder / "imdb.h5",
                         "--out", out, "--json")
    assert code == 0
    report = json.loads(text)
    detected = report["detected"]
    assert (detected["prefix"], detected["variant"], detected["head"], detected["task"]) == (
        "fuse.", "mmimdb", "head.fc", "multilabel")
    assert "fusions.DEQ_fusion.DEQFusion" in detected["variant_reason"]
    assert detected["encoders"] == "maxout" and detected["container"].startswith("the pickled model")
    assert {"test_micro_f1", "test_macro_f1"} <= set(report["metrics"])
    _ck, probs = _probabilities(out, raw)
    z = reference_fused(sd, "fuse.", maxout_features(sd, raw), mixing=True, relu_after_norm=True)
    ref = reference_probabilities(_head(sd, "head.fc", z), multilabel=True).numpy()
    assert np.abs(probs - ref).max() < 2e-3


# -- ambiguity and damage: one error line each, nothing written --------------------------------------------------
def _import_error(capsys, tmp_path, sd, features, *extra) -> str:
    src = tmp_path / "damaged.pt"
    torch.save(sd, src)
    out = tmp_path / "never.pt"
    code, _, err = _run(capsys, "import", "deqfusion", src, "--features", features, "--out", out, "--no-evaluate",
                        *extra)
    assert code == 2 and not out.exists()
    return _one_error_line(err)


def test_two_blocks_ask_for_prefix_and_prefix_picks_one(root_files, tmp_path, capsys):
    folder, sd, feats = root_files
    both = {**sd, **block_state(3, 32, torch.Generator().manual_seed(1), mixing=True, prefix="other.")}
    line = _import_error(capsys, tmp_path, both, folder / "features.h5")
    assert "2 DEQ fusion blocks" in line and "--prefix" in line
    src = tmp_path / "damaged.pt"
    code, _, err = _run(capsys, "import", "deqfusion", src, "--features", folder / "features.h5", "--out",
                        tmp_path / "picked.pt", "--prefix", "fusion", "--no-evaluate")
    assert code == 0, err
    _, probs = _probabilities(tmp_path / "picked.pt", feats)
    z = reference_fused(sd, "fusion.", feats, mixing=True, relu_after_norm=False)
    assert np.abs(probs - reference_probabilities(_head(sd, "classifier", z), False).numpy()).max() < 2e-3


def test_several_heads_ask_for_head_key(root_files, tmp_path, capsys):
    folder, sd, _ = root_files
    two = {**sd, "aux.weight": torch.randn(4, 32), "aux.bias": torch.zeros(4)}
    line = _import_error(capsys, tmp_path, two, folder / "features.h5")
    assert "--head-key" in line and "'classifier'" in line and "'aux'" in line
    code, _, err = _run(capsys, "import", "deqfusion", tmp_path / "damaged.pt", "--features", folder / "features.h5",
                        "--out", tmp_path / "aux.pt", "--head-key", "aux.weight", "--no-evaluate")
    assert code == 0, err
    assert load_checkpoint(tmp_path / "aux.pt").imported["head"] == "aux"


def _fuzz_cases(sd):
    key = "fusion.func_.branches.1.conv2.weight"
    cases = {
        "missing": ({k: v for k, v in sd.items() if k != key}, ["lacks", key]),
        "misshapen": ({**sd, key: torch.randn(32, 31)}, ["shape (32, 31)", key]),
        "extra in block": ({**sd, "fusion.func_.branches.1.conv3.weight": torch.randn(32, 32)},
                           ["unexpected key", "conv3"]),
        "extra branch gap": ({**sd, "fusion.func_.branches.7.gn1.weight": torch.ones(32)}, ["branches"]),
        "partial mixing": ({k: v for k, v in sd.items() if k != "fusion.bias"}, ["mixing scalars", "fusion.bias"]),
        "stray mixing": ({**sd, "fusion.weights.5": torch.ones(1)}, ["fusion.weights.5"]),
        "nan weights": ({**sd, key: torch.full((32, 32), float("nan"))}, ["NaN", key]),
        "integer weights": ({**sd, key: torch.ones(32, 32, dtype=torch.int64)}, ["floating-point"]),
        "no head": ({k: v for k, v in sd.items() if not k.startswith("classifier")}, ["no classifier", "--head-key"]),
        "head bias": ({**sd, "classifier.bias": torch.zeros(7)}, ["classifier.bias", "(7,)"]),
        "no block": ({k: v for k, v in sd.items() if "func_" not in k}, ["no DEQ fusion block"]),
        "odd width": ({k: v[:30, :30] if v.ndim == 2 and "func_" in k else v for k, v in sd.items()}, ["30"]),
    }
    return cases


FUZZ_CASES = ("missing", "misshapen", "extra in block", "extra branch gap", "partial mixing", "stray mixing",
              "nan weights", "integer weights", "no head", "head bias", "no block", "odd width")


@pytest.mark.parametrize("case", FUZZ_CASES)
def test_damaged_state_dicts_are_one_error_line(root_files, tmp_path, capsys, case):
    folder, sd, _ = root_files
    damaged, words = _fuzz_cases(sd)[case]
    line = _import_error(capsys, tmp_path, damaged, folder / "features.h5")
    for w in words:
        assert w in line, (case, line)


def test_fuzzed_state_dicts_never_crash(root_files, tmp_path, capsys):
    """Random deletions, additions and reshapes of the block's keys: each import succeeds or is one error line."""
    folder, sd, _ = root_files
    rng = np.random.default_rng(0)
    keys = [k for k in sd if "func_" in k or "weights" in k or k == "fusion.bias"]
    for trial in range(12):
        damaged = dict(sd)
        for _ in range(int(rng.integers(1, 4))):
            k = keys[int(rng.integers(len(keys)))]
            action = rng.integers(3)
            if action == 0:
                damaged.pop(k, None)
            elif action == 1:
                damaged[k.replace("branches.", f"branches.{int(rng.integers(9))}")] = torch.randn(3)
            else:
                damaged[k] = torch.randn(*[int(s) + int(rng.integers(1, 3)) for s in sd[k].shape])
        src = tmp_path / f"fuzz{trial}.pt"
        torch.save(damaged, src)
        out = tmp_path / f"fuzz{trial}_out.pt"
        code, _, err = _run(capsys, "import", "deqfusion", src, "--features", folder / "features.h5", "--out", out,
                            "--no-evaluate")
        assert code in (0, 2)
        if code == 2:
            _one_error_line(err)
            assert not out.exists()


def test_sizes_that_do_not_fit_name_what_to_pass(root_files, tmp_path, capsys):
    folder, sd, feats = root_files
    write_features(tmp_path / "two.h5", ("a", "b"), [f.numpy() for f in feats[:2]], np.arange(N) % 4,
                   [f"c{i}" for i in range(4)])
    line = _import_error(capsys, tmp_path, sd, tmp_path / "two.h5")
    assert "fuses 3 modalities" in line and "--modalities" in line
    write_features(tmp_path / "small.h5", ("a", "b", "c"), [f.numpy()[:, :20] for f in feats], np.arange(N) % 4,
                   [f"c{i}" for i in range(4)])
    line = _import_error(capsys, tmp_path, sd, tmp_path / "small.h5")
    assert "fit neither" in line and "dump_features" in line
    write_features(tmp_path / "classes.h5", ("a", "b", "c"), [f.numpy() for f in feats], np.arange(N) % 3,
                   [f"c{i}" for i in range(3)])
    line = _import_error(capsys, tmp_path, sd, tmp_path / "classes.h5")
    assert "4 classes" in line and "3" in line
    line = _import_error(capsys, tmp_path, sd, folder / "features.h5", "--task", "multilabel")
    assert "--task multilabel" in line
    line = _import_error(capsys, tmp_path, sd, folder / "features.h5", "--modalities", "a,b,zzz")
    assert "zzz" in line


def test_the_converted_file_is_read_back_exactly(root_files, tmp_path, capsys):
    """What was written is what loads: the converted weights hold the file's values (stacked, concatenated)."""
    folder, sd, _ = root_files
    code, _, _ = _run(capsys, "import", "deqfusion", folder / "user.pt", "--features", folder / "features.h5",
                      "--out", tmp_path / "back.pt", "--no-evaluate")
    assert code == 0
    _same_weights(load_checkpoint(tmp_path / "back.pt").model.state_dict(), sd)
    assert read_dataset(folder / "features.h5").modality_names == ("a", "b", "c")
