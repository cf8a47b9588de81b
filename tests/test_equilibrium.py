"""Equilibrium analyses against independent float64 references on small models: ρ(J) against dense eigenvalues,
block coupling against dense Jacobian blocks, sensitivity against central differences with re-solves, the linear
response against the actual shift of a tiny input change, multiple starts on a map with two equilibria, and the
finite-difference derivatives against autograd."""

import copy

import numpy as np
import pytest
import torch

from deqstudio.core.adapter import FINITE_DIFFERENCE, FixedPointProblem
from deqstudio.core.equilibrium import EquilibriumOptions, Reference, analyse_equilibrium, linearise
from deqstudio.core.equilibrium.analysis import linear_shift, spectral_radii
from deqstudio.core.equilibrium.linear import adjoint_sensitivity
from deqstudio.core.equilibrium.spectral import arnoldi_radius, dense_radius, observed_contraction
from deqstudio.core.equilibrium.starts import multiple_starts
from deqstudio.core.native import NativeAdapter
from deqstudio.core.solvers import PerSampleMap, SolverSettings, solve
from deqstudio.core.solvers.batch_map import BlockLayout
from deqstudio.io.checkpoint import load_checkpoint
from deqstudio.io.dataset import read_dataset

TIGHT = SolverSettings(max_iter=300, tol=1e-12, stop_mode="abs")  # float64 solves to round-off


@pytest.fixture(scope="module")
def small64(small_files):
    """The small deq-udml checkpoint in float64, the dataset, and test samples its tight solve converges on."""
    ck, data = small_files
    model = copy.deepcopy(load_checkpoint(ck).model).double().eval()
    adapter = NativeAdapter(model)
    ds = read_dataset(data)
    ids = ds.split("test")[:12]
    run = adapter(ds.arrays(adapter.modality_names, ids), TIGHT)
    ok = ids[run.trace.converged]
    assert len(ok) >= 4, "the small model converges on too few test samples"
    return adapter, ds, ok[:4]


def _inputs(adapter, ds, ids):
    return [x.astype(np.float64) for x in ds.arrays(adapter.modality_names, np.asarray(ids))]


def _solved(adapter, inputs):
    run = adapter(inputs, TIGHT)
    assert run.trace.converged.all()
    return run


def _reference_jacobian(adapter, inputs, z):
    """∂f/∂z at z by torch.autograd.functional.jacobian of the fusion block itself (float64)."""
    model = adapter.model
    with torch.no_grad():
        injection = adapter._injection(adapter._tensors(inputs))
    block = model.fusion.block
    return torch.autograd.functional.jacobian(lambda v: block(v[None], injection)[0], torch.as_tensor(z[0])).numpy()


def _analyse(adapter, inputs, run, **kw):
    problem = adapter.fixed_point_problem(inputs)
    return analyse_equilibrium(problem, torch.as_tensor(run.z_star), TIGHT, block_names=adapter.block_names,
                               modality_names=adapter.modality_names, **kw)


def test_spectral_radius_matches_the_dense_eigenvalues(small64):
    adapter, ds, ids = small64
    for sample in ids:
        inputs = _inputs(adapter, ds, [sample])
        run = _solved(adapter, inputs)
        reference = np.abs(np.linalg.eigvals(_reference_jacobian(adapter, inputs, run.z_star))).max()
        dense = _analyse(adapter, inputs, run, options=EquilibriumOptions(random_starts=0))
        assert dense.spectral_method == "dense"
        assert dense.spectral_radius == pytest.approx(reference, rel=1e-8)
        # Arnoldi on Jacobian-vector products only (no dense Jacobian), to a converged Ritz value
        krylov = _analyse(adapter, inputs, run, options=EquilibriumOptions(random_starts=0, dense_max=0,
                                                                           arnoldi_steps=64))
        assert krylov.spectral_method == "arnoldi"
        assert krylov.spectral_radius == pytest.approx(reference, rel=1e-6)
        assert dense.unstable == (reference >= 1)


def test_batched_arnoldi_gives_each_rows_own_radius(small64):
    adapter, ds, ids = small64
    inputs = _inputs(adapter, ds, ids)
    run = _solved(adapter, inputs)
    radii = spectral_radii(adapter.fixed_point_problem(inputs), run.z_star, steps=64)
    for i, sample in enumerate(ids):
        one = _inputs(adapter, ds, [sample])
        reference = np.abs(np.linalg.eigvals(_reference_jacobian(adapter, one, run.z_star[i : i + 1]))).max()
        assert radii[i] == pytest.approx(reference, rel=1e-6)


