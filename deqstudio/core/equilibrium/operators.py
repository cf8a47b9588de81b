"""A fixed-point map linearised at a batch of states: ``J = ∂f/∂z`` and ``∂f/∂x`` (x: the raw inputs), row by row.

``linearise(problem, z)`` gives a ``Linearisation`` whose products the analyses use:

- ``matvec(v)`` = J v, ``rmatvec(u)`` = Jᵀ u, each (B, D), one Jacobian per row;
- ``input_jvp(dxs)`` = ∂f/∂x Δx and ``input_vjp(u)`` = (∂f/∂x_m)ᵀ u per modality m;
- ``probability_grad(labels)`` = ∂p_label/∂z of the model's read-out;
- ``dense()``, the (B, D, D) Jacobians.

Two implementations, named by ``method``: ``"autograd"`` (reverse mode; J v by double backward on a retained
graph) for problems torch can differentiate, and ``"finite-difference"`` (central differences, evaluations only)
for models that can only be run, such as exported packages. They agree to the differences' truncation error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..adapter import AUTOGRAD, FINITE_DIFFERENCE, FixedPointProblem


def _vjp(output: torch.Tensor, inputs, v: torch.Tensor, **kwargs):
    """``torch.autograd.grad(output, inputs, v, allow_unused=True, **kwargs)`` taken as the gradient of
    ``(output * v).sum()``: the same numbers (the gradient of that sum with respect to ``output`` is ``v`` exactly), but
    torch's grad with an explicit ``grad_outputs`` imports its symbolic-shapes machinery (sympy: ~35 MB resident and
    0.4 s on the studio's first equilibrium analysis)."""
    return torch.autograd.grad((output * v).sum(), inputs, allow_unused=True, **kwargs)

# rows of one batched evaluation when a dense Jacobian is assembled (bounds the memory of a pass)
CHUNK_ROWS = 2048


