"""Where an official DEQ fusion model keeps its weights: the block, its mixing scalars, the head, the encoders.

Everything here reads key names and shapes only (``shapes``: name -> shape tuple). The fusion block is found by
its keys (``<prefix>func_.branches.{i}.conv1.weight`` …, ``shared/BYOM.md`` §1); the experiments' layouts by
theirs: the BRCA experiment's MMDynamic (``FeatureInforEncoder.{v}.clf.0`` …, head ``MMClasifier.0.clf.0``)
and the MM-IMDB experiment's MMDL (``encoders.{v}.op1.lin`` …, head ``head.fc``). A problem is a one-line
``UsageError`` naming what to pass, or what is wrong with which key — never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..core.kinds import GROUPS
from ..errors import UsageError, printable

BLOCK_KEY = re.compile(r"^(?P<prefix>.*?)func_\.branches\.(?P<i>\d+)\.conv1\.weight$")
BRANCH_PARTS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "gn1.weight", "gn1.bias",
                "gn2.weight", "gn2.bias", "gn3.weight", "gn3.bias")
FUSED_PARTS = ("gate.weight", "gate.bias", "fuse.weight", "fuse.bias", "gn3.weight", "gn3.bias")
MMIMDB_CLASS = "fusions.DEQ_fusion.DEQFusion"  # the MM-IMDB experiment's module path, as a whole pickle names it
MMDL_CLASS = "training_structures.Supervised_Learning.MMDL"


def _shown(key: str) -> str:
    return repr(printable(key)[:120])


@dataclass
class Block:
    """A DEQ fusion block found in a state dict."""

    prefix: str
    modalities: int  # N
    width: int  # d
    mixing: bool  # learned weights.{i} and bias (root, MM-IMDB) or a plain sum (BRCA)
    keys: set = field(default_factory=set)

    def key(self, branch: int, part: str) -> str:
        return f"{self.prefix}func_.branches.{branch}.{part}"


def block_prefixes(shapes: dict) -> list[str]:
    """The prefixes under which a fusion block's first branch is found, in key order."""
    out: list[str] = []
    for name in shapes:
        found = BLOCK_KEY.match(name)
        if found and found.group("i") == "0" and found.group("prefix") not in out:
            out.append(found.group("prefix"))
    return out


def choose_prefix(shapes: dict, prefix: str | None) -> str:
    prefixes = block_prefixes(shapes)
    if prefix is not None:
        wanted = prefix if prefix == "" or prefix.endswith(".") else prefix + "."
        if wanted not in prefixes:
            found = ", ".join(repr(p) for p in prefixes) or "none"
            raise UsageError(f"--prefix {prefix!r}: no fusion block there (blocks found under: {found})")
        return wanted
    if not prefixes:
        raise UsageError("no DEQ fusion block in the file: no key ends in 'func_.branches.0.conv1.weight' "
                         "(the official DEQFusion module's layout)")
    if len(prefixes) > 1:
        raise UsageError(f"{len(prefixes)} DEQ fusion blocks in the file (under "
                         f"{', '.join(repr(p) for p in prefixes)}): pass --prefix with the one to import")
    return prefixes[0]


def _expect(shapes: dict, key: str, shape: tuple) -> None:
    if key not in shapes:
        raise UsageError(f"the fusion block lacks {_shown(key)}")
    if tuple(shapes[key]) != tuple(shape):
        raise UsageError(f"{_shown(key)} has shape {tuple(shapes[key])}, the block needs {tuple(shape)}")


