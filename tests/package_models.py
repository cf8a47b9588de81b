"""Three DEQ models exported to packages at test time with ``scripts/export_deq_package.py``, each with its eager
float64 reference: DEQ Studio's own deq-udml model (syn.pt), a torchdeq-style model whose state is a tuple, and a
model whose state has a 2-D block (an attention map). All read the committed syn.h5's modalities (strong 16,
weak 12, picture 8×8) and predict its 4 classes, so one dataset serves them all.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"strong": 16, "weak": 12, "picture": 64}
CLASSES = [f"class {i}" for i in range(4)]
IMAGE = {"picture": {"kind": "image", "image_shape": [8, 8]}}


def exporter():
    """The standalone script, imported from its file (it is not part of the deqstudio package)."""
    spec = importlib.util.spec_from_file_location("export_deq_package", ROOT / "scripts" / "export_deq_package.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _contract(layer: nn.Linear, norm: float) -> nn.Linear:
    """Scale a layer's weight to spectral norm ``norm`` (a contraction when below 1)."""
    with torch.no_grad():
        layer.weight.mul_(norm / torch.linalg.matrix_norm(layer.weight, ord=2))
    return layer


# -- DEQ Studio's own model ---------------------------------------------------------------------------------
class WindowPool(nn.Module):
    """``AdaptiveAvgPool2d`` written as two averaging matrices (PyTorch's windows: rows floor(i·n/k) to
    ceil((i+1)·n/k)), which the TorchScript ONNX exporter can write for any input size."""

    def __init__(self, size_in: tuple[int, int], size_out: tuple[int, int]) -> None:
        super().__init__()
        for name, n, k in (("rows", size_in[0], size_out[0]), ("cols", size_in[1], size_out[1])):
            m = torch.zeros(k, n)
            for i in range(k):
                a, b = (i * n) // k, -((-(i + 1) * n) // k)
                m[i, a:b] = 1.0 / (b - a)
            self.register_buffer(name, m)

    def forward(self, x):
        return self.rows @ x @ self.cols.T


