"""The solvers against known answers: fixed points of linear contractions, in float64."""

import math

import numpy as np
import pytest
import torch

from deqstudio.core.solvers import BlockLayout, PerSampleMap, available_solvers, solve

SOLVERS = ("fixed_point", "anderson", "broyden")


def _contraction(n=12, batch=4, rho=0.8, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = rho * A / torch.linalg.matrix_norm(A, 2)
    b = torch.randn(batch, n, generator=g, dtype=torch.float64)
    exact = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - A, b.T).T
    return A, b, exact


def test_registry_lists_every_solver():
    assert set(SOLVERS) <= set(available_solvers())


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("batch_map", [False, True])
def test_linear_contraction_fixed_point_matches_linalg_solve(solver, batch_map):
    A, b, exact = _contraction()
    f = PerSampleMap(lambda z, b: z @ A.T + b, b) if batch_map else (lambda z: z @ A.T + b)
    z, trace = solve(f, torch.zeros_like(b), solver=solver, tol=1e-11, max_iter=300)
    assert trace.converged.all(), trace.reason
    torch.testing.assert_close(z, exact, atol=1e-9, rtol=0)


@pytest.mark.parametrize("solver", SOLVERS)
def test_abs_stop_mode_reaches_tolerance(solver):
    A, b, exact = _contraction(rho=0.5)
    z, trace = solve(lambda z: z @ A.T + b, torch.zeros_like(b), solver=solver, tol=1e-8, stop_mode="abs")
    assert trace.converged.all()
    assert (trace.final_abs <= 1e-8).all()
    # final_abs is the residual of the returned state itself
    np.testing.assert_allclose(trace.final_abs, (z @ A.T + b - z).norm(dim=1).numpy(), rtol=1e-9, atol=1e-15)
    # ‖z − z*‖ ≤ ‖f(z) − z‖ / (1 − ρ) for any state z of a ρ-contraction, so for the returned iterate
    assert ((z - exact).norm(dim=1).numpy() <= trace.final_abs / (1 - 0.5) + 1e-15).all()


def test_anderson_beats_plain_iteration_on_a_slow_contraction():
    g = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.linspace(0.5, 0.97, 10, dtype=torch.float64)) @ Q.T
    b = torch.randn(2, 10, generator=g, dtype=torch.float64)
    f = lambda z: z @ A.T + b  # noqa: E731
    _, plain = solve(f, torch.zeros_like(b), solver="fixed_point", tol=1e-8, max_iter=1000)
    _, anderson = solve(f, torch.zeros_like(b), solver="anderson", tol=1e-8, max_iter=1000)
    assert anderson.nstep.max() < plain.nstep.min() / 3


def test_trace_bookkeeping_shapes_and_consistency():
    A, b, _ = _contraction(n=8, batch=3)
    layout = BlockLayout(("x", "y", "fused"), (3, 3, 2))
    z, trace = solve(lambda z: z @ A.T + b, torch.zeros_like(b), tol=1e-6, layout=layout, record_states=True)
    B, K = 3, trace.evaluations
    assert trace.abs.shape == trace.rel.shape == (B, K)
    assert trace.block_rel.shape == (B, K, 3)
    assert trace.block_names == ("x", "y", "fused")
    assert trace.states.shape == (B, K, 8)
    assert (trace.nstep <= K).all() and (trace.nstep >= 1).all()
    for row in range(B):
        k = trace.nstep[row]
        assert np.isfinite(trace.abs[row, :k]).all()
        assert np.isnan(trace.abs[row, k:]).all()
        assert 0 <= trace.best_step[row] < k
        # the recorded state at the best step is what was returned
        torch.testing.assert_close(trace.states[row, trace.best_step[row]], z[row])
        # step 0 is the start; every step's residuals are those of its recorded state
        assert not trace.states[row, 0].any()
        for step in range(k):
            s = trace.states[row, step]
            fs = s @ A.T + b[row]
            assert math.isclose(trace.abs[row, step], float((fs - s).norm()), rel_tol=1e-9)
            assert math.isclose(trace.rel[row, step], float((fs - s).norm() / (fs.norm() + 1e-9)), rel_tol=1e-9)
        assert torch.isnan(trace.states[row, k:]).all()
    assert (trace.final_rel <= 1e-6).all() and trace.converged.all()
    assert trace.reason == ["converged"] * 3
    # block residuals combine into the joint one
    blocks = trace.block_rel[0, 0]
    assert blocks.shape == (3,) and np.isfinite(blocks).all()


