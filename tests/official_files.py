"""Official-layout DEQ fusion files for the import tests, and the float64 reference they must solve to.

Key names and shapes follow the official code's layouts (shared/BYOM.md): the root ``DEQ_fusion.py`` inside a
user's model, the BRCA experiment's MMDynamic state dict, the MM-IMDB experiment's whole pickled MMDL. Weights
are random, scaled so that the fused map is a contraction (plain iteration then finds the fixed point the
reference compares against). The reference is written from DESIGN.md §3.1's equations, per branch, in float64,
reading the official key names directly: it shares no code with DEQ Studio's block.
"""

from __future__ import annotations

import functools
import sys
import types
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

GROUPS = 4


def _linear(gen, out, inp, scale):
    return {"weight": torch.randn(out, inp, generator=gen) * scale / inp**0.5,
            "bias": torch.randn(out, generator=gen) * 0.1}


def _norm(gen, d, low=0.1, high=0.3):
    return {"weight": low + (high - low) * torch.rand(d, generator=gen), "bias": torch.randn(d, generator=gen) * 0.1}


# GroupNorm scales that make the map a strong contraction: each branch's residual path z_i -> GN3(ReLU(GN2(…) + z_i))
# has gain about |GN3 weight| / std(GN2 output + z_i), so GN2 is wide and GN3 narrow
_NORM_RANGES = {1: (0.5, 1.0), 2: (0.8, 1.2), 3: (0.1, 0.3)}


def block_state(n: int, d: int, gen: torch.Generator, *, mixing: bool, prefix: str = "", scale: float = 0.3) -> dict:
    """The keys of ``DEQFusion(d, n)``'s state dict (40 for n = 3 with mixing), under ``prefix``."""
    sd = {}

    def put(name, values):
        for leaf, t in values.items():
            sd[f"{prefix}{name}.{leaf}"] = t

    for i in range(n):
        put(f"func_.branches.{i}.conv1", _linear(gen, d, d, scale))
        put(f"func_.branches.{i}.conv2", _linear(gen, d, d, scale))
        for k in (1, 2, 3):
            put(f"func_.branches.{i}.gn{k}", _norm(gen, d, *_NORM_RANGES[k]))
    put(f"func_.branches.{n}.gate", _linear(gen, d, d, scale))
    put(f"func_.branches.{n}.fuse", _linear(gen, d, d, scale))
    put(f"func_.branches.{n}.gn3", _norm(gen, d))
    if mixing:
        for i in range(n):
            sd[f"{prefix}weights.{i}"] = 1.0 + 0.2 * torch.randn(1, generator=gen)
        sd[f"{prefix}bias"] = 0.1 * torch.randn(1, generator=gen)
    return sd


def user_model_state(n: int, d: int, classes: int, gen: torch.Generator, in_dims=None) -> dict:
    """The root DEQ_fusion.py inside a user's model: their encoders, ``fusion.`` block, their classifier."""
    sd = {}
    for i, k in enumerate(in_dims or [d + 3 + i for i in range(n)]):
        sd.update({f"encoders.{i}.{leaf}": t for leaf, t in _linear(gen, d, k, 1.0).items()})
    sd.update(block_state(n, d, gen, mixing=True, prefix="fusion."))
    sd.update({f"classifier.{leaf}": t for leaf, t in _linear(gen, classes, d, 3.0).items()})
    return sd


