"""The model wrapper, its config, and every fusion kind."""

import numpy as np
import pytest
import torch

from deqstudio.core.config import FUSIONS, ModalitySpec, ModelConfig
from deqstudio.core.model import WEIGHTING_DEPENDENCY, FusionModel

MODS = (
    ModalitySpec("pix", 20, "image", (5, 4)),
    ModalitySpec("fou", 7),
    ModalitySpec("zer", 5),
)


def _inputs(batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [3 * torch.randn(batch, m.input_dim, generator=g) for m in MODS]


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_classifies_a_batch(fusion):
    torch.manual_seed(0)
    model = FusionModel(ModelConfig(MODS, num_classes=4, fusion=fusion, hidden=16, encoder_hidden=24)).eval()
    out = model(_inputs())
    assert out.logits.shape == (6, 4)
    assert torch.isfinite(out.logits).all()
    if fusion in ("deq", "deq-udml"):
        assert out.trace is not None and out.trace.block_names == ("pix", "fou", "zer", "fused")
    if fusion == "deq-udml":
        assert out.sigma_hat.shape == (6, 3) and (out.sigma_hat > 0).all()
        torch.testing.assert_close(out.weights.sum(dim=1), torch.full((6,), 3.0))


def test_training_step_runs_backward_for_every_fusion():
    for fusion in FUSIONS:
        torch.manual_seed(0)
        model = FusionModel(ModelConfig(MODS, num_classes=3, fusion=fusion, hidden=16, encoder_hidden=24, jac_weight=0.1))
        model.train()
        out = model(_inputs())
        loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 0, 1, 2]))
        if out.jac_loss is not None:
            loss = loss + out.jac_loss
        loss.backward()
        grads = [p.grad for p in model.head.parameters()] if fusion != "late" else [p.grad for p in model.unimodal_heads.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), fusion


