"""Training learns on synthetic data; the train command writes a checkpoint that inspect reads.

Training runs on one intra-op thread here: torch's reductions round differently with more threads, and
over a training run that changes the weights, so the model would differ from machine to machine.
"""

import copy
import hashlib
import json

import numpy as np
import pytest
import torch

from deqstudio.cli import main
from deqstudio.core.logistic import logistic_regression_accuracy
from deqstudio.io.checkpoint import load_checkpoint
from deqstudio.io.dataset import write_dataset
from deqstudio.io.synthetic import make_synthetic
from deqstudio.workflows.training import TrainRequest, evaluate, train_model


@pytest.fixture
def one_thread():
    """Train on one intra-op thread, and give the next test the thread count it would have had."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(n=480, num_classes=4, seed=0)


def test_deq_udml_learns_well_above_chance(synthetic, one_thread):
    model, metrics, dependency, info = train_model(
        synthetic, TrainRequest(fusion="deq-udml", epochs=10, hidden=16, lr=3e-3, device="cpu", seed=0))
    # ten epochs are 50 optimiser steps on this small set: at the default 1e-3 the result depends on the
    # thread count's rounding (0.25 to 0.72); at 3e-3 it is 0.9 to 0.99 over seeds and thread counts
    assert metrics == {**metrics, **evaluate(model, synthetic, "test")}  # the stored metrics are the model's
    assert metrics["test_accuracy"] > 0.8  # chance is 0.25
    # ten epochs of a 16-wide model are not yet contractive on every sample (the bundled models, trained
    # to the end, converge on all of theirs: test_bundled_models); most samples must already converge
    assert metrics["test_converged_fraction"] > 0.6
    alpha = dependency["logit_magnitude"]
    assert set(alpha) == {"strong", "weak", "picture"}
    assert all(np.isfinite(v) and v > 0 for v in alpha.values())
    # dropping the informative modality costs more than dropping the weak one. The released code's logit
    # magnitude measures how loud a single-modality pass is, not how useful, and need not rank them so
    drop = dependency["loss_increase"]
    assert drop["strong"] > drop["weak"]
    torch.testing.assert_close(model.dependency, torch.tensor([alpha[n] for n in model.modality_names]))
    assert [h["phase"] for h in info["history"]][-1] == "uncertainty"


def test_logistic_reference_on_a_separable_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g)
    y = (x[:, 0] > 0).long()
    res = logistic_regression_accuracy(x[:200], y[:200], x[200:250], y[200:250], x[250:], y[250:], 2)
    assert res["test_accuracy"] > 0.9


def test_train_command_and_inspect(tmp_path, synthetic, capsys, one_thread):
    data = write_dataset(synthetic, tmp_path / "syn.h5")
    out = tmp_path / "model.pt"
    code = main(["train", "--dataset", str(data), "--out", str(out), "--fusion", "concat", "--epochs", "3",
                 "--hidden", "16", "--modalities", "strong,weak", "--quiet", "--device", "cpu"])
    assert code == 0 and out.exists()
    ck = load_checkpoint(out)
    assert ck.config.modality_names == ("strong", "weak")
    # the checkpoint names the file it was trained on (the dataset in memory has no file, so no hash)
    assert ck.dataset["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert ck.dataset["name"] == synthetic.name and ck.dataset["num_samples"] == len(synthetic)
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["type"] == "checkpoint" and info["config"]["fusion"] == "concat"
    assert 0 <= info["metrics"]["test_accuracy"] <= 1
    assert main(["inspect", str(data)]) == 0
    assert "3 classes" not in capsys.readouterr().out  # 4 classes
    assert main(["train", "--dataset", str(data), "--out", str(out), "--modalities", "sound", "--quiet"]) == 2
    assert "no modality 'sound'" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["inspect", str(tmp_path / "junk.pt")]) == 2
    assert "not a torch zip" in capsys.readouterr().err


# -- UDML as specified (DESIGN.md §3.3), the schedule for every length, reproducible runs ----------------------

from deqstudio.core import udml  # noqa: E402
from deqstudio.core.model import WEIGHTING_DEPENDENCY, WEIGHTING_UNCERTAINTY, WEIGHTING_UNIFORM, FusionModel  # noqa: E402
from deqstudio.core.training import TrainOptions, fit, logit_magnitude  # noqa: E402
from deqstudio.workflows.training import build_config, split_tensors  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(n=120, num_classes=4, seed=1)


def _manual_alpha(model, inputs):
    """Σ_classes mean |logits| of each modality alone, features as encoded (no UDML scaling), by hand."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        feats, _, _ = model.encode(inputs)
        alpha = []
        for m in range(len(feats)):
            alone = [f if j == m else torch.zeros_like(f) for j, f in enumerate(feats)]
            logits = model.head(model.fusion(alone).z_fuse)
            alpha.append(float(logits.abs().sum(dim=1).mean()))
    return torch.tensor(alpha)