def brca_state(in_dims, d: int, classes: int, gen: torch.Generator) -> dict:
    """The BRCA experiment's ``MMDynamic`` state dict (hidden_dim = [d]): no mixing scalars."""
    sd = {}
    for v, k in enumerate(in_dims):
        for name, (out, inp, scale) in {"FeatureInforEncoder": (k, k, 1.0), "TCPConfidenceLayer": (1, d, 1.0),
                                        "TCPClassifierLayer": (classes, d, 1.0), "FeatureEncoder": (d, k, 2.0)}.items():
            sd.update({f"{name}.{v}.clf.0.{leaf}": t for leaf, t in _linear(gen, out, inp, scale).items()})
        sd[f"TCPConfidenceLayer.{v}.clf.0.bias"] += 3.0  # confident views: features large against the block's map
    sd.update({f"MMClasifier.0.clf.0.{leaf}": t for leaf, t in _linear(gen, classes, d, 3.0).items()})
    sd.update(block_state(len(in_dims), d, gen, mixing=False, prefix="deq_fusion."))
    return sd


# -- the float64 reference ----------------------------------------------------------------------------
def _lin(sd, stem, x):
    w = sd[f"{stem}.weight"].double()
    b = sd.get(f"{stem}.bias")
    return x @ w.T + (b.double() if b is not None else 0.0)


def _gn(sd, stem, x):
    return F.group_norm(x, GROUPS, sd[f"{stem}.weight"].double(), sd[f"{stem}.bias"].double(), eps=1e-5)


def reference_fused(sd: dict, prefix: str, features, *, mixing: bool, relu_after_norm: bool,
                    steps: int = 4000, tol: float = 1e-13) -> torch.Tensor:
    """z_fuse* by plain iteration of DESIGN.md §3.1's map in float64, branch by branch, from the official keys."""
    xs = [x.double() for x in features]
    n = len(xs)
    br = f"{prefix}func_.branches"
    if mixing:
        x_fuse = sum(sd[f"{prefix}weights.{i}"].double() * x for i, x in enumerate(xs)) + sd[f"{prefix}bias"].double()
    else:
        x_fuse = sum(xs)
    z = [torch.zeros_like(x) for x in xs] + [torch.zeros_like(x_fuse)]
    for _ in range(steps):
        f = []
        for i in range(n):
            h = F.relu(_gn(sd, f"{br}.{i}.gn1", _lin(sd, f"{br}.{i}.conv1", z[i])))
            h = _gn(sd, f"{br}.{i}.gn2", _lin(sd, f"{br}.{i}.conv2", h) + xs[i]) + z[i]
            f.append(_gn(sd, f"{br}.{i}.gn3", F.relu(h)))
        zf = z[n]
        mixed = sum(zf * _lin(sd, f"{br}.{n}.gate", fi + zf) for fi in f)
        pre = _lin(sd, f"{br}.{n}.fuse", mixed) + x_fuse
        new = F.relu(_gn(sd, f"{br}.{n}.gn3", pre)) if relu_after_norm else _gn(sd, f"{br}.{n}.gn3", F.relu(pre))
        change = max(float((a - b).abs().max()) for a, b in zip([*f, new], z))
        z = [*f, new]
        if change < tol:
            return z[n]
    raise AssertionError(f"the reference did not converge (last change {change:.2e})")


def reference_probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)


def brca_features(sd: dict, raw) -> list[torch.Tensor]:
    """What the BRCA model's fusion receives: relu(encoder(x ⊙ sigmoid(info x))) scaled by its TCP confidence."""
    out = []
    for v, x in enumerate(raw):
        x = x.double()
        h = F.relu(_lin(sd, f"FeatureEncoder.{v}.clf.0", x * torch.sigmoid(_lin(sd, f"FeatureInforEncoder.{v}.clf.0", x))))
        out.append(h * _lin(sd, f"TCPConfidenceLayer.{v}.clf.0", h))
    return out


def _bn(sd, stem, x, eps):
    mean, var = sd[f"{stem}.running_mean"].double(), sd[f"{stem}.running_var"].double()
    return (x - mean) / torch.sqrt(var + eps) * sd[f"{stem}.weight"].double() + sd[f"{stem}.bias"].double()


def _maxout(y):
    return y.reshape(y.shape[0], -1, 2).amax(dim=2)