class Linearisation:
    """What both implementations share: the rows (states z, their map, their inputs) and row selection."""

    method = ""

    def __init__(self, problem: FixedPointProblem, z: torch.Tensor, input_scales: Sequence | None = None) -> None:
        dtype, device = problem.z0.dtype, problem.z0.device
        self.problem = problem
        self.z = torch.as_tensor(z).to(device=device, dtype=dtype).detach()
        if self.z.dim() != 2 or self.z.shape[1] != problem.layout.dim:
            raise ValueError(f"states must be (batch, {problem.layout.dim}), got {tuple(self.z.shape)}")
        self.f = problem.f
        self.xs = None if problem.inputs is None else [x.detach() for x in problem.inputs]
        self.input_scales = input_scales
        self._dense = None

    @property
    def batch(self) -> int:
        return int(self.z.shape[0])

    @property
    def dim(self) -> int:
        return int(self.z.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.z.dtype

    def _need_inputs(self) -> None:
        if self.xs is None or self.problem.map_with_inputs is None:
            raise ValueError("this model's fixed-point problem does not expose its map of the raw inputs")

    def rows(self, index: torch.Tensor) -> "Linearisation":
        """The linearisation of rows ``index`` (repeats allowed): its own map, states and inputs."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.z.device)
        problem = FixedPointProblem(
            f=self.f.select(index), z0=self.problem.z0.index_select(0, index), layout=self.problem.layout,
            head=self.problem.head, inputs=None if self.xs is None else [x.index_select(0, index) for x in self.xs],
            map_with_inputs=self.problem.map_with_inputs, task=self.problem.task, derivatives=self.problem.derivatives)
        return type(self)(problem, self.z.index_select(0, index), self.input_scales)

    def probabilities(self, z: torch.Tensor) -> torch.Tensor:
        return self.problem.probabilities(z)

    def dense(self) -> torch.Tensor:
        """The Jacobians J (B, D, D), J[b, i, j] = ∂f_i/∂z_j at row b's state (computed once)."""
        if self._dense is None:
            self._dense = self._assemble()
        return self._dense

    def _assemble(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _chunks(self):
        """(row b, first, last) pieces of the D unit vectors of every row, at most CHUNK_ROWS at once."""
        step = max(1, CHUNK_ROWS)
        for b in range(self.batch):
            for first in range(0, self.dim, step):
                yield b, first, min(first + step, self.dim)


class AutogradLinearisation(Linearisation):
    """Products by reverse-mode autograd: Jᵀ u by one backward pass through ``f(z)``, whose graph is kept; J v by
    differentiating that backward pass once more (double backward), so no forward-mode support is needed."""

    method = AUTOGRAD

    def __init__(self, problem, z, input_scales=None) -> None:
        super().__init__(problem, z, input_scales)
        self._graph = None  # (z leaf, f(z))
        self._dual = None  # (w, Jᵀ w as a function of w)

    def _forward(self):
        if self._graph is None:
            with torch.enable_grad():
                leaf = self.z.clone().requires_grad_()
                self._graph = (leaf, self.f(leaf))
        return self._graph

    def rmatvec(self, u: torch.Tensor) -> torch.Tensor:
        leaf, fz = self._forward()
        with torch.enable_grad():
            (g,) = _vjp(fz, leaf, u.to(fz.dtype), retain_graph=True)
        return torch.zeros_like(self.z) if g is None else g

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        leaf, fz = self._forward()
        with torch.enable_grad():
            if self._dual is None:
                w = torch.zeros_like(fz, requires_grad=True)
                (g,) = _vjp(fz, leaf, w, create_graph=True)
                self._dual = (w, g)
            w, g = self._dual
            if g is None or not g.requires_grad:  # f does not depend on z (or only linearly through constants)
                return torch.zeros_like(self.z) if g is None else self._dense_fallback(v)
            (jv,) = _vjp(g, w, v.to(g.dtype), retain_graph=True)
        return torch.zeros_like(self.z) if jv is None else jv

    def _dense_fallback(self, v: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bij,bj->bi", self.dense(), v.to(self.dtype))

    def _assemble(self) -> torch.Tensor:
        """Row i of J is e_iᵀ J: one backward pass over the state repeated once per unit vector."""
        out = torch.empty(self.batch, self.dim, self.dim, dtype=self.dtype, device=self.z.device)
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.z.device)
        for b, first, last in self._chunks():
            index = torch.full((last - first,), b, dtype=torch.long, device=self.z.device)
            f = self.f.select(index)
            with torch.enable_grad():
                leaf = self.z[b].expand(last - first, self.dim).clone().requires_grad_()
                (rows,) = _vjp(f(leaf), leaf, eye[first:last])
            out[b, first:last] = 0.0 if rows is None else rows
        return out

    def _with_inputs(self, differentiated: Sequence[int] | None = None):
        """(the inputs, f(z*, inputs)) with a graph to the inputs ``differentiated`` (None: all of them)."""
        self._need_inputs()
        with torch.enable_grad():
            xs = [x.clone().requires_grad_() if differentiated is None or i in differentiated else x
                  for i, x in enumerate(self.xs)]
            return xs, self.problem.map_with_inputs(self.z, xs)

    def input_vjp(self, u: torch.Tensor) -> list[torch.Tensor]:
        xs, fz = self._with_inputs()
        with torch.enable_grad():
            grads = _vjp(fz, xs, u.to(fz.dtype))
        return [torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads)]

    def input_jvp(self, dxs: Sequence[torch.Tensor]) -> torch.Tensor:
        # only the inputs that move are differentiated: a zero Δx adds exactly nothing, and skipping it spares
        # the double backward pass through that modality's encoder (a sweep cell corrupts one modality)
        moving = [i for i, d in enumerate(dxs) if bool(torch.as_tensor(d).ne(0).any())]
        xs, fz = self._with_inputs(moving)
        with torch.enable_grad():
            w = torch.zeros_like(fz, requires_grad=True)
            wrt = [xs[i] for i in moving]
            grads = _vjp(fz, wrt, w, create_graph=True) if wrt else ()
            pairs = [(g, dxs[i]) for g, i in zip(grads, moving) if g is not None and g.requires_grad]
            if not pairs:
                return torch.zeros_like(self.z)
            total = sum((g * d.to(g.dtype)).sum() for g, d in pairs)
            (jv,) = torch.autograd.grad(total, w, allow_unused=True)
        return torch.zeros_like(self.z) if jv is None else jv

    def probability_grad(self, labels: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            leaf = self.z.clone().requires_grad_()
            p = self.probabilities(leaf)
            picked = p.gather(1, labels.view(-1, 1).to(p.device)).sum()
            (g,) = torch.autograd.grad(picked, leaf, allow_unused=True)
        return torch.zeros_like(self.z) if g is None else g


class FiniteDifferenceLinearisation(Linearisation):
    """Products by central differences of evaluations only. Each difference moves the point by ``step`` times its
    scale (the larger of 1 and its largest entry for states; each feature's own scale, when given, for inputs):
    ``step`` is the cube root of the precision's epsilon, which balances truncation against rounding.
    Jᵀ u and (∂f/∂x)ᵀ u need the whole Jacobians, assembled column by column in batches (2·D and 2·Σ sizes
    evaluations per row): affordable for the states and inputs of fusion models, costly for large images."""

    method = FINITE_DIFFERENCE

    def __init__(self, problem, z, input_scales=None) -> None:
        super().__init__(problem, z, input_scales)
        self.step = float(torch.finfo(self.dtype).eps) ** (1.0 / 3.0)
        self._input_dense = None

    def _scale(self, z: torch.Tensor) -> torch.Tensor:
        return z.abs().amax(dim=1, keepdim=True).clamp_min(1.0)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        v = v.to(self.dtype)
        size = v.abs().amax(dim=1, keepdim=True)
        safe = torch.where(size > 0, size, torch.ones_like(size))
        h = self.step * self._scale(self.z) / safe
        with torch.no_grad():
            out = (self.f(self.z + h * v) - self.f(self.z - h * v)) / (2 * h)
        return torch.where(size > 0, out, torch.zeros_like(out))

    def rmatvec(self, u: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bij,bi->bj", self.dense(), u.to(self.dtype))

    def _assemble(self) -> torch.Tensor:
        out = torch.empty(self.batch, self.dim, self.dim, dtype=self.dtype, device=self.z.device)
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.z.device)
        for b, first, last in self._chunks():
            index = torch.full((last - first,), b, dtype=torch.long, device=self.z.device)
            h = self.step * float(self._scale(self.z[b : b + 1]))
            f = self.f.select(index)
            base = self.z[b].expand(last - first, self.dim)
            with torch.no_grad():
                cols = (f(base + h * eye[first:last]) - f(base - h * eye[first:last])) / (2 * h)
            out[b, :, first:last] = cols.T
        return out

    def _feature_steps(self) -> list[torch.Tensor]:
        """The step of each input feature, (B, size) per modality."""
        steps = []
        for m, x in enumerate(self.xs):
            scale = None if self.input_scales is None else self.input_scales[m]
            if scale is None:
                s = x.abs().clamp_min(1.0)
            else:
                s = torch.as_tensor(scale, dtype=x.dtype, device=x.device).reshape(1, -1).expand_as(x)
                s = torch.where(s > 0, s, torch.ones_like(s))
            steps.append(self.step * s)
        return steps

    def input_jvp(self, dxs: Sequence[torch.Tensor]) -> torch.Tensor:
        self._need_inputs()
        dxs = [d.to(self.dtype) for d in dxs]
        steps = self._feature_steps()
        # one step along Δx: the smallest feature step over the largest |Δx| relative to it
        ratio = torch.stack([(d.abs() / s).amax(dim=1) for d, s in zip(dxs, steps)], dim=1).amax(dim=1, keepdim=True)
        safe = torch.where(ratio > 0, ratio, torch.ones_like(ratio))
        t = 1.0 / safe
        g = self.problem.map_with_inputs
        with torch.no_grad():
            plus = g(self.z, [x + t * d for x, d in zip(self.xs, dxs)])
            minus = g(self.z, [x - t * d for x, d in zip(self.xs, dxs)])
        out = (plus - minus) / (2 * t)
        return torch.where(ratio > 0, out, torch.zeros_like(out))

    def _input_jacobians(self) -> list[torch.Tensor]:
        """∂f/∂x_m, (B, D, size) per modality, by central differences feature by feature."""
        if self._input_dense is None:
            self._need_inputs()
            steps = self._feature_steps()
            g = self.problem.map_with_inputs
            out = []
            for m, x in enumerate(self.xs):
                size = x.shape[1]
                jac = torch.empty(self.batch, self.dim, size, dtype=self.dtype, device=x.device)
                for b in range(self.batch):
                    for first in range(0, size, CHUNK_ROWS):
                        last = min(first + CHUNK_ROWS, size)
                        n = last - first
                        z = self.z[b].expand(n, self.dim)
                        rows = [xx[b].expand(n, xx.shape[1]) for xx in self.xs]
                        h = steps[m][b, first:last]
                        bump = torch.zeros(n, size, dtype=x.dtype, device=x.device)
                        bump[torch.arange(n), torch.arange(first, last)] = h
                        with torch.no_grad():
                            plus = g(z, [r + bump if k == m else r for k, r in enumerate(rows)])
                            minus = g(z, [r - bump if k == m else r for k, r in enumerate(rows)])
                        jac[b, :, first:last] = ((plus - minus) / (2 * h[:, None])).T
                out.append(jac)
            self._input_dense = out
        return self._input_dense

    def input_vjp(self, u: torch.Tensor) -> list[torch.Tensor]:
        return [torch.einsum("bdn,bd->bn", jac, u.to(self.dtype)) for jac in self._input_jacobians()]

    def probability_grad(self, labels: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(self.z)
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.z.device)
        for b in range(self.batch):
            h = self.step * float(self._scale(self.z[b : b + 1]))
            base = self.z[b].expand(self.dim, self.dim)
            with torch.no_grad():
                plus = self.probabilities(base + h * eye)[:, int(labels[b])]
                minus = self.probabilities(base - h * eye)[:, int(labels[b])]
            out[b] = (plus - minus) / (2 * h)
        return out


def linearise(problem: FixedPointProblem, z: torch.Tensor, method: str | None = None,
              input_scales: Sequence | None = None) -> Linearisation:
    """The problem's map linearised at states ``z`` (B, D), by ``method`` (default: what the problem allows).

    A problem that can only be evaluated is never differentiated by autograd, whatever ``method`` asks.
    """
    method = method or problem.derivatives
    if method not in (AUTOGRAD, FINITE_DIFFERENCE):
        raise ValueError(f"unknown derivative method {method!r}; choose {AUTOGRAD!r} or {FINITE_DIFFERENCE!r}")
    if problem.derivatives == FINITE_DIFFERENCE:
        method = FINITE_DIFFERENCE
    cls = AutogradLinearisation if method == AUTOGRAD else FiniteDifferenceLinearisation
    return cls(problem, z, input_scales)