def test_block_residuals_of_uniform_layout():
    torch.manual_seed(0)
    b = torch.randn(2, 6, dtype=torch.float64)
    layout = BlockLayout.uniform(("a", "fused"), 3)
    # block "a" is already at its fixed point after one step; "fused" keeps moving
    f = lambda z: torch.cat([b[:, :3], 0.5 * z[:, 3:] + b[:, 3:]], dim=1)  # noqa: E731
    _, trace = solve(f, torch.zeros_like(b), solver="fixed_point", tol=1e-9, layout=layout)
    assert (trace.block_rel[:, 1:, 0][~np.isnan(trace.block_rel[:, 1:, 0])] < 1e-12).all()
    assert (trace.block_rel[:, 1, 1] > 1e-3).all()


def test_converged_samples_leave_the_active_batch():
    scales = torch.tensor([0.1, 0.5, 0.9, 0.99], dtype=torch.float64)
    b = torch.ones(4, 5, dtype=torch.float64)
    seen = []

    def fn(z, scale, b):
        seen.append(z.shape[0])
        return scale[:, None] * z + b

    f = PerSampleMap(fn, scales, b)
    z, trace = solve(f, torch.zeros_like(b), solver="fixed_point", tol=1e-10, max_iter=5000)
    assert trace.converged.all()
    torch.testing.assert_close(z, b / (1 - scales[:, None]), atol=0, rtol=1e-7)
    assert seen[0] == 4 and seen[-1] == 1
    assert sum(seen) == int(trace.nstep.sum())
    assert list(np.argsort(trace.nstep)) == [0, 1, 2, 3]


def test_plain_callable_keeps_rows_frozen_but_trace_is_per_sample():
    scales = torch.tensor([0.1, 0.9], dtype=torch.float64)[:, None]
    b = torch.ones(2, 3, dtype=torch.float64)
    z, trace = solve(lambda z: scales * z + b, torch.zeros_like(b), solver="anderson", tol=1e-12)
    assert trace.converged.all()
    torch.testing.assert_close(z, b / (1 - scales), atol=1e-9, rtol=0)
    assert np.isnan(trace.abs[0, trace.nstep[0]:]).all()


def test_diverging_map_is_reported_not_raised():
    # plain iteration runs away from the repelling fixed point z* = −1 of 2z + 1
    z, trace = solve(lambda z: 2.0 * z + 1.0, torch.zeros(2, 3), solver="fixed_point", max_iter=200)
    assert not trace.converged.any()
    assert trace.reason == ["diverged", "diverged"]
    assert trace.nstep.max() < 200
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("solver", ["anderson", "broyden"])
def test_quasi_newton_solvers_find_a_repelling_fixed_point(solver):
    z, trace = solve(lambda z: 2.0 * z + 1.0, torch.zeros(2, 3), solver=solver, tol=1e-8)
    assert trace.converged.all()
    torch.testing.assert_close(z, -torch.ones(2, 3))


def test_map_without_fixed_point_never_converges():
    for solver in SOLVERS:
        z, trace = solve(lambda z: z + 1.0, torch.zeros(2, 3), solver=solver, max_iter=30)
        assert not trace.converged.any(), solver
        assert torch.isfinite(z).all()


@pytest.mark.parametrize("solver", SOLVERS)
def test_non_finite_values_stop_the_sample(solver):
    def f(z):
        out = 0.5 * z + 1.0
        out[1] = float("nan")
        return out

    z, trace = solve(f, torch.zeros(3, 4), solver=solver, max_iter=100, tol=1e-6)
    assert trace.reason[1] == "non-finite" and not trace.converged[1]
    assert trace.converged[0] and trace.converged[2]
    assert torch.isfinite(z[0]).all() and torch.allclose(z[0], torch.full((4,), 2.0), atol=1e-5)


def test_anderson_survives_a_singular_system():
    # constant residuals make G Gᵀ rank one; the regulariser and the fallback keep it finite
    z, trace = solve(lambda z: z + torch.tensor([1.0, -1.0]), torch.zeros(1, 2), solver="anderson", lam=0.0)
    assert torch.isfinite(z).all() and not trace.converged.any()