def maxout_features(sd: dict, raw, prefix: str = "encoders.") -> list[torch.Tensor]:
    """MM-IMDB's MaxOut_MLP in eval mode: BN(eps 1e-4) → maxout → BN → maxout → BN."""
    out = []
    for v, x in enumerate(raw):
        s = f"{prefix}{v}."
        h = _maxout(_lin(sd, f"{s}op1.lin", _bn(sd, f"{s}op0", x.double(), 1e-4)))
        h = _maxout(_lin(sd, f"{s}op3.lin", _bn(sd, f"{s}op2.0", h, 1e-5)))
        out.append(_bn(sd, f"{s}op4.0", h, 1e-5))
    return out


# -- a whole pickled MM-IMDB model (torch.save(model)) --------------------------------------------------
MODULES = {
    "training_structures.Supervised_Learning": ("MMDL",),
    "fusions.DEQ_fusion": ("DEQFusion", "DEQFusionLayer", "SimpleResidualBlock", "DEQFusionBlock"),
    "unimodals.common_models": ("MaxOut_MLP", "Maxout", "Linear"),
    "fusions.solver": ("anderson",),
}


@functools.cache
def _classes():
    """Module classes standing for the official ones, their layers named as the official code names them (made
    once: a model built with them pickles whenever ``official_modules`` registers them again)."""

    class Maxout(nn.Module):
        def __init__(self, d, m, k):
            super().__init__()
            self.d_in, self.d_out, self.pool_size = d, m, k
            self.lin = nn.Linear(d, m * k)

    class MaxOut_MLP(nn.Module):  # noqa: N801 — the official class name
        def __init__(self, first, inputs, second):
            super().__init__()
            self.op0 = nn.BatchNorm1d(inputs, 1e-4)
            self.op1 = Maxout(inputs, first, 2)
            self.op2 = nn.Sequential(nn.BatchNorm1d(first), nn.Dropout(0.3))
            self.op3 = Maxout(first, second, 2)
            self.op4 = nn.Sequential(nn.BatchNorm1d(second), nn.Dropout(0.3))
            self.hid2val = None

    class SimpleResidualBlock(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.out_dim = d
            self.conv1, self.conv2 = nn.Linear(d, d), nn.Linear(d, d)
            self.gn1, self.gn2, self.gn3 = (nn.GroupNorm(4, d) for _ in range(3))

    class DEQFusionBlock(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.out_dim = d
            self.gate, self.fuse = nn.Linear(d, d), nn.Linear(d, d)
            self.dropout1, self.dropout2 = nn.Dropout(0.0), nn.Dropout(0.0)
            self.gn3 = nn.GroupNorm(4, d)

    class DEQFusionLayer(nn.Module):
        def __init__(self, d, n):
            super().__init__()
            self.num_branches = n + 1
            self.block, self.fusion_block = SimpleResidualBlock, DEQFusionBlock
            self.branches = nn.ModuleList([*(SimpleResidualBlock(d) for _ in range(n)), DEQFusionBlock(d)])

    def anderson(f, x0, **kwargs):  # stands for the official solver the pickled module refers to
        raise AssertionError("never called")

    class DEQFusion(nn.Module):
        def __init__(self, d, n):
            super().__init__()
            self.f_thres, self.b_thres, self.stop_mode = 105, 106, "abs"
            self.func_ = DEQFusionLayer(d, n)
            self.f_solver = self.b_solver = anderson
            self.deq, self.num_layers = True, 1
            self.weights = nn.ParameterList([nn.Parameter(torch.ones(1)) for _ in range(n)])
            self.bias = nn.Parameter(torch.zeros(1))

    class Linear(nn.Module):
        def __init__(self, i, o):
            super().__init__()
            self.fc = nn.Linear(i, o)

    class MMDL(nn.Module):
        def __init__(self, encoders, fusion, head):
            super().__init__()
            self.encoders = nn.ModuleList(encoders)
            self.fuse, self.head = fusion, head
            self.has_padding, self.fuseout, self.reps = False, None, []

    return {"MMDL": MMDL, "DEQFusion": DEQFusion, "DEQFusionLayer": DEQFusionLayer,
            "SimpleResidualBlock": SimpleResidualBlock, "DEQFusionBlock": DEQFusionBlock, "MaxOut_MLP": MaxOut_MLP,
            "Maxout": Maxout, "Linear": Linear, "anderson": anderson}


@contextmanager
def official_modules():
    """The official module paths, present only while a model is built and pickled (never while it is read)."""
    classes = _classes()
    added = []
    for path, names in MODULES.items():
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
        for n in names:
            obj = classes[n]
            obj.__module__, obj.__qualname__ = path, n
            setattr(sys.modules[path], n, obj)
    try:
        yield classes
    finally:
        for name in added:
            sys.modules.pop(name, None)


def mmimdb_model(classes: dict, in_dims, first, d: int, labels: int, gen: torch.Generator):
    """An MMDL of MaxOut encoders, the MM-IMDB DEQFusion and head, weights random (BN statistics too)."""
    encoders = [classes["MaxOut_MLP"](f, k, d) for k, f in zip(in_dims, first)]
    model = classes["MMDL"](encoders, classes["DEQFusion"](d, len(in_dims)), classes["Linear"](d, labels))
    sd = block_state(len(in_dims), d, gen, mixing=True, prefix="fuse.")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in sd:
                p.copy_(sd[name])
            elif name.startswith("head."):
                p.copy_(torch.randn(p.shape, generator=gen) * (3.0 / d**0.5 if p.ndim == 2 else 0.2))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / (p.shape[-1] ** 0.5 if p.ndim == 2 else 3) + (
                    1.0 if name.endswith("weight") and p.ndim == 1 else 0.0))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return model.eval()


# -- datasets -----------------------------------------------------------------------------------------
def write_features(path, names, arrays, labels, class_names):
    """A DEQ Studio dataset of the given per-modality arrays; labels (N,) or (N, C) of 0/1 (multilabel)."""
    import numpy as np

    from deqstudio.io.dataset import Dataset, Modality, stratified_splits, write_dataset

    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    order = np.random.default_rng(0).permutation(n)
    thirds = np.array_split(order, 3)  # every split non-empty, whatever the labels
    splits = (stratified_splits(labels) if labels.ndim == 1 and np.bincount(labels).min() >= 5 else
              {s: np.sort(idx).astype(np.int64) for s, idx in zip(("train", "val", "test"), thirds)})
    ds = Dataset(path.stem, {m: Modality(m, "vector", np.asarray(a, dtype=np.float32)) for m, a in zip(names, arrays)},
                 labels, tuple(class_names), splits)
    write_dataset(ds, path)
    return path


def imported_user_model(folder, *, multilabel: bool, seed: int = 0, n: int = 2, d: int = 32, classes: int = 4,
                        samples: int = 30):
    """A root-layout user model imported on its features: (checkpoint, dataset, state dict, features)."""
    import numpy as np

    from deqstudio.io.dataset import read_dataset
    from deqstudio.workflows.import_deqfusion import plan_import, write_import

    gen = torch.Generator().manual_seed(seed)
    sd = user_model_state(n, d, classes, gen)
    feats = [torch.randn(samples, d, generator=gen) * 2 for _ in range(n)]
    labels = ((torch.rand(samples, classes, generator=gen) > 0.5).long().numpy() if multilabel
              else np.arange(samples) % classes)
    torch.save(sd, folder / "official.pt")
    data = write_features(folder / "features.h5", [f"m{i}" for i in range(n)], [f.numpy() for f in feats], labels,
                          [f"label{i}" for i in range(classes)])
    ck = write_import(plan_import(folder / "official.pt", read_dataset(data)), folder / "imported.pt")
    return ck, data, sd, feats