def exportable(model):
    """A copy of a ``FusionModel`` whose image trunks pool with ``WindowPool`` (the same numbers)."""
    model = copy.deepcopy(model).eval()
    for trunk in model.trunks:
        pool = getattr(trunk, "conv", [None])[-1]
        if isinstance(pool, nn.AdaptiveAvgPool2d):
            h, w = trunk.image_shape
            trunk.conv[-1] = WindowPool((-(-h // 2), -(-w // 2)), tuple(pool.output_size))
    return model


def native_spec(model, example: dict, dependency: dict | None = None) -> dict:
    """export_package's arguments for a deq-udml ``FusionModel``: encode (features weighted by UDML, injected)
    and logvars, the fusion block as f, the head on the fused block, gates, unimodal heads and noise."""
    from deqstudio.core import udml

    model = exportable(model)
    block = model.fusion.block
    d, names = model.config.hidden, model.config.modality_names
    m = len(names)

    def encode(*raw):
        features, _, logvars = model.encode(list(raw))
        _, weights = model.udml_weights(logvars)
        features = udml.apply_residual_weights(features, weights)
        return block.inject(features), torch.cat(logvars, dim=1)

    def split_logvars(logvar):
        return list(torch.split(logvar, logvar.shape[1] // m, dim=1))

    def noise(injection, logvar):
        lvs = split_logvars(logvar)
        sigma_hat, weights = model.udml_weights(lvs)
        return sigma_hat, weights, torch.stack([udml.pe_score(lv) for lv in lvs], dim=1)

    def joint(state):  # the exporter hands the state over as its blocks; the fusion block reads them packed
        return torch.cat(state, dim=1)

    def gates(state, injection, logvar):
        values = model.playback_extras(joint(state), injection)
        return values["gates"], values["gate_share"]

    return dict(
        f=lambda state, injection, logvar: torch.split(block(joint(state), injection), d, dim=1),
        head=lambda state: model.head(block.fused(joint(state))),
        encode=encode, features=["injection", "logvar"], gates=gates, noise=noise,
        unimodal=lambda injection, logvar: [h(injection[:, i * d:(i + 1) * d]) for i, h in
                                            enumerate(model.unimodal_heads)],
        example=example, modalities=IMAGE, blocks=[(n, d) for n in block.layout.names], fused_block="fused",
        class_names=list(model.config.class_names or CLASSES), name="syn deq-udml (exported)",
        solver=model.config.solver_settings.to_dict(), dependency=dependency,
    )


def native_reference(model, inputs, tol=1e-11):
    """z* and probabilities of the eager model in float64 (its own fusion, solved far below float32's reach)."""
    from deqstudio.core.solvers import SolverSettings

    m = copy.deepcopy(model).double().eval()
    settings = SolverSettings(max_iter=500, tol=tol)
    with torch.no_grad():
        out = m([torch.as_tensor(x, dtype=torch.float64) for x in inputs], settings=settings)
    return out.z_star.numpy(), torch.softmax(out.logits, dim=1).numpy()


# -- a torchdeq-style model with a tuple state ----------------------------------------------------------------
class TupleDEQ(nn.Module):
    """torchdeq's convention: ``f(z1, z2, x)`` returns the next ``(z1, z2)``; z1 reads the vectors, z2 mixes z1
    with the picture. The head reads both."""

    def __init__(self, width: int = 12, seed: int = 1) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.enc_vec = nn.Linear(SIZES["strong"] + SIZES["weak"], width)
        self.enc_pic = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 64, width))
        self.w1 = _contract(nn.Linear(width, width), 0.5)
        self.w2 = _contract(nn.Linear(2 * width, width), 0.4)
        self.head = nn.Linear(2 * width, 4)

    def inject(self, strong, weak, picture):
        return self.enc_vec(torch.cat([strong, weak], dim=1)), self.enc_pic(picture.reshape(-1, 1, 8, 8))

    def f(self, z1, z2, x_vec, x_pic):
        z1_next = torch.tanh(self.w1(z1) + x_vec)
        return z1_next, torch.tanh(self.w2(torch.cat([z1, z2], dim=1)) + x_pic)

    def logits(self, z1, z2):
        return self.head(torch.cat([z1, z2], dim=1))

    def jvp(self, z1, z2, x_vec, x_pic, v1, v2):
        """The Jacobian of ``f`` at (z1, z2) applied to (v1, v2), written out (tanh' = 1 − tanh²)."""
        z1_next, z2_next = self.f(z1, z2, x_vec, x_pic)
        return ((1 - z1_next ** 2) * (v1 @ self.w1.weight.T),
                (1 - z2_next ** 2) * (torch.cat([v1, v2], dim=1) @ self.w2.weight.T))


def tuple_spec(model: TupleDEQ, example: dict, with_jvp: bool = False) -> dict:
    width = model.w1.in_features
    extra = {"jvp": lambda state, x_vec, x_pic, v: model.jvp(*state, x_vec, x_pic, *v)} if with_jvp else {}
    return dict(**extra,
        encode=model.inject, features=["x_vec", "x_pic"],
        f=lambda state, x_vec, x_pic: model.f(*state, x_vec, x_pic),
        head=lambda state: model.logits(*state), example=example, modalities=IMAGE,
        blocks=[("z1", width), ("z2", width)], fused_block="z2", class_names=CLASSES, name="torchdeq-style tuple DEQ",
    )


def iterate_reference(f_flat, head_flat, z0, steps=400):
    """Plain iteration of a contraction in float64 to its fixed point (error below 1e-12 after these steps)."""
    z = z0
    with torch.no_grad():
        for _ in range(steps):
            z = f_flat(z)
        return z.numpy(), torch.softmax(head_flat(z), dim=1).numpy()


def tuple_reference(model: TupleDEQ, inputs):
    m = copy.deepcopy(model).double().eval()
    x = m.inject(*[torch.as_tensor(v, dtype=torch.float64) for v in inputs])
    w = m.w1.in_features

    def split(z):
        return z[:, :w], z[:, w:]

    return iterate_reference(lambda z: torch.cat(m.f(*split(z), *x), dim=1), lambda z: m.logits(*split(z)),
                             torch.zeros(len(inputs[0]), 2 * w, dtype=torch.float64))


# -- a model whose state holds a 2-D attention map ------------------------------------------------------------
class AttentionDEQ(nn.Module):
    """State: a 6×6 attention map between the picture's rows and the vectors' tokens, and a fused vector."""

    def __init__(self, width: int = 8, seed: int = 2) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.rows = nn.Linear(8, width)
        self.tokens = nn.Linear(SIZES["strong"] + SIZES["weak"], 6 * width)
        self.mix = _contract(nn.Linear(width, width), 0.3)
        self.fuse = nn.Linear(36, width)
        self.head = nn.Linear(width, 4)
        self.width = width

    def inject(self, strong, weak, picture):
        rows = self.rows(picture.reshape(-1, 8, 8))[:, :6]  # (B, 6, w): six picture rows
        tokens = self.tokens(torch.cat([strong, weak], dim=1)).reshape(-1, 6, self.width)  # (B, 6, w)
        return rows, tokens

    def f(self, attn, fused, rows, tokens):
        scores = torch.einsum("biw,bjw->bij", rows, tokens) / self.width ** 0.5
        attn_next = torch.softmax(scores + 0.5 * attn, dim=2)
        fused_next = torch.tanh(self.mix(fused) + self.fuse(attn_next.flatten(1)))
        return attn_next, fused_next


def attention_spec(model: AttentionDEQ, example: dict) -> dict:
    return dict(
        encode=model.inject, features=["rows", "tokens"], f=lambda state, rows, tokens: model.f(*state, rows, tokens),
        head=lambda state: model.head(state[1]), example=example, modalities=IMAGE,
        blocks=[("attention", (6, 6)), ("fused", model.width)], fused_block="fused", class_names=CLASSES,
        name="attention-map DEQ",
    )


def attention_reference(model: AttentionDEQ, inputs):
    m = copy.deepcopy(model).double().eval()
    rows, tokens = m.inject(*[torch.as_tensor(v, dtype=torch.float64) for v in inputs])

    def split(z):
        return z[:, :36].reshape(-1, 6, 6), z[:, 36:]

    def f(z):
        attn, fused = m.f(*split(z), rows, tokens)
        return torch.cat([attn.flatten(1), fused], dim=1)

    return iterate_reference(f, lambda z: m.head(split(z)[1]),
                             torch.zeros(len(inputs[0]), 36 + m.width, dtype=torch.float64))
