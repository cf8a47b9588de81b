"""A synthetic multimodal dataset with known ground truth, for tests and examples.

Each modality m draws x = informativeness_m · P_m[y] + noise_m · ε, with class prototypes P_m ~ N(0, I):
informativeness sets how much the modality knows about the label, noise how hard it is to read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import Dataset, Modality, stratified_splits


@dataclass(frozen=True)
class SyntheticModality:
    name: str
    dim: int
    informativeness: float = 1.0
    noise: float = 1.0
    image_shape: tuple[int, int] | None = None


DEFAULT_MODALITIES = (
    SyntheticModality("strong", 16, informativeness=1.5, noise=1.0),
    SyntheticModality("weak", 12, informativeness=0.5, noise=1.0),
    SyntheticModality("picture", 64, informativeness=0.8, noise=1.0, image_shape=(8, 8)),
)


def make_synthetic(n: int = 600, num_classes: int = 4, modalities=DEFAULT_MODALITIES, seed: int = 0) -> Dataset:
    """A Dataset whose ``extra_attrs['ground_truth']`` holds each modality's informativeness and noise."""
    if n < 3 * num_classes:
        raise ValueError(f"need at least {3 * num_classes} samples for {num_classes} classes, got {n}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    mods = {}
    for spec in modalities:
        prototypes = rng.standard_normal((num_classes, spec.dim))
        x = spec.informativeness * prototypes[labels] + spec.noise * rng.standard_normal((n, spec.dim))
        kind = "image" if spec.image_shape else "vector"
        mods[spec.name] = Modality(spec.name, kind, x.astype(np.float32), spec.image_shape)
    ds = Dataset(
        name=f"synthetic-{seed}", modalities=mods, labels=labels, class_names=tuple(f"class {c}" for c in range(num_classes)),
        splits=stratified_splits(labels, seed=seed), description="synthetic Gaussian prototypes with known informativeness",
        source="deqstudio.io.synthetic.make_synthetic", license="CC0",
    )
    ds.extra_attrs["ground_truth"] = {s.name: {"informativeness": s.informativeness, "noise": s.noise} for s in modalities}
    return ds