def test_alpha_is_the_single_modality_pass_with_the_weighting_off(tiny):
    torch.manual_seed(0)
    model = FusionModel(build_config(tiny, TrainRequest(fusion="deq-udml", hidden=8)))
    x, _ = split_tensors(tiny, model.modality_names, "train")
    model.set_normalisation(*[[t.mean(0) for t in x], [t.std(0) for t in x]])
    model.dependency.copy_(torch.tensor([1.0, 3.0, 0.5]))
    model.weighting.fill_(WEIGHTING_DEPENDENCY)
    alpha = logit_magnitude(model, x)
    torch.testing.assert_close(alpha, _manual_alpha(model, x), rtol=1e-5, atol=1e-6)
    # the weighting is off, not merely uniform: the weighted pass (x ← (1 + w)x) gives other logits
    with torch.no_grad():
        weighted = torch.stack([model(x, zero=[j for j in range(3) if j != m]).logits.abs().sum(1).mean()
                                for m in range(3)])
    assert not torch.allclose(alpha, weighted, rtol=1e-3)


def test_udml_training_weights_every_phase_by_alpha_and_keeps_half_the_samples_clean(tiny):
    torch.manual_seed(0)
    model = FusionModel(build_config(tiny, TrainRequest(fusion="deq-udml", hidden=8)))
    tx, ty = split_tensors(tiny, model.modality_names, "train")
    vx, vy = split_tensors(tiny, model.modality_names, "val")
    calls = []

    def hook(module, args, out):
        if module.training:
            alpha_now = _manual_alpha(module, tx) if not calls or len(calls) % batches == 0 else None
            calls.append((int(module.weighting), module.dependency.clone(), out.weights.detach().clone(),
                          out.sigma_hat.detach().clone(), [t.clone() for t in args[0]], alpha_now))

    batch_size = 16
    batches = -(-len(ty) // batch_size)
    handle = model.register_forward_hook(hook)
    try:
        result = fit(model, tx, ty, vx, vy, TrainOptions(epochs=3, batch_size=batch_size, seed=0))
    finally:
        handle.remove()
    assert [r.phase for r in result.history] == ["clean", "dependency", "uncertainty"]
    assert result.best_epoch == 2 and int(model.weighting) == WEIGHTING_UNCERTAINTY
    assert len(calls) == 3 * batches
    for i, (mode, alpha, weights, sigma_hat, inputs, alpha_now) in enumerate(calls):
        epoch = i // batches
        if alpha_now is not None:  # the α an epoch weights by is the weighting-off pass of its starting weights
            torch.testing.assert_close(alpha, alpha_now, rtol=1e-4, atol=1e-6)
        if epoch < 2:  # clean and dependency phases: u = 1/α
            assert mode == WEIGHTING_DEPENDENCY
            u = (1.0 / alpha).expand_as(weights)
        else:  # uncertainty phase: u = 1/(s·α), s = σ̂²
            assert mode == WEIGHTING_UNCERTAINTY
            u = 1.0 / (alpha * sigma_hat * sigma_hat)
        torch.testing.assert_close(weights, 3 * u / u.sum(dim=1, keepdim=True))
        # rows left exactly as in the training split, per modality
        unchanged = torch.stack([(x[:, None, :] == t[None]).all(-1).any(1) for x, t in zip(inputs, tx)], dim=1)
        b = len(inputs[0])
        if epoch == 0:
            assert unchanged.all()  # the clean phase injects nothing
        else:  # half the samples clean in every modality (a noisy one is by chance with p = 1/11³)
            assert b // 2 <= int(unchanged.all(dim=1).sum()) <= b // 2 + 1
    # the model leaves with the α of its own final weights, by the same definition
    torch.testing.assert_close(model.dependency, _manual_alpha(model, tx), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("epochs", [1, 2])
def test_udml_refuses_a_schedule_without_all_three_phases(tiny, epochs, tmp_path, capsys):
    torch.manual_seed(0)
    model = FusionModel(build_config(tiny, TrainRequest(fusion="deq-udml", hidden=8)))
    tx, ty = split_tensors(tiny, model.modality_names, "train")
    with pytest.raises(ValueError, match="at least 3 epochs"):
        fit(model, tx, ty, tx, ty, TrainOptions(epochs=epochs))
    with pytest.raises(ValueError, match="at least 3 epochs"):
        train_model(tiny, TrainRequest(fusion="deq-udml", epochs=epochs, hidden=8, device="cpu"))
    data = write_dataset(tiny, tmp_path / "tiny.h5")
    out = tmp_path / "m.pt"
    capsys.readouterr()
    assert main(["train", "--dataset", str(data), "--out", str(out), "--fusion", "deq-udml",
                 "--epochs", str(epochs)]) == 2
    err = capsys.readouterr().err
    assert "error: deq-udml needs at least 3 epochs" in err and "Traceback" not in err
    assert not out.exists()


def _global_torch_state():
    return (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark, torch.random.get_rng_state())


def test_retraining_is_bit_identical_and_restores_the_global_torch_state(tiny):
    before = _global_torch_state()
    threads = 1 if before[0] != 1 else 2  # not the current count, so that restoring it is seen
    seen = []

    def progress(record):
        seen.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))

    req = TrainRequest(fusion="deq-udml", epochs=3, hidden=8, batch_size=16, device="cpu", seed=3, threads=threads)
    runs = [train_model(tiny, req, progress=progress) for _ in range(2)]
    after = _global_torch_state()
    assert after[:5] == before[:5] and torch.equal(after[5], before[5])
    assert set(seen) == {(threads, True)}
    (a, metrics_a, dep_a, info_a), (b, metrics_b, dep_b, _) = runs
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert dep_a == dep_b
    assert {k: v for k, v in metrics_a.items() if k != "train_seconds"} == \
        {k: v for k, v in metrics_b.items() if k != "train_seconds"}
    assert info_a["threads"] == threads and info_a["request"]["threads"] == threads
    assert info_a["cpu"] and info_a["torch"] == torch.__version__ and info_a["numpy"] == np.__version__
    assert info_a["deterministic"]["use_deterministic_algorithms"] is True


