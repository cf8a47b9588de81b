"""The DEQ fusion block against hand-written reference equations, and gradients through its fixed point."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deqstudio.core.fusion.deq_block import DEQFusionBlock
from deqstudio.core.fusion.deq_fusion import BackwardSettings, DEQFusion
from deqstudio.core.solvers import SolverSettings
from deqstudio.core.jacobian import jacobian_frobenius_estimate, jacobian_regulariser


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            is_norm_scale = name.endswith("weight") and ("gn" in name or "norm" in name)
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype) + (1.0 if is_norm_scale else 0.0))


def _reference_f(block: DEQFusionBlock, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The official code's equations, one modality at a time, written out by hand."""
    n, d = block.num_modalities, block.dim
    zs = [z[:, i * d : (i + 1) * d] for i in range(n)]
    xs = [x[:, i * d : (i + 1) * d] for i in range(n)]
    z_fuse, x_fuse = z[:, n * d :], x[:, n * d :]

    def gn(t, weight, bias, i):
        return F.group_norm(t, 4, weight[i * d : (i + 1) * d], bias[i * d : (i + 1) * d])

    outs = []
    for i in range(n):
        h = F.relu(gn(zs[i] @ block.w1[i].T + block.b1[i], block.gn1_weight, block.gn1_bias, i))
        h = h @ block.w2[i].T + block.b2[i] + xs[i]
        h = gn(h, block.gn2_weight, block.gn2_bias, i) + zs[i]
        outs.append(gn(F.relu(h), block.gn3_weight, block.gn3_bias, i))
    gated = sum((block.gate.weight @ (outs[i] + z_fuse).T).T + block.gate.bias for i in range(n))
    extracted = sum(z_fuse * ((block.gate.weight @ (outs[i] + z_fuse).T).T + block.gate.bias) for i in range(n))
    assert torch.allclose(extracted, z_fuse * gated)
    fused = F.group_norm(F.relu(extracted @ block.fuse.weight.T + block.fuse.bias + x_fuse), 4, block.fuse_norm.weight, block.fuse_norm.bias)
    return torch.cat(outs + [fused], dim=1)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_block_matches_reference_equations_on_fixed_weights(n):
    block = DEQFusionBlock(tuple("abc"[:n]), 8).double()
    _randomise(block)
    g = torch.Generator().manual_seed(1)
    features = [torch.randn(5, 8, generator=g, dtype=torch.float64) for _ in range(n)]
    x = block.inject(features)
    expected_fuse = sum(block.mix_weights[i] * features[i] for i in range(n)) + block.mix_bias
    torch.testing.assert_close(x[:, n * 8 :], expected_fuse)
    z = torch.randn(5, (n + 1) * 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(block(z, x), _reference_f(block, z, x))


def test_block_layout_names_modalities_then_fused():
    block = DEQFusionBlock(("pix", "fou"), 12)
    assert block.layout.names == ("pix", "fou", "fused")
    assert block.layout.sizes == (12, 12, 12)
    assert block.state_dim == 36


def test_gates_have_one_vector_per_modality():
    block = DEQFusionBlock(("a", "b"), 8)
    x = block.inject([torch.randn(3, 8), torch.randn(3, 8)])
    z = torch.randn(3, 24)
    a = block.gates(z, x)
    assert a.shape == (3, 2, 8)
    zm, zf = z[:, :16].view(3, 2, 8), z[:, 16:]
    fm = block.branches(zm, x[:, :16].view(3, 2, 8))
    torch.testing.assert_close(a.sum(dim=1), block.gate_sum(fm, zf))


def test_ablations_change_the_equations_as_documented():
    torch.manual_seed(0)
    feats = [torch.randn(2, 8), torch.randn(2, 8)]
    full = DEQFusionBlock(("a", "b"), 8)
    x = full.inject(feats)
    z = torch.randn(2, 24)
    no_ftheta = DEQFusionBlock(("a", "b"), 8, "no-ftheta")
    no_ftheta.load_state_dict(full.state_dict())
    torch.testing.assert_close(no_ftheta(z, x)[:, :16], x[:, :16])
    no_ffuse = DEQFusionBlock(("a", "b"), 8, "no-ffuse")
    no_ffuse.load_state_dict(full.state_dict())
    out = no_ffuse(z, x)
    torch.testing.assert_close(out[:, 16:], out[:, :8] + out[:, 8:16])
    no_gate = DEQFusionBlock(("a", "b"), 8, "no-gate")
    no_gate.load_state_dict(full.state_dict())
    out = no_gate(z, x)
    expected = full.fuse_norm(F.relu(full.fuse(out[:, :8] + out[:, 8:16]) + x[:, 16:]))
    torch.testing.assert_close(out[:, 16:], expected)
    with pytest.raises(ValueError, match="unknown ablation"):
        DEQFusionBlock(("a",), 8, "no-everything")
    with pytest.raises(ValueError, match="multiple of 4"):
        DEQFusionBlock(("a",), 6)


def _small_deq(backward="implicit", ablation="full"):
    torch.manual_seed(5)
    settings = SolverSettings(tol=1e-12, max_iter=400)
    backward = BackwardSettings(mode=backward, tol=1e-12, max_iter=400)
    return DEQFusion(("a", "b"), 16, settings=settings, backward=backward, ablation=ablation,
                     unrolled_steps=300).double()


def _features(seed=4):
    g = torch.Generator().manual_seed(seed)
    return [3 * torch.randn(3, 16, generator=g, dtype=torch.float64) for _ in range(2)]


def test_forward_solves_to_the_fixed_point():
    deq = _small_deq().eval()
    out = deq(_features())
    assert out.trace.converged.all()
    residual = deq.block(out.z_star, out.injection) - out.z_star
    assert residual.norm() / out.z_star.norm() < 1e-10


def test_implicit_gradient_matches_finite_differences():
    deq = _small_deq().train()
    feats = [f.clone().requires_grad_() for f in _features()]
    weight = torch.randn(3, 16, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    loss = (deq(feats).z_fuse * weight).sum()
    loss.backward()
    eps = 1e-6
    deq.eval()
    for m in range(2):
        for idx in [(0, 0), (1, 3), (2, 15)]:
            plus = [f.detach().clone() for f in feats]
            minus = [f.detach().clone() for f in feats]
            plus[m][idx] += eps
            minus[m][idx] -= eps
            with torch.no_grad():
                fd = ((deq(plus).z_fuse - deq(minus).z_fuse) * weight).sum() / (2 * eps)
            assert abs(float(fd) - float(feats[m].grad[idx])) < 1e-6 * max(1.0, abs(float(fd)))


def test_implicit_gradient_matches_backprop_through_a_converged_unrolled_solve():
    implicit = _small_deq().train()
    unrolled = _small_deq(ablation="unrolled").train()
    unrolled.load_state_dict(implicit.state_dict())
    feats = _features()
    weight = torch.randn(3, 16, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    (implicit(feats).z_fuse * weight).sum().backward()
    (unrolled(feats).z_fuse * weight).sum().backward()
    for (name, p), q in zip(implicit.named_parameters(), unrolled.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-8, rtol=1e-6, msg=name)


def test_phantom_gradient_points_the_same_way_as_the_implicit_one():
    implicit = _small_deq().train()
    phantom = _small_deq(backward="phantom").train()
    phantom.backward = BackwardSettings(mode="phantom", phantom_steps=5, phantom_tau=0.8)
    phantom.load_state_dict(implicit.state_dict())
    feats = _features()
    implicit(feats).z_fuse.square().sum().backward()
    phantom(feats).z_fuse.square().sum().backward()
    g1 = torch.cat([p.grad.flatten() for p in implicit.parameters()])
    g2 = torch.cat([p.grad.flatten() for p in phantom.parameters()])
    assert torch.nn.functional.cosine_similarity(g1, g2, dim=0) > 0.5


def _residual(deq, z, x):
    """‖f(z) − z‖ / (‖f(z)‖ + 1e-9) per sample, as the trace defines it."""
    fz = deq.block(z, x)
    return ((fz - z).norm(dim=1) / (fz.norm(dim=1) + 1e-9)).numpy()


@pytest.mark.parametrize("ablation, steps", [("no-deq", 1), ("unrolled", 7)])
def test_fixed_step_modes_output_f_k_of_zero_and_record_the_iterates_up_to_it(ablation, steps):
    deq = _small_deq(ablation=ablation).eval()
    deq.unrolled_steps = steps
    feats = _features()
    with torch.no_grad():
        out = deq(feats, record_states=True)
        x = deq.block.inject(feats)
        expected = torch.zeros_like(x)
        for _ in range(steps):
            expected = deq.block(expected, x)
    torch.testing.assert_close(out.z_star, expected, atol=0, rtol=0)
    torch.testing.assert_close(out.z_fuse, deq.block.fused(expected), atol=0, rtol=0)
    t = out.trace
    # the iterates z_0 … z_K: K + 1 evaluations, the last one measuring the output's residual
    assert t.evaluations == steps + 1 and (t.nstep == steps + 1).all()
    assert (t.best_step == steps).all()
    assert not t.states[:, 0].any()
    torch.testing.assert_close(t.states[:, steps], out.z_star, atol=0, rtol=0)
    with torch.no_grad():
        np.testing.assert_allclose(t.final_rel, _residual(deq, out.z_star, x), rtol=1e-9)


def test_fixed_step_mode_stopped_by_a_non_finite_value_still_outputs_f_k_of_zero():
    deq = _small_deq(ablation="unrolled").eval()
    deq.unrolled_steps = 5
    feats = _features()
    feats[0][1, 3] = float("nan")  # sample 1's f(z) is NaN from the first evaluation on
    with torch.no_grad():
        out = deq(feats)
        x = deq.block.inject(feats)
        expected = torch.zeros_like(x)
        for _ in range(5):
            expected = deq.block(expected, x)
    assert out.trace.reason[1] == "non-finite" and out.trace.nstep[1] == 1
    assert torch.isnan(out.z_star[1]).any()  # the true output, not the finite start it stopped at
    torch.testing.assert_close(out.z_star, expected, atol=0, rtol=0, equal_nan=True)
    assert (out.trace.nstep[[0, 2]] == 6).all()


def test_fixed_step_modes_train_through_the_same_output():
    for ablation, steps in (("no-deq", 1), ("unrolled", 4)):
        deq = _small_deq(ablation=ablation)
        deq.unrolled_steps = steps
        feats = _features()
        evaluated = deq.eval()(feats).z_fuse.detach()
        trained = deq.train()(feats)
        assert trained.trace is None and trained.z_fuse.requires_grad
        torch.testing.assert_close(trained.z_fuse.detach(), evaluated, atol=1e-12, rtol=0)


@pytest.mark.parametrize("solver", ["fixed_point", "anderson", "broyden"])
def test_deq_returns_its_best_iterate_and_reports_its_residual(solver):
    deq = _small_deq().eval()
    deq.settings = deq.settings.with_(solver=solver, tol=1e-6)
    feats = _features()
    with torch.no_grad():
        out = deq(feats, record_states=True)
        x = deq.block.inject(feats)
    t = out.trace
    rows = np.arange(3)
    torch.testing.assert_close(out.z_star, t.states[rows, t.best_step], atol=0, rtol=0)
    with torch.no_grad():
        np.testing.assert_allclose(t.final_rel, _residual(deq, out.z_star, x), rtol=1e-9)
    assert (t.final_rel <= 1e-6).all() and t.converged.all()


def test_jacobian_estimate_matches_exact_frobenius_norm():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(6, 6, generator=g, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    z = torch.randn(2, 6, generator=g, dtype=torch.float64).requires_grad_()
    fz = torch.tanh(z @ W.T + b)
    exact = sum(
        torch.autograd.functional.jacobian(lambda v: torch.tanh(v @ W.T + b), z[i].detach()).square().sum()
        for i in range(2)
    )
    estimate = jacobian_frobenius_estimate(fz, z, vectors=4000, generator=g, create_graph=False)
    assert abs(float(estimate) / float(exact) - 1) < 0.05
    reg = jacobian_regulariser(fz, z, vectors=1, generator=g)
    assert reg.requires_grad and reg.item() > 0


def test_jacobian_loss_is_returned_when_weighted():
    deq = _small_deq().train()
    deq.jac_weight = 1.0
    out = deq(_features())
    assert out.jac_loss.item() > 0 and out.jac_loss.requires_grad