def test_playback_extras_per_step():
    torch.manual_seed(0)
    model = FusionModel(ModelConfig(MODS, num_classes=4, fusion="deq", hidden=16, encoder_hidden=24)).eval()
    out = model(_inputs(batch=2), playback=True)
    t = out.trace
    probs = t.extras["probabilities"]
    assert probs.shape == (2, t.evaluations, 4)
    for b in range(2):
        k = t.nstep[b]
        np.testing.assert_allclose(probs[b, :k].sum(axis=1), 1.0, rtol=1e-5)
        # the best step's probabilities are the model's prediction
        np.testing.assert_allclose(probs[b, t.best_step[b]], torch.softmax(out.logits[b], 0).detach().numpy(), rtol=1e-4, atol=1e-6)
    assert t.extras["gates"].shape == (2, t.evaluations, 3)
    share = t.extras["gate_share"][0, : t.nstep[0]]
    # step 0 is the zero start: z_fuse = 0 admits nothing, so there is no share to split
    assert np.isnan(share[0]).all()
    np.testing.assert_allclose(share[1:].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("mode", ["anderson", "fixed_point", "broyden", "no-deq", "unrolled"])
def test_every_playback_step_describes_its_own_iterate(mode):
    torch.manual_seed(0)
    ablation = mode if mode in ("no-deq", "unrolled") else "full"
    solver = mode if ablation == "full" else "anderson"
    config = ModelConfig(MODS, num_classes=4, fusion="deq", hidden=16, encoder_hidden=24, ablation=ablation,
                         solver=solver, max_iter=80, unrolled_steps=6)
    model = FusionModel(config).eval()
    with torch.no_grad():
        out = model(_inputs(batch=3), playback=True, record_states=True)
    t = out.trace
    rows = np.arange(3)
    if ablation != "full":
        steps = 1 if ablation == "no-deq" else 6
        assert (t.nstep == steps + 1).all() and (t.best_step == steps).all()
    # the float64 reference: the head and the gates applied to each recorded iterate z_k
    ref = FusionModel(config).double().eval()
    ref.load_state_dict(model.state_dict())
    block, head = ref.fusion.block, ref.head
    x = out.injection.double()
    with torch.no_grad():
        for b in range(3):
            k = int(t.nstep[b])
            zk = t.states[b, :k].double()
            xb = x[b : b + 1].expand(k, -1)
            expected = torch.softmax(head(block.fused(zk)), dim=1).numpy()
            np.testing.assert_allclose(t.extras["probabilities"][b, :k], expected, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(t.extras["gates"][b, :k], block.gates(zk, xb).mean(dim=2).numpy(),
                                       rtol=1e-4, atol=1e-5)
            # step 0 of the zero start is the head of a zero state: the softmax of its bias
            assert not zk[0].any()
            np.testing.assert_allclose(t.extras["probabilities"][b, 0], torch.softmax(head.bias, 0).numpy(), rtol=1e-5)
        # the returned state is the best step's iterate: its residual, its probabilities
        z = out.z_star.double()
        torch.testing.assert_close(out.z_star, t.states[rows, t.best_step], atol=0, rtol=0)
        fz = block(z, x)
        # the model solves in float32: a residual it measured is good to a few float32 ulps of ‖f(z)‖
        np.testing.assert_allclose(t.final_rel, ((fz - z).norm(dim=1) / (fz.norm(dim=1) + 1e-9)).numpy(),
                                   rtol=1e-3, atol=30 * torch.finfo(torch.float32).eps)
        final = torch.softmax(out.logits, dim=1).numpy()
    np.testing.assert_allclose(t.at_best(t.extras["probabilities"]), final, rtol=1e-5, atol=1e-7)


def test_zeroing_modalities_changes_features_only_there():
    torch.manual_seed(0)
    model = FusionModel(ModelConfig(MODS, num_classes=4, fusion="concat", hidden=16, encoder_hidden=24)).eval()
    feats, _, _ = model.encode(_inputs(), zero=[0, 2])
    assert feats[0].abs().sum() == 0 and feats[2].abs().sum() == 0 and feats[1].abs().sum() > 0


def test_normalisation_is_applied():
    torch.manual_seed(0)
    model = FusionModel(ModelConfig(MODS, num_classes=4, fusion="sum", hidden=16, encoder_hidden=24)).eval()
    x = _inputs()
    before = model(x).logits
    model.set_normalisation([t.mean(0) for t in x], [t.std(0) for t in x])
    shifted = [t * 1.0 for t in x]
    assert not torch.allclose(model(shifted).logits, before)
    means, _ = model.normalisation()
    torch.testing.assert_close(means[1], x[1].mean(0))


def test_udml_dependency_weighting_uses_stored_alpha():
    torch.manual_seed(0)
    model = FusionModel(ModelConfig(MODS, num_classes=4, fusion="deq-udml", hidden=16, encoder_hidden=24)).eval()
    model.dependency.copy_(torch.tensor([1.0, 2.0, 4.0]))
    model.weighting.fill_(WEIGHTING_DEPENDENCY)
    out = model(_inputs())
    u = torch.tensor([1.0, 0.5, 0.25])
    torch.testing.assert_close(out.weights[0], 3 * u / u.sum())


def test_config_round_trips_through_plain_dict():
    cfg = ModelConfig(MODS, num_classes=10, fusion="deq", hidden=32, class_names=tuple("0123456789"),
                      solver_options={"m": 5})
    d = cfg.to_dict()
    assert d["modalities"][0]["image_shape"] == [5, 4]
    assert ModelConfig.from_dict(d) == cfg


@pytest.mark.parametrize("change, message", [
    ({"fusion": "attention"}, "unknown fusion"),
    ({"num_classes": 1}, "num_classes"),
    ({"hidden": 30}, "multiple of 4"),
    ({"ablation": "no-gate", "fusion": "concat"}, "DEQ fusions only"),
    ({"class_names": ("a", "b")}, "class names"),
])
def test_bad_configs_are_refused_with_a_reason(change, message):
    base = dict(modalities=MODS, num_classes=4)
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**base, **change})


def test_bad_modalities_are_refused():
    with pytest.raises(ValueError, match="does not hold"):
        ModalitySpec("img", 10, "image", (3, 3))
    with pytest.raises(ValueError, match="unique"):
        ModelConfig((ModalitySpec("a", 3), ModalitySpec("a", 4)), num_classes=2)
    with pytest.raises(ValueError, match="unknown model config key"):
        ModelConfig.from_dict({"modalities": [], "num_classes": 2, "colour": "red"})


def test_wrong_input_width_is_a_clear_error():
    model = FusionModel(ModelConfig(MODS, num_classes=4, fusion="sum", hidden=16))
    x = _inputs()
    x[1] = x[1][:, :3]
    with pytest.raises(ValueError, match="'fou': expected 7 features, got 3"):
        model(x)
