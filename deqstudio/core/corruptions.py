"""Seeded, pure corruptions of raw modality features (DESIGN.md §4.3).

``corrupt(x, modality_kind, kind, severity, seed, modality=NAME)`` returns a corrupted copy of a (B, D)
batch (or a (D,) sample). Severity is continuous on 0–5: 0 is clean, 1–5 are the labelled snap points of
``CORRUPTIONS`` (ImageNet-C convention) and the parameter is interpolated linearly between them.

Randomness is drawn per sample from ``(seed, sample_id, modality_key(modality))``, so a sample
corrupted alone equals the same sample corrupted inside a sweep batch, two modalities corrupted with
the same seed get independent draws, and it is coupled across severities (one uniform draw per
element, compared against a growing threshold), so a higher severity never undoes a lower one.
"""

from __future__ import annotations

import math
import numbers
import re
import zlib
from dataclasses import dataclass

import numpy as np

MAX_SEVERITY = 5.0
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class CorruptionKind:
    name: str
    parameter: str
    unit: str
    clean: float
    levels: tuple[float, float, float, float, float]
    image_only: bool = False


# The single parameter table: the value at severity 0 (clean) and at the snap points 1–5.
CORRUPTIONS: dict[str, CorruptionKind] = {
    k.name: k
    for k in (
        CorruptionKind("gaussian", "noise std", "x feature training std", 0.0, (0.25, 0.5, 1.0, 1.5, 2.0)),
        CorruptionKind("mask", "fraction of features zeroed", "fraction", 0.0, (0.1, 0.2, 0.35, 0.5, 0.7)),
        CorruptionKind("drop", "probability the whole modality is zeroed", "probability", 0.0, (0.2, 0.4, 0.6, 0.8, 1.0)),
        CorruptionKind("shuffle", "probability of another sample's modality", "probability", 0.0, (0.2, 0.4, 0.6, 0.8, 1.0)),
        CorruptionKind("blur", "Gaussian blur sigma", "pixels", 0.0, (0.5, 0.75, 1.0, 1.5, 2.0), image_only=True),
        CorruptionKind("impulse", "salt-and-pepper amount", "fraction of pixels", 0.0, (0.03, 0.06, 0.09, 0.17, 0.27), image_only=True),
        CorruptionKind("contrast", "contrast factor", "x original contrast", 1.0, (0.4, 0.3, 0.2, 0.1, 0.05), image_only=True),
    )
}
VECTOR_KINDS = tuple(name for name, k in CORRUPTIONS.items() if not k.image_only)
IMAGE_KINDS = tuple(CORRUPTIONS)


def kinds_for(modality_kind: str) -> tuple[str, ...]:
    """The corruption kinds offered for a modality kind ("vector" or "image")."""
    if modality_kind == "image":
        return IMAGE_KINDS
    if modality_kind == "vector":
        return VECTOR_KINDS
    raise ValueError(f"unknown modality kind {modality_kind!r}; expected 'vector' or 'image'")


def _check_severity(severity: float) -> float:
    try:
        s = float(severity)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"severity must be a number from 0 to 5, got {severity!r}") from None
    if not (0.0 <= s <= MAX_SEVERITY):
        raise ValueError(f"severity must be from 0 to 5, got {severity!r}")
    return s


def parameter_for(kind: str, severity: float) -> float:
    """The kind's parameter at a (continuous) severity."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption kind {kind!r}; expected one of {', '.join(CORRUPTIONS)}")
    spec = CORRUPTIONS[kind]
    s = _check_severity(severity)
    points = (spec.clean, *spec.levels)
    lo = min(int(math.floor(s)), 4)
    t = s - lo
    return float(points[lo] + t * (points[lo + 1] - points[lo]))


def describe_table() -> list[dict]:
    """The parameter table as rows, for exports and the README."""
    return [
        {
            "kind": k.name,
            "parameter": k.parameter,
            "unit": k.unit,
            "severity_0": k.clean,
            **{f"severity_{i}": v for i, v in enumerate(k.levels, start=1)},
            "modalities": "image" if k.image_only else "vector, image",
        }
        for k in CORRUPTIONS.values()
    ]


def modality_key(modality: str) -> int:
    """A stable 32-bit key of a modality's name (CRC-32 of its UTF-8 bytes; the same in every process)."""
    if not isinstance(modality, str):
        raise ValueError(f"modality must be the modality's name (a string), got {modality!r}")
    return zlib.crc32(modality.encode("utf-8"))