def test_extras_are_computed_per_step_from_recorded_states():
    A, b, _ = _contraction(n=4, batch=2)
    _, trace = solve(
        lambda z: z @ A.T + b,
        torch.zeros_like(b),
        tol=1e-8,
        record_states=True,
        extras=lambda s: {"norm": s.norm(dim=1), "twice": 2 * s},
    )
    assert trace.extras["norm"].shape == (2, trace.evaluations)
    assert trace.extras["twice"].shape == (2, trace.evaluations, 4)
    np.testing.assert_allclose(trace.extras["twice"][0, 0], 2 * trace.states[0, 0].numpy())


def test_callback_sees_every_evaluation():
    calls = []
    A, b, _ = _contraction(n=4, batch=2)
    _, trace = solve(lambda z: z @ A.T + b, torch.zeros_like(b), callback=lambda k, *rest: calls.append(k))
    assert calls == list(range(trace.evaluations))


def test_return_final_returns_the_last_iterate():
    A, b, _ = _contraction(n=4, batch=1)
    z, trace = solve(
        lambda z: z @ A.T + b, torch.zeros_like(b), solver="fixed_point", max_iter=7, tol=1e-30,
        record_states=True, return_final=True, divergence_factor=None,
    )
    assert trace.nstep[0] == 7 and trace.best_step[0] == 6 and trace.reason == ["max_iter"]
    torch.testing.assert_close(z[0], trace.states[0, 6])
    # plain iteration from zero: the 7th iterate z_6 is f⁶(0)
    expected = torch.zeros_like(b)
    for _ in range(6):
        expected = expected @ A.T + b
    torch.testing.assert_close(z, expected, atol=1e-14, rtol=0)
    assert math.isclose(trace.final_abs[0], float((z @ A.T + b - z).norm()), rel_tol=1e-12)


def test_sample_view_cuts_to_the_steps_taken():
    scales = torch.tensor([0.1, 0.9], dtype=torch.float64)
    b = torch.ones(2, 3, dtype=torch.float64)
    _, trace = solve(PerSampleMap(lambda z, s, b: s[:, None] * z + b, scales, b), torch.zeros_like(b), tol=1e-10)
    one = trace.sample(0)
    assert one.abs.shape == (1, trace.nstep[0]) and np.isfinite(one.abs).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"solver": "newton"}, "unknown solver 'newton'"),
        ({"solver": "anderson", "beta": 0.5}, "unknown option(s) 'beta'"),
        ({"solver": "fixed_point", "m": 3}, "unknown option(s) 'm'"),
        ({"tol": 0.0}, "tol must be"),
        ({"tol": float("nan")}, "tol must be"),
        ({"max_iter": 0}, "max_iter must be"),
        ({"stop_mode": "relative"}, "stop_mode must be"),
        ({"m": 0}, "history size m"),
        ({"solver": "fixed_point", "tau": 1.5}, "damping tau"),
        ({"extras": lambda s: {}}, "record_states=True"),
    ],
)
def test_bad_arguments_are_value_errors_naming_the_problem(kwargs, message):
    with pytest.raises(ValueError) as err:
        solve(lambda z: 0.5 * z, torch.zeros(1, 2), **kwargs)
    assert message in str(err.value)


def test_z0_must_be_a_batch_of_floats():
    with pytest.raises(ValueError, match="z0 must be"):
        solve(lambda z: z, torch.zeros(3))
    with pytest.raises(ValueError, match="z0 must be"):
        solve(lambda z: z, torch.zeros(1, 3, dtype=torch.long))


def test_layout_must_cover_the_state():
    with pytest.raises(ValueError, match="layout covers 4"):
        solve(lambda z: z, torch.zeros(1, 3), layout=BlockLayout.uniform(("a", "b"), 2))


def test_damped_fixed_point_converges_on_an_oscillating_map():
    # f(z) = −z + 2 oscillates undamped; with τ = 0.5 it lands on z* = 1 at once
    z, trace = solve(lambda z: -z + 2.0, torch.zeros(1, 2), solver="fixed_point", tau=0.5, tol=1e-7)
    assert trace.converged.all()
    torch.testing.assert_close(z, torch.ones(1, 2))


# ------------------------------------------------------------------------------ Broyden's memory