def test_arnoldi_finds_the_radius_of_known_matrices():
    rng = np.random.default_rng(0)
    D = 40
    for target in (0.5, 1.3):
        Q = np.linalg.qr(rng.normal(size=(D, D)))[0]
        eigen = np.concatenate([[target], rng.uniform(-0.6, 0.6, D - 1) * target])
        A = torch.as_tensor(Q @ np.diag(eigen) @ Q.T + np.triu(rng.normal(size=(D, D)) * 0.0))
        nonnormal = torch.as_tensor(np.triu(rng.normal(size=(D, D)), 1) * 0.1)  # Schur form: same eigenvalues
        B = torch.as_tensor(Q) @ (torch.diag(torch.as_tensor(eigen)) + nonnormal) @ torch.as_tensor(Q.T)
        for M in (A, B):
            est = arnoldi_radius(lambda v, M=M: v @ M.T, 1, D, max_steps=D, tol=1e-10)
            assert est.radius[0] == pytest.approx(dense_radius(M[None])[0], rel=1e-8)
            assert est.radius[0] == pytest.approx(target, rel=1e-8)


def test_coupling_is_the_spectral_norm_of_each_dense_jacobian_block(small64):
    adapter, ds, ids = small64
    inputs = _inputs(adapter, ds, ids[:1])
    run = _solved(adapter, inputs)
    J = _reference_jacobian(adapter, inputs, run.z_star)
    d = adapter.blocks[0].size
    n = len(adapter.blocks)
    reference = np.array([[np.linalg.norm(J[a * d:(a + 1) * d, b * d:(b + 1) * d], 2) for b in range(n)]
                          for a in range(n)])
    dense = _analyse(adapter, inputs, run, options=EquilibriumOptions(random_starts=0))
    np.testing.assert_allclose(dense.coupling, reference, rtol=1e-9, atol=1e-12)
    # the modality blocks update from themselves only; the fused block reads every block
    assert np.all(reference[:n - 1, :][~np.eye(n, dtype=bool)[:n - 1]] == 0)
    assert np.all(reference[n - 1] > 0)
    power = _analyse(adapter, inputs, run, options=EquilibriumOptions(random_starts=0, dense_max=0))
    np.testing.assert_allclose(power.coupling, reference, rtol=2e-2, atol=1e-9)


def test_sensitivity_matches_central_differences_with_a_new_solve_each(small64):
    adapter, ds, ids = small64
    inputs = _inputs(adapter, ds, ids[:1])
    run = _solved(adapter, inputs)
    label = int(run.probabilities[0].argmax())
    report = _analyse(adapter, inputs, run, options=EquilibriumOptions(random_starts=0))
    assert report.labels == (label,) and report.adjoint[0].converged and not report.adjoint[0].fallback
    lin = linearise(adapter.fixed_point_problem(inputs), torch.as_tensor(run.z_star))
    grads, _ = adjoint_sensitivity(lin, torch.tensor([label]), TIGHT)
    for m, x in enumerate(inputs):
        size = x.shape[1]
        h = 1e-5 * np.maximum(np.abs(x[0]), 1.0)
        bumped = [np.repeat(v, 2 * size, axis=0) for v in inputs]
        bumped[m][np.arange(size), np.arange(size)] += h
        bumped[m][size + np.arange(size), np.arange(size)] -= h
        z = torch.as_tensor(_solved(adapter, bumped).z_star)  # every perturbed input solved again (float64)
        with torch.no_grad():
            p = adapter.fixed_point_problem(bumped).probabilities(z)[:, label].numpy()
        fd = (p[:size] - p[size:]) / (2 * h)
        np.testing.assert_allclose(grads[m][0].numpy(), fd, rtol=1e-5, atol=1e-9 * np.abs(fd).max())
        assert report.sensitivity[0, m] == pytest.approx(np.linalg.norm(fd), rel=1e-5)
    share = report.sensitivity_share
    assert share.sum() == pytest.approx(1.0) and (share >= 0).all()


def test_the_linear_response_predicts_the_shift_of_a_tiny_corruption(small64):
    adapter, ds, ids = small64
    clean_inputs = _inputs(adapter, ds, ids[:1])
    clean = _solved(adapter, clean_inputs)
    rng = np.random.default_rng(3)
    for eps in (1e-4, 1e-6):
        inputs = [x + eps * rng.normal(size=x.shape) * np.maximum(np.abs(x), 1.0) for x in clean_inputs]
        run = _solved(adapter, inputs)
        reference = Reference(adapter.fixed_point_problem(clean_inputs), torch.as_tensor(clean.z_star))
        report = _analyse(adapter, inputs, run, reference=reference, options=EquilibriumOptions(random_starts=0))
        assert report.shift_ratio == pytest.approx(1.0, abs=50 * eps)  # the ratio → 1 as the change shrinks
        np.testing.assert_allclose(report.predicted_shift, report.actual_shift, rtol=100 * eps,
                                   atol=1e-6 * report.actual_shift.max())
        predicted = linear_shift(adapter.fixed_point_problem(clean_inputs), clean.z_star, inputs, TIGHT)
        assert predicted[0] == pytest.approx(report.predicted_total, rel=1e-8)