def _rngs(seed: int, sample_ids: np.ndarray, key: int) -> list[np.random.Generator]:
    return [np.random.default_rng([int(seed) & 0xFFFFFFFF, int(i) & 0xFFFFFFFF, key]) for i in sample_ids]


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    with np.errstate(over="ignore"):  # a vanishing sigma: the off-centre weights are exactly 0
        k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (B, H, W) with reflected borders."""
    if sigma <= 0:
        return images
    k = _gaussian_kernel(sigma)
    r = len(k) // 2
    out = images.astype(np.float64)
    for axis in (1, 2):
        size = out.shape[axis]
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        mode = "reflect" if size > r else "symmetric"
        padded = np.pad(out, pad, mode=mode)
        acc = np.zeros_like(out)
        for j, w in enumerate(k):
            acc += w * np.take(padded, np.arange(j, j + size), axis=axis)
        out = acc
    return out


def corrupt(
    x,
    modality_kind: str,
    kind: str,
    severity: float,
    seed: int = 0,
    *,
    modality: str,
    feature_std=None,
    image_shape: tuple[int, int] | None = None,
    value_range: tuple[float, float] | None = None,
    sample_ids=None,
    pool=None,
    pool_ids=None,
) -> np.ndarray:
    """A corrupted float32 copy of ``x`` (shape (B, D) or (D,)); ``x`` itself is never modified.

    modality: the modality's name, which keys its randomness with the seed and the sample.
    feature_std: per-feature (D,) or scalar scale of ``gaussian`` noise (default 1, raw units).
    image_shape: (H, W) of an image modality (required for blur, impulse, contrast).
    value_range: (low, high) for ``impulse`` pepper and salt (default: each image's min and max).
    sample_ids: identities of the rows, which key their randomness (default 0..B-1).
    pool, pool_ids: rows ``shuffle`` may swap in (default: the batch itself); a row is never
    swapped with a pool row carrying its own id. ``pool`` is a (P, D) array, or any object with ``len()`` and
    ``rows(positions) -> (K, D)`` (e.g. rows read on demand from a file: only those swapped in are read).
    """
    key = modality_key(modality)
    allowed = kinds_for(modality_kind)
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption kind {kind!r}; expected one of {', '.join(CORRUPTIONS)}")
    if kind not in allowed:
        raise ValueError(f"corruption {kind!r} applies to image modalities only, not to a {modality_kind} modality")
    p = parameter_for(kind, severity)
    arr = np.asarray(x)
    if arr.ndim not in (1, 2):
        raise ValueError(f"corrupt expects a (D,) sample or a (B, D) batch, got shape {arr.shape}")
    single = arr.ndim == 1
    batch = arr.reshape(1, -1) if single else arr
    if not np.issubdtype(batch.dtype, np.number):
        raise ValueError(f"corrupt expects numeric features, got dtype {batch.dtype}")
    out = batch.astype(np.float32, copy=True)
    n, d = out.shape
    ids = np.arange(n) if sample_ids is None else np.asarray(sample_ids).reshape(-1)
    if len(ids) != n:
        raise ValueError(f"sample_ids has {len(ids)} entries for {n} rows")
    try:
        seed = int(seed)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"seed must be an integer, got {seed!r}") from None

    if CORRUPTIONS[kind].image_only:
        if image_shape is None or len(image_shape) != 2 or int(image_shape[0]) * int(image_shape[1]) != d:
            raise ValueError(f"corruption {kind!r} needs an image_shape (H, W) with H*W = {d}, got {image_shape!r}")
    if p == CORRUPTIONS[kind].clean or n == 0:
        return out.reshape(arr.shape)
    rngs = _rngs(seed, ids, key)

    if kind == "gaussian":
        scale = np.ones(d, np.float32) if feature_std is None else np.broadcast_to(np.asarray(feature_std, np.float32), (d,))
        if not np.all(np.isfinite(scale)):
            raise ValueError("feature_std must be finite")
        eps = np.stack([r.standard_normal(d) for r in rngs]).astype(np.float32)
        out += p * eps * scale
    elif kind == "mask":
        u = np.stack([r.random(d) for r in rngs])
        out[u < p] = 0.0
    elif kind == "drop":
        u = np.array([r.random() for r in rngs])
        out[u < p] = 0.0
    elif kind == "shuffle":
        source = pool if pool is not None and callable(getattr(pool, "rows", None)) else None
        src = out.copy() if pool is None else None if source is not None else np.asarray(pool, np.float32).reshape(-1, d)
        n_src = len(source) if source is not None else len(src)
        src_ids = (ids if pool is None else np.arange(n_src)) if pool_ids is None else np.asarray(pool_ids).reshape(-1)
        if len(src_ids) != n_src:
            raise ValueError(f"pool_ids has {len(src_ids)} entries for {n_src} pool rows")
        hits, partners = [], []
        for b, r in enumerate(rngs):
            u = r.random()
            candidates = np.flatnonzero(src_ids != ids[b])
            if len(candidates) == 0:
                raise ValueError("shuffle needs at least one other sample to swap in, and its pool holds none")
            partner = candidates[r.integers(len(candidates))]
            if u < p:
                hits.append(b)
                partners.append(partner)
        if hits:  # only the rows swapped in are read (a row source reads them from its file)
            partners = np.asarray(partners, dtype=np.int64)
            out[hits] = source.rows(partners) if source is not None else src[partners]
    else:
        h, w = int(image_shape[0]), int(image_shape[1])
        images = out.reshape(n, h, w)
        if kind == "blur":
            images = _blur(images, p).astype(np.float32)
        elif kind == "contrast":
            mean = images.mean(axis=(1, 2), keepdims=True)
            images = (images - mean) * p + mean
        elif kind == "impulse":
            if value_range is None:
                low = images.min(axis=(1, 2), keepdims=True)
                high = images.max(axis=(1, 2), keepdims=True)
            else:
                low = np.full((n, 1, 1), float(value_range[0]), np.float32)
                high = np.full((n, 1, 1), float(value_range[1]), np.float32)
            u = np.stack([r.random((h, w)) for r in rngs])
            salt = np.stack([r.random((h, w)) for r in rngs]) < 0.5
            hit = u < p
            images = np.where(hit & salt, high, np.where(hit & ~salt, low, images))
        out = images.reshape(n, d).astype(np.float32)
    return out.reshape(arr.shape)


_SPEC = re.compile(
    r"^\s*(?P<modality>[^=\s]+)\s*=\s*(?P<kind>[a-z]+)\s*:\s*(?P<severity>[-+0-9.eE]+)\s*(?:@\s*(?P<seed>-?\d+))?\s*$"
)


@dataclass(frozen=True)
class Corruption:
    """How one modality is corrupted: a kind of ``CORRUPTIONS``, a severity from 0 (clean) to 5, a seed.

    The same value serves the studio's sliders, sessions, the command line (written
    ``MOD=KIND:SEVERITY[@SEED]``, see ``parse`` and ``text``) and the analyses. Raises ValueError on a kind,
    severity or seed that cannot be used.

    >>> Corruption.parse("pix=gaussian:3@7")
    ('pix', Corruption(kind='gaussian', severity=3.0, seed=7))
    >>> Corruption("mask", 2.5).text("fou")
    'fou=mask:2.5'
    """

    kind: str = "gaussian"
    severity: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in CORRUPTIONS:
            raise ValueError(f"unknown corruption kind {self.kind!r}; expected one of {', '.join(CORRUPTIONS)}")
        object.__setattr__(self, "severity", _check_severity(self.severity))
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"corruption seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def active(self) -> bool:
        """Whether it changes anything (severity above 0)."""
        return self.severity > 0

    @property
    def parameter(self) -> float:
        return parameter_for(self.kind, self.severity)

    def label(self) -> str:
        """``gaussian 3 (noise std 1)``: the kind, the severity and what it means."""
        spec = CORRUPTIONS[self.kind]
        return f"{self.kind} {self.severity:g} ({spec.parameter} {self.parameter:.3g})"

    def text(self, modality: str) -> str:
        """The command-line form ``MOD=KIND:SEVERITY[@SEED]`` (the seed only when not 0)."""
        return f"{modality}={self.kind}:{self.severity:g}" + (f"@{self.seed}" if self.seed else "")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "severity": self.severity, "seed": self.seed,
                "parameter": self.parameter, "parameter_name": CORRUPTIONS[self.kind].parameter}

    @classmethod
    def from_dict(cls, data) -> "Corruption":
        if not isinstance(data, dict):
            raise ValueError(f"a corruption must be an object with kind, severity and seed, got {data!r}")
        unknown = sorted(set(data) - {"kind", "severity", "seed", "parameter", "parameter_name"})
        if unknown:
            raise ValueError(f"unknown corruption field(s): {', '.join(map(str, unknown))}")
        return cls(data.get("kind", "gaussian"), data.get("severity", 0.0), data.get("seed", 0))

    @classmethod
    def parse(cls, text: str) -> tuple[str, "Corruption"]:
        """``(modality, corruption)`` from ``MOD=KIND:SEVERITY[@SEED]``."""
        m = _SPEC.match(text or "") if isinstance(text, str) else None
        if not m:
            raise ValueError(f"cannot read corruption {text!r}; expected MODALITY=KIND:SEVERITY[@SEED], e.g. pix=gaussian:3")
        try:
            severity = float(m["severity"])
        except ValueError:
            raise ValueError(f"cannot read the severity in {text!r}") from None
        return m["modality"], cls(m["kind"], severity, int(m["seed"]) if m["seed"] else 0)