def test_train_command_sets_and_records_the_thread_count(tmp_path, tiny):
    data = write_dataset(tiny, tmp_path / "tiny.h5")
    for extra, threads in ((["--threads", "1"], 1), ([], torch.get_num_threads())):
        out = tmp_path / f"m{threads}.pt"
        before = torch.get_num_threads()
        assert main(["train", "--dataset", str(data), "--out", str(out), "--fusion", "concat", "--epochs", "1",
                     "--hidden", "8", "--quiet", "--device", "cpu", *extra]) == 0
        assert torch.get_num_threads() == before
        training = load_checkpoint(out).training
        assert training["threads"] == threads
        assert f"--threads {threads}" in training["command"] and training["command"].startswith("deqstudio train")
    assert main(["train", "--dataset", str(data), "--out", str(out), "--threads", "0", "--quiet"]) == 2


# The ablations that separate UDML's effects: noise augmentation of another fusion, deq-udml with w ≡ 1,
# deq-udml without the noise loss. Tiny runs on one thread; the assertions are on what training did.

def _training_forwards(model, options, data):
    """Fit ``model`` on ``data``'s train/val splits; return, per training forward, (inputs, weights)."""
    tx, ty = split_tensors(data, model.modality_names, "train")
    vx, vy = split_tensors(data, model.modality_names, "val")
    seen = []

    def hook(module, args, out):
        if module.training:
            seen.append(([t.clone() for t in args[0]], None if out.weights is None else out.weights.detach().clone()))

    handle = model.register_forward_hook(hook)
    try:
        result = fit(model, tx, ty, vx, vy, options)
    finally:
        handle.remove()
    return result, seen, tx