def _spread_contraction(n=24, batch=5, top=0.95, seed=0):
    """Symmetric A with eigenvalues spread over [0, top]: slow directions that need many updates."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.linspace(0.0, top, n, dtype=torch.float64)) @ Q.T
    b = torch.randn(batch, n, generator=g, dtype=torch.float64)
    exact = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - A, b.T).T
    return A, b, exact


@pytest.mark.parametrize("m", [1, 5, 30])
def test_broyden_past_its_memory_finds_the_fixed_point(m):
    # Once the memory wrapped, overwriting the oldest update voided the later ones' secant conditions:
    # every row diverged on this map (m = 5 and the default m = 30 alike).
    A, b, exact = _spread_contraction()
    z, trace = solve(lambda z: z @ A.T + b, torch.zeros_like(b), solver="broyden", m=m, tol=1e-12, max_iter=500)
    assert trace.converged.all(), trace.reason
    assert (trace.nstep > m + 1).all()  # the memory filled up and was renewed on every row
    # ‖z − z*‖ ≤ ‖f(z) − z‖ / (1 − 0.95) for any z, and the returned state is the linear system's solution
    assert ((z - exact).norm(dim=1).numpy() <= trace.final_abs / 0.05 + 1e-14).all()
    torch.testing.assert_close(z, exact, atol=1e-9, rtol=0)


def test_broyden_with_the_default_memory_of_thirty_goes_past_it():
    A, b, exact = _spread_contraction()
    z, trace = solve(lambda z: z @ A.T + b, torch.zeros_like(b), solver="broyden", tol=1e-12, max_iter=500)
    assert trace.converged.all(), trace.reason
    assert (trace.nstep > 31).all()
    torch.testing.assert_close(z, exact, atol=1e-9, rtol=0)


# ----------------------------------------------------------------------------- overflow is not convergence


def _overflowing_batch():
    """float32 rows: 0 an ordinary contraction; 1 and 2 start at 1e20 per element, so ‖f(z)‖ = inf
    (the squares overflow) while every element is finite.

    Row 1's residual has a finite norm (1e14 per element): its relative residual would read finite / inf = 0.
    Row 2's image equals its state in float32 (1e20 + 1 rounds back), so even ‖f(z) − z‖ = 0.
    """
    scale = torch.tensor([0.5, 1.0, 1.0])
    shift = torch.tensor([1.0, 1e14, 1.0])
    z0 = torch.zeros(3, 8)
    z0[1:] = 1e20
    return scale, shift, z0


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("stop_mode", ["rel", "abs"])
@pytest.mark.parametrize("batch_map", [False, True])
def test_an_overflowing_norm_is_non_finite_never_converged(solver, stop_mode, batch_map):
    scale, shift, z0 = _overflowing_batch()
    fn = lambda z, s, c: s[:, None] * z + c[:, None]  # noqa: E731
    f = PerSampleMap(fn, scale, shift) if batch_map else (lambda z: fn(z, scale, shift))
    with torch.no_grad():
        first = fn(z0, scale, shift)
    assert torch.isfinite(first).all() and torch.isinf(first[1:].norm(dim=1)).all()
    assert torch.isfinite((first - z0)[1].norm()) and (first - z0)[2].norm() == 0
    z, trace = solve(f, z0, solver=solver, stop_mode=stop_mode, tol=1e-5, max_iter=50)
    assert trace.converged.tolist() == [True, False, False], trace.reason
    assert trace.reason[1:] == ["non-finite", "non-finite"]
    assert (trace.nstep[1:] == 1).all()
    assert np.isinf(trace.rel[1:, 0]).all() and np.isinf(trace.final_rel[1:]).all()
    torch.testing.assert_close(z[0], torch.full((8,), 2.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(z[1:], z0[1:], atol=0, rtol=0)  # the one state each took, not an overflowed image


def test_an_overflowing_block_is_non_finite_and_its_block_residual_is_not_zero():
    # one block of the state overflows (‖f‖ of that block is inf); the other block is well-behaved
    layout = BlockLayout(("small", "huge"), (4, 4))
    z0 = torch.zeros(1, 8)
    z0[0, 4:] = 1e20
    f = lambda z: torch.cat([0.5 * z[:, :4] + 1.0, z[:, 4:] + 1e14], dim=1)  # noqa: E731
    for solver in SOLVERS:
        _, trace = solve(f, z0, solver=solver, layout=layout, tol=1e-5)
        assert trace.reason == ["non-finite"] and not trace.converged[0], solver
        assert np.isfinite(trace.block_rel[0, 0, 0]) and np.isinf(trace.block_rel[0, 0, 1])


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_solve_that_blows_up_is_not_reported_converged(solver):
    # f(z) = z + |z|/2 + 1e15 has no fixed point; plain iteration grows 1.5× a step (too slowly to count
    # as divergence) until ‖f(z)‖ overflows float32 while ‖f(z) − z‖ ≈ ‖f(z)‖/3 is still finite:
    # a relative residual of finite / inf = 0
    f = lambda z: z + 0.5 * z.abs() + 1e15  # noqa: E731
    z, trace = solve(f, torch.zeros(2, 8), solver=solver, max_iter=200, tol=1e-4)
    assert not trace.converged.any(), trace.reason
    assert all(r in ("non-finite", "diverged", "max_iter") for r in trace.reason)
    assert np.isfinite(trace.final_rel).all() and (trace.final_rel > 1e-4).all()
    assert torch.isfinite(z).all()
    if solver == "fixed_point":
        assert trace.reason == ["non-finite", "non-finite"]
        assert (trace.best_step < trace.nstep - 1).all()  # the overflowed step is never the best


# ------------------------------------------------------------------------------- one state per step


def _nonlinear_batch(batch_map: bool):
    """f_b(z) = tanh(s_b · A z + c_b), float64: rows of different speed; a linear "head" W."""
    g = torch.Generator().manual_seed(3)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    A = A / torch.linalg.matrix_norm(A, 2)
    scale = torch.tensor([0.3, 0.9, 1.6, 0.6], dtype=torch.float64)  # row 2 is no contraction
    shift = torch.randn(4, 6, generator=g, dtype=torch.float64)
    W = torch.randn(6, 3, generator=g, dtype=torch.float64)
    fn = lambda z, s, c: torch.tanh(s[:, None] * (z @ A.T) + c)  # noqa: E731
    f = PerSampleMap(fn, scale, shift) if batch_map else (lambda z: fn(z, scale, shift))
    row = lambda z, b: torch.tanh(scale[b] * (z @ A.T) + shift[b])  # noqa: E731  sample b's map, (n, D)
    return f, (lambda z: fn(z, scale, shift)), row, W


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("batch_map", [False, True])
@pytest.mark.parametrize("return_final", [False, True])
def test_every_per_step_quantity_describes_the_same_iterate(solver, batch_map, return_final):
    f, full, row, W = _nonlinear_batch(batch_map)
    z0 = torch.zeros(4, 6, dtype=torch.float64)
    z, trace = solve(
        f, z0, solver=solver, tol=1e-9, max_iter=40, record_states=True, return_final=return_final,
        extras=lambda s: {"head": torch.softmax(s @ W, dim=1)},
    )
    states, head = trace.states, trace.extras["head"]
    rows = np.arange(4)
    assert not states[:, 0].any()  # step 0 is the start
    np.testing.assert_allclose(head[:, 0], torch.softmax(z0 @ W, dim=1).numpy(), rtol=1e-12)
    for b in rows:
        k = int(trace.nstep[b])
        zk = states[b, :k]
        image = row(zk, b)
        np.testing.assert_allclose(trace.abs[b, :k], (image - zk).norm(dim=1).numpy(), rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(trace.rel[b, :k], ((image - zk).norm(dim=1) / (image.norm(dim=1) + 1e-9)).numpy(),
                                   rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(head[b, :k], torch.softmax(zk @ W, dim=1).numpy(), rtol=1e-12)
        expected_best = k - 1 if return_final else int(np.argmin(trace.rel[b, :k]))
        assert trace.best_step[b] == expected_best
    # the returned state is the best step's iterate; its residual and head values are the best step's
    torch.testing.assert_close(z, states[rows, trace.best_step], rtol=0, atol=0)
    fz = full(z)
    np.testing.assert_allclose(trace.final_rel, ((fz - z).norm(dim=1) / (fz.norm(dim=1) + 1e-9)).numpy(), rtol=1e-10)
    np.testing.assert_allclose(trace.final_abs, (fz - z).norm(dim=1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(trace.at_best(head), torch.softmax(z @ W, dim=1).numpy(), rtol=1e-12)


def test_returned_state_is_never_the_callers_z0():
    z0 = torch.ones(2, 3)
    z, trace = solve(lambda z: z.clone(), z0, tol=1e-6)  # z0 is already the fixed point: step 0 is best
    assert trace.best_step.tolist() == [0, 0] and trace.converged.all()
    z.add_(1.0)
    assert (z0 == 1).all()