def test_a_large_corruption_departs_from_the_linear_prediction(small64):
    adapter, ds, ids = small64
    clean_inputs = _inputs(adapter, ds, ids[:1])
    clean = _solved(adapter, clean_inputs)
    inputs = [np.zeros_like(clean_inputs[0]), *clean_inputs[1:]]  # the strong modality dropped
    run = _solved(adapter, inputs)
    reference = Reference(adapter.fixed_point_problem(clean_inputs), torch.as_tensor(clean.z_star))
    report = _analyse(adapter, inputs, run, reference=reference, options=EquilibriumOptions(random_starts=0))
    actual = np.linalg.norm(run.z_star - clean.z_star)
    assert report.actual_total == pytest.approx(actual, rel=1e-9)
    assert abs(report.shift_ratio - 1) > 0.01  # not a linear response any more


def _two_equilibria_problem():
    """f(z; x) = tanh(2z + x), x = 0: the fixed points of each coordinate are 0 (unstable) and ±0.9575."""
    layout = BlockLayout(("a", "fused"), (2, 2))
    x = torch.zeros(1, 4, dtype=torch.float64)
    f = PerSampleMap(lambda z, x: torch.tanh(2 * z + x), x, layout=layout)
    head = torch.nn.Linear(2, 3).double()
    return FixedPointProblem(f=f, z0=torch.zeros_like(x), layout=layout, head=lambda z: head(z[:, 2:]), inputs=[x],
                             map_with_inputs=lambda z, xs: torch.tanh(2 * z + xs[0]))


def test_multiple_starts_report_a_map_with_two_equilibria_as_disagreeing():
    problem = _two_equilibria_problem()
    settings = SolverSettings(max_iter=200, tol=1e-10, stop_mode="abs")
    z, trace = solve(problem.f, problem.z0, tol=1e-10, stop_mode="abs")
    assert trace.converged[0] and float(z.abs().max()) == 0.0  # from zeros: the unstable equilibrium 0
    outcome = multiple_starts(problem.f, z, settings, count=4, seed=0)
    assert outcome.count == 6 and outcome.converged >= 2
    assert outcome.agree is False and outcome.max_distance > 1.0
    report = analyse_equilibrium(problem, z, settings, options=EquilibriumOptions(random_starts=4))
    assert report.starts.agree is False
    assert report.spectral_radius == pytest.approx(2.0, rel=1e-9)  # J = 2 I at z = 0: unstable there
    assert report.unstable


def test_multiple_starts_agree_on_a_contraction():
    layout = BlockLayout(("a", "fused"), (3, 3))
    b = torch.linspace(-1, 1, 6, dtype=torch.float64)[None]
    f = PerSampleMap(lambda z, b: 0.5 * torch.tanh(z) + b, b, layout=layout)
    settings = SolverSettings(max_iter=200, tol=1e-10, stop_mode="abs")
    z, _ = solve(f, torch.zeros_like(b), tol=1e-12, stop_mode="abs", max_iter=200)
    outcome = multiple_starts(f, z, settings, count=4, seed=1)
    assert outcome.converged == 6 and outcome.agree is True and outcome.max_distance < 1e-9


def test_finite_differences_agree_with_autograd(small64):
    adapter, ds, ids = small64
    clean_inputs = _inputs(adapter, ds, ids[1:2])
    clean = _solved(adapter, clean_inputs)
    inputs = [clean_inputs[0] * 1.1, *clean_inputs[1:]]
    run = _solved(adapter, inputs)
    reports = {}
    for method in ("autograd", FINITE_DIFFERENCE):
        reference = Reference(adapter.fixed_point_problem(clean_inputs), torch.as_tensor(clean.z_star))
        reports[method] = _analyse(adapter, inputs, run, reference=reference, input_scales=adapter.feature_scales,
                                   options=EquilibriumOptions(random_starts=0, method=method))
    auto, fd = reports["autograd"], reports[FINITE_DIFFERENCE]
    assert auto.derivatives == "autograd" and fd.derivatives == FINITE_DIFFERENCE
    assert fd.spectral_radius == pytest.approx(auto.spectral_radius, rel=1e-6)
    np.testing.assert_allclose(fd.coupling, auto.coupling, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fd.sensitivity, auto.sensitivity, rtol=1e-5)
    np.testing.assert_allclose(fd.predicted_shift, auto.predicted_shift, rtol=1e-5,
                               atol=1e-7 * auto.predicted_shift.max())
    # a problem that can only be evaluated is differentiated by differences, whatever is asked
    problem = adapter.fixed_point_problem(inputs)
    problem.derivatives = FINITE_DIFFERENCE
    assert linearise(problem, torch.as_tensor(run.z_star), "autograd").method == FINITE_DIFFERENCE