def _model(data, fusion, seed=0):
    torch.manual_seed(seed)
    return FusionModel(build_config(data, TrainRequest(fusion=fusion, hidden=8)))


@pytest.mark.parametrize("fusion", ["weighted-sum", "deq"])
def test_noise_augmentation_injects_udmls_noise_in_the_same_epochs(tiny, one_thread, fusion):
    opts = dict(epochs=5, batch_size=16, seed=4, patience=50)
    udml_run, udml_seen, tx = _training_forwards(_model(tiny, "deq-udml"), TrainOptions(**opts), tiny)
    aug_run, aug_seen, _ = _training_forwards(_model(tiny, fusion), TrainOptions(**opts, noise_augment=True), tiny)
    plain_run, plain_seen, _ = _training_forwards(_model(tiny, fusion), TrainOptions(**opts), tiny)
    # the same schedule: no noise in the first half, noise from then on, epoch by epoch
    noise = [r.noise for r in udml_run.history]
    assert noise == [False, False, True, True, True]
    assert [r.noise for r in aug_run.history] == noise and [r.phase for r in aug_run.history] == \
        [r.phase for r in udml_run.history]
    assert not any(r.noise for r in plain_run.history)
    # the same batches, levels and noise values: UDML's training draws come from the run's own generator,
    # which neither fusion uses for anything else, so with one seed the noisy inputs are identical
    assert len(aug_seen) == len(udml_seen) == len(plain_seen)
    for (a, _), (u, _) in zip(aug_seen, udml_seen):
        assert all(torch.equal(x, y) for x, y in zip(a, u))
    batches = len(aug_seen) // 5
    for i, ((inputs, _), (clean_inputs, _)) in enumerate(zip(aug_seen, plain_seen)):
        unchanged = torch.stack([(x[:, None, :] == t[None]).all(-1).any(1) for x, t in zip(inputs, tx)], dim=1)
        if not noise[i // batches]:
            assert unchanged.all()
        else:  # half the samples clean in every modality, the rest noisy in some modality
            b = len(inputs[0])
            assert b // 2 <= int(unchanged.all(dim=1).sum()) <= b // 2 + 1
        # without the option, the same fusion trains on clean rows only
        assert all(((x[:, None, :] == t[None]).all(-1).any(1)).all() for x, t in zip(clean_inputs, tx))
    # the saved epoch comes from deq-udml's comparable epochs (its last phase): the model leaves noise-trained
    assert aug_run.best_epoch >= 3 and aug_run.history[aug_run.best_epoch].phase == "uncertainty"


def test_fixed_udml_weights_are_exactly_one_in_training_and_after(tiny, one_thread):
    opts = dict(epochs=5, batch_size=16, seed=2, patience=50)
    model = _model(tiny, "deq-udml")
    predictor_before = copy.deepcopy(model.noise_predictors.state_dict())
    fixed_run, fixed_seen, tx = _training_forwards(model, TrainOptions(**opts, udml_weights="fixed"), tiny)
    udml_run, udml_seen, _ = _training_forwards(_model(tiny, "deq-udml"), TrainOptions(**opts), tiny)
    assert all(torch.equal(w, torch.ones_like(w)) for _, w in fixed_seen)
    assert any(not torch.equal(w, torch.ones_like(w)) for _, w in udml_seen)
    # everything else kept: the same noise in the same epochs, and σ̂ still learns from the noise loss
    assert [r.noise for r in fixed_run.history] == [r.noise for r in udml_run.history]
    for (a, _), (u, _) in zip(fixed_seen, udml_seen):
        assert all(torch.equal(x, y) for x, y in zip(a, u))
    after = model.noise_predictors.state_dict()
    assert any(not torch.equal(after[k], predictor_before[k]) for k in after)
    # the saved model keeps w ≡ 1 at inference
    assert int(model.weighting) == WEIGHTING_UNIFORM
    with torch.no_grad():
        out = model.eval()(tx)
    assert torch.equal(out.weights, torch.ones_like(out.weights))


def test_without_the_noise_loss_the_noise_predictor_gets_no_training_signal(tiny, one_thread):
    opts = dict(epochs=4, batch_size=16, seed=1, patience=50)
    model = _model(tiny, "deq-udml")
    before = copy.deepcopy(model.state_dict())
    run, _, _ = _training_forwards(model, TrainOptions(**opts, noise_loss_weight=0.0), tiny)
    after = model.state_dict()
    predictor = [k for k in after if k.startswith("noise_predictors.")]
    assert predictor and all(torch.equal(after[k], before[k]) for k in predictor)
    # the rest trains, with noise and the UDML weighting as usual
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith("trunks."))
    assert [r.noise for r in run.history] == [False, False, True, True]
    assert int(model.weighting) == WEIGHTING_UNCERTAINTY