def read_block(shapes: dict, prefix: str) -> Block:
    """The block under ``prefix``, every key and shape checked (extra keys in it are refused too)."""
    first = f"{prefix}func_.branches.0.conv1.weight"
    shape = tuple(shapes[first])
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < GROUPS:
        raise UsageError(f"{_shown(first)} has shape {shape}; the block's Linear layers are square (d, d)")
    d = shape[0]
    if d % GROUPS:
        raise UsageError(f"the block's width {d} is not a multiple of {GROUPS} (its GroupNorms have 4 groups)")
    inside = [k for k in shapes if k.startswith(f"{prefix}func_.")]
    branches = set()
    for k in inside:
        found = re.match(re.escape(prefix) + r"func_\.branches\.(\d+)\.", k)
        if found is None:
            raise UsageError(f"unexpected key {_shown(k)} in the fusion block")
        branches.add(int(found.group(1)))
    n = max(branches)  # the last branch is the fused one
    if n < 1 or branches != set(range(n + 1)):
        raise UsageError(f"the fusion block under {prefix!r} has branches {sorted(branches)}; expected 0..N "
                         "(N modality branches and the fused branch)")
    block = Block(prefix, n, d, False)
    expected = set()
    for i in range(n):
        for part in BRANCH_PARTS:
            key = block.key(i, part)
            _expect(shapes, key, (d, d) if part.endswith("weight") and part.startswith("conv") else (d,))
            expected.add(key)
    for part in FUSED_PARTS:
        key = block.key(n, part)
        _expect(shapes, key, (d, d) if part in ("gate.weight", "fuse.weight") else (d,))
        expected.add(key)
    extra = sorted(set(inside) - expected)
    if extra:
        raise UsageError(f"unexpected key {_shown(extra[0])} in the fusion block"
                         + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    mixing = [f"{prefix}weights.{i}" for i in range(n)] + [f"{prefix}bias"]
    present = [k for k in mixing if k in shapes]
    stray = sorted(k for k in shapes if re.fullmatch(re.escape(prefix) + r"weights\.\d+", k) and k not in mixing)
    if stray:
        raise UsageError(f"unexpected key {_shown(stray[0])}: the block fuses {n} modalities")
    if present and len(present) != len(mixing):
        missing = [k for k in mixing if k not in shapes]
        raise UsageError(f"the block's mixing scalars are incomplete: it has {_shown(present[0])} but lacks "
                         f"{_shown(missing[0])}")
    for k in present:
        _expect(shapes, k, (1,))
    block.mixing = bool(present)
    block.keys = expected | set(present)
    return block


# -- the experiments' layouts ------------------------------------------------------------------------
@dataclass
class Layout:
    """What surrounds the block: the experiment, its head, its encoders (key stems per modality)."""

    name: str  # "generic", "brca" (MMDynamic) or "mmimdb" (MMDL)
    head: str | None = None  # key stem of the classifier
    encoders: str = "none"  # "none", "mmdynamic" or "maxout"
    encoder_inputs: tuple[int, ...] = ()  # per branch: the raw input size the encoder reads
    encoder_hidden: tuple[int, ...] = ()  # per branch (maxout): the first hidden width
    encoder_problem: str = ""  # why the encoders cannot be used (raw inputs then refused with this)
    mapping: dict = field(default_factory=dict)  # our key -> the file's key, for the encoders' weights


def _model_prefix(block: Block, tail: str) -> str | None:
    return block.prefix[: -len(tail)] if block.prefix.endswith(tail) else None


def detect_layout(shapes: dict, block: Block) -> Layout:
    root = _model_prefix(block, "deq_fusion.")
    if root is not None and f"{root}FeatureInforEncoder.0.clf.0.weight" in shapes:
        return _brca(shapes, block, root)
    root = _model_prefix(block, "fuse.")
    if root is not None and f"{root}encoders.0.op1.lin.weight" in shapes and f"{root}head.fc.weight" in shapes:
        return _mmimdb(shapes, block, root)
    return Layout("generic")


def _brca(shapes: dict, block: Block, root: str) -> Layout:
    d = block.width
    heads = sorted({k.split(".clf.")[0] for k in shapes if k.startswith(f"{root}MMClasifier.") and ".clf." in k})
    layout = Layout("brca", head=f"{root}MMClasifier.0.clf.0", encoders="mmdynamic")
    if heads != [f"{root}MMClasifier.0"]:
        layout.head = None
        layout.encoder_problem = (f"its MMClasifier has {len(heads)} linear layers; DEQ Studio reads a single "
                                  "linear head")
        return layout
    inputs, mapping = [], {}
    parts = {"info": "FeatureInforEncoder", "encoder": "FeatureEncoder", "confidence": "TCPConfidenceLayer",
             "classifier": "TCPClassifierLayer"}
    for v in range(block.modalities):
        for ours, theirs in parts.items():
            for leaf in ("weight", "bias"):
                key = f"{root}{theirs}.{v}.clf.0.{leaf}"
                if key not in shapes:
                    layout.encoder_problem = f"the BRCA encoders lack {_shown(key)}"
                    return layout
                mapping[f"trunks.{v}.{ours}.{leaf}"] = key
        info = tuple(shapes[f"{root}FeatureInforEncoder.{v}.clf.0.weight"])
        enc = tuple(shapes[f"{root}FeatureEncoder.{v}.clf.0.weight"])
        if len(info) != 2 or info[0] != info[1] or enc != (d, info[0]):
            layout.encoder_problem = (f"view {v}'s encoder shapes {info} and {enc} do not chain into the block's "
                                      f"width {d}")
            return layout
        inputs.append(info[0])
    layout.encoder_inputs, layout.mapping = tuple(inputs), mapping
    return layout


_MAXOUT = {"norm0": "op0", "lin1": "op1.lin", "norm1": "op2.0", "lin2": "op3.lin", "norm2": "op4.0"}
_NORM_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _mmimdb(shapes: dict, block: Block, root: str) -> Layout:
    d = block.width
    layout = Layout("mmimdb", head=f"{root}head.fc", encoders="maxout")
    inputs, hidden, mapping = [], [], {}
    for v in range(block.modalities):
        stem = f"{root}encoders.{v}."
        if any(k.startswith(f"{stem}hid2val.") for k in shapes):
            layout.encoder_problem = f"encoder {v} ends in an output layer (hid2val), which DEQ Studio does not read"
            return layout
        for ours, theirs in _MAXOUT.items():
            for leaf in (("weight", "bias") if ours.startswith("lin") else _NORM_LEAVES):
                key = f"{stem}{theirs}.{leaf}"
                if key not in shapes:
                    layout.encoder_problem = f"the MM-IMDB encoders lack {_shown(key)}"
                    return layout
                mapping[f"trunks.{v}.{ours}.{leaf}"] = key
        lin1, lin2 = tuple(shapes[f"{stem}op1.lin.weight"]), tuple(shapes[f"{stem}op3.lin.weight"])
        if len(lin1) != 2 or len(lin2) != 2 or lin1[0] % 2 or lin2 != (2 * d, lin1[0] // 2):
            layout.encoder_problem = (f"encoder {v}'s maxout layers {lin1} and {lin2} do not chain into the "
                                      f"block's width {d}")
            return layout
        inputs.append(lin1[1])
        hidden.append(lin1[0] // 2)
    layout.encoder_inputs, layout.encoder_hidden, layout.mapping = tuple(inputs), tuple(hidden), mapping
    return layout


# -- the head ----------------------------------------------------------------------------------------
def _stem(key: str) -> str:
    return key[: -len(".weight")] if key.endswith(".weight") else key


def find_head(shapes: dict, block: Block, layout: Layout, head_key: str | None, num_classes: int) -> tuple[str, int]:
    """(the classifier's key stem, its class count): ``--head-key``, the layout's, or the one (C, d) weight."""
    d = block.width
    if head_key is not None:
        stem = _stem(head_key)
        weight = f"{stem}.weight"
        if weight not in shapes:
            raise UsageError(f"--head-key {head_key!r}: the file has no {_shown(weight)}")
        shape = tuple(shapes[weight])
        if len(shape) != 2 or shape[1] != d or shape[0] < 2:
            raise UsageError(f"--head-key {head_key!r}: {_shown(weight)} has shape {shape}; a head on the fused "
                             f"state is (C, {d}) with C >= 2")
        return _check_bias(shapes, stem, shape[0])
    if layout.head is not None:
        weight = f"{layout.head}.weight"
        shape = tuple(shapes.get(weight, ()))
        if len(shape) != 2 or shape[1] != d:
            raise UsageError(f"{_shown(weight)} has shape {shape}; the {layout.name} head is (C, {d})")
        return _check_bias(shapes, layout.head, shape[0])
    if layout.name == "brca":
        raise UsageError(f"cannot import this BRCA model's head: {layout.encoder_problem}")
    fits = [k for k, s in shapes.items() if k.endswith(".weight") and k not in block.keys and len(s) == 2
            and s[1] == d and s[0] >= 2]
    named = fits
    if len(fits) > 1:
        named = [k for k in fits if shapes[k][0] == num_classes]
    if len(named) == 1:
        stem = _stem(named[0])
        return _check_bias(shapes, stem, int(shapes[named[0]][0]))
    if not fits:
        raise UsageError(f"no classifier layer fits the fused state (no 2-D weight of shape (C, {d}) outside the "
                         "block): pass --head-key with its name")
    listed = ", ".join(repr(printable(_stem(k))) for k in (named or fits)[:4])
    more = f" and {len(named or fits) - 4} more" if len(named or fits) > 4 else ""
    raise UsageError(f"{len(named or fits)} layers could be the classifier on the fused state ({listed}{more}): "
                     "pass --head-key with its name")


def _check_bias(shapes: dict, stem: str, classes: int) -> tuple[str, int]:
    bias = f"{stem}.bias"
    if bias in shapes and tuple(shapes[bias]) != (classes,):
        raise UsageError(f"{_shown(bias)} has shape {tuple(shapes[bias])}, the head needs ({classes},)")
    return stem, classes