def test_finite_difference_products_match_autograd_products(small64):
    adapter, ds, ids = small64
    inputs = _inputs(adapter, ds, ids)
    run = _solved(adapter, inputs)
    problem = adapter.fixed_point_problem(inputs)
    auto = linearise(problem, torch.as_tensor(run.z_star), "autograd")
    fd = linearise(problem, torch.as_tensor(run.z_star), FINITE_DIFFERENCE)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(len(ids), auto.dim, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(fd.matvec(v).numpy(), auto.matvec(v).numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fd.rmatvec(v).numpy(), auto.rmatvec(v).numpy(), rtol=1e-6, atol=1e-8)
    dxs = [torch.randn(x.shape, generator=g, dtype=torch.float64) for x in auto.xs]
    np.testing.assert_allclose(fd.input_jvp(dxs).numpy(), auto.input_jvp(dxs).numpy(), rtol=1e-5, atol=1e-8)
    for a, b in zip(fd.input_vjp(v), auto.input_vjp(v)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-8)
    labels = torch.zeros(len(ids), dtype=torch.long)
    np.testing.assert_allclose(fd.probability_grad(labels).numpy(), auto.probability_grad(labels).numpy(),
                               rtol=1e-6, atol=1e-10)


def test_observed_contraction_of_plain_iteration_is_the_spectral_radius():
    A = torch.diag(torch.tensor([0.8, 0.3, -0.5], dtype=torch.float64))
    b = torch.ones(1, 3, dtype=torch.float64)
    _, trace = solve(lambda z: z @ A.T + b, torch.zeros_like(b), solver="fixed_point", tol=1e-12, stop_mode="abs",
                     max_iter=200)
    assert observed_contraction(trace.abs[0], int(trace.best_step[0])) == pytest.approx(0.8, rel=1e-3)
    assert observed_contraction(np.array([1.0])) is None
    assert observed_contraction(np.array([1.0, 0.0])) is None


def test_predicted_labels_are_the_argmax_or_each_present_label():
    from deqstudio.core.equilibrium.analysis import predicted_labels

    p = torch.tensor([[0.9, 0.2, 0.7], [0.1, 0.3, 0.2]])
    assert [c.tolist() for c in predicted_labels(p, "multiclass")] == [[0, 1]]
    assert [c.tolist() for c in predicted_labels(p, "multilabel")] == [[0, 1], [2, 1]]  # row 2: its likeliest


def test_a_multilabel_problem_gets_a_sensitivity_per_present_label():
    """f(z; x) = 0.5 tanh(z + W x), per-label sigmoid read-out; each label's gradient against re-solves."""
    torch.manual_seed(0)
    layout = BlockLayout(("m", "fused"), (3, 3))
    W = torch.randn(6, 4, dtype=torch.float64)
    head = torch.nn.Linear(3, 3).double()
    with torch.no_grad():
        head.bias.copy_(torch.tensor([4.0, 3.0, -6.0], dtype=torch.float64))  # two labels present, one absent

    def problem_for(x):
        inj = x @ W.T
        f = PerSampleMap(lambda z, inj: 0.5 * torch.tanh(z + inj), inj, layout=layout)
        return FixedPointProblem(f=f, z0=torch.zeros_like(inj), layout=layout, head=lambda z: head(z[:, 3:]),
                                 inputs=[x], task="multilabel",
                                 map_with_inputs=lambda z, xs: 0.5 * torch.tanh(z + xs[0] @ W.T))

    def z_of(x):
        z, trace = solve(problem_for(x).f, torch.zeros(len(x), 6, dtype=torch.float64), tol=1e-12, stop_mode="abs",
                         max_iter=200)
        assert trace.converged.all()
        return z

    x = torch.randn(1, 4, dtype=torch.float64)
    report = analyse_equilibrium(problem_for(x), z_of(x), TIGHT, options=EquilibriumOptions(random_starts=0),
                                 modality_names=("m",))
    assert report.labels == (0, 1) and report.sensitivity.shape == (2, 1)
    h = 1e-6
    bumped = torch.cat([x + h * torch.eye(4, dtype=torch.float64), x - h * torch.eye(4, dtype=torch.float64)])
    with torch.no_grad():
        p = torch.sigmoid(head(z_of(bumped)[:, 3:]))
    fd = (p[:4] - p[4:]) / (2 * h)  # (features, labels)
    np.testing.assert_allclose(report.sensitivity[:, 0], fd[:, :2].norm(dim=0).numpy(), rtol=1e-6)
    data = report.to_json(("a", "b", "c"))
    assert data["sensitivity_labels"] == ["a", "b"] and set(data["sensitivity_per_label"]) == {"a", "b"}
    assert data["sensitivity"]["m"] == pytest.approx(float(np.linalg.norm(report.sensitivity[:, 0])))