@pytest.mark.parametrize("args, message", [
    (["--fusion", "deq-udml", "--noise-augment"], "--noise-augment is for fusions other than deq-udml"),
    (["--fusion", "deq", "--udml-weights", "fixed"], "--udml-weights fixed applies to deq-udml only, not deq"),
    (["--fusion", "concat", "--no-noise-loss"], "--no-noise-loss applies to deq-udml only, not concat"),
    (["--fusion", "deq-udml", "--udml-weights", "even"], "unknown UDML weighting 'even'; choose one of udml, fixed"),
    (["--fusion", "weighted-sum", "--noise-augment", "--epochs", "2"], "--noise-augment needs at least 3 epochs"),
])
def test_train_refuses_options_that_do_not_apply_in_one_line(tmp_path, tiny, capsys, args, message):
    data = write_dataset(tiny, tmp_path / "tiny.h5")
    out = tmp_path / "m.pt"
    capsys.readouterr()
    assert main(["train", "--dataset", str(data), "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("fusion, flags", [
    ("weighted-sum", ["--noise-augment"]),
    ("deq-udml", ["--udml-weights", "fixed", "--no-noise-loss"]),
])
def test_the_recorded_command_holds_the_options_and_reproduces_the_run(tmp_path, tiny, fusion, flags):
    import shlex

    data = write_dataset(tiny, tmp_path / "tiny.h5")
    first = tmp_path / "first.pt"
    assert main(["train", "--dataset", str(data), "--out", str(first), "--fusion", fusion, "--epochs", "3",
                 "--hidden", "8", "--quiet", "--device", "cpu", "--threads", "1", *flags]) == 0
    ck = load_checkpoint(first)
    command = ck.training["command"]
    assert " ".join(flags) in command
    request = ck.training["request"]
    assert request["noise_augment"] == ("--noise-augment" in flags)
    assert request["udml_weights"] == ("fixed" if "fixed" in flags else "udml")
    assert request["noise_loss"] == ("--no-noise-loss" not in flags)
    assert ck.training["options"]["noise_loss_weight"] == (0.0 if "--no-noise-loss" in flags else udml.NOISE_LOSS_WEIGHT)
    assert [h["noise"] for h in ck.training["history"]] == [False, True, True]
    # the recorded command, run again as written (only --out changed), gives the same weights and accuracy
    argv = shlex.split(command)
    assert argv[:2] == ["deqstudio", "train"]
    second = tmp_path / "second.pt"
    argv[argv.index("--out") + 1] = str(second)
    assert main([*argv[1:], "--quiet"]) == 0
    again = load_checkpoint(second)
    a, b = ck.model.state_dict(), again.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.metrics["test_accuracy"] == ck.metrics["test_accuracy"]
