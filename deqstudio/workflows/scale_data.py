"""A synthetic dataset the size of MM-IMDB's features, for measuring DEQ Studio at scale (``bench --scale``).

26,000 samples of three modalities — an image of 64×64 = 4,096 features, a 300-d "text" vector and a 50-d
"meta" vector (4,446 features in all) — in 10 classes. Each class has a centre in a small latent space; every
modality sees the latent through its own fixed random projection plus noise of its own strength, so each view
alone is informative but imperfect and fusing them helps. The file is written row block by row block (the
whole array is never held in memory) in chunks of rows, gzip-compressed, in the schema of
``deqstudio.io.dataset``; the same arguments give the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import atomic, hdf5
from ..io.dataset import FORMAT, SPLITS, VERSION

DEFAULT_DIMS = {"image": 4096, "text": 300, "meta": 50}
DEFAULT_SAMPLES = 26_000
LATENT = 16
CLASSES = 10
NOISE = {"image": 2.0, "text": 1.5, "meta": 1.0}  # per-view noise (relative to the latent signal's scale)
BLOCK = 2048  # rows generated and written at a time
CHUNK_ROWS = 64  # HDF5 chunk: this many whole rows


def make_scale_dataset(path: str | os.PathLike, samples: int = DEFAULT_SAMPLES, dims: dict | None = None,
                       seed: int = 0, compression: str | None = "gzip") -> Path:
    """Write the synthetic dataset to ``path`` atomically; returns the path.

    ``dims`` maps modality names to feature counts; a square count named ``image`` is stored as an image.
    """
    import h5py

    dims = dict(dims or DEFAULT_DIMS)
    if samples < 10 * CLASSES:
        raise ValueError(f"a scale dataset needs at least {10 * CLASSES} samples, got {samples}")
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (CLASSES, LATENT)).astype(np.float32)
    projections = {name: (rng.normal(0.0, 1.0, (LATENT, d)) / np.sqrt(LATENT)).astype(np.float32)
                   for name, d in dims.items()}
    labels = rng.integers(0, CLASSES, samples).astype(np.int64)
    order = rng.permutation(samples)
    cut = (int(0.6 * samples), int(0.8 * samples))
    splits = {"train": np.sort(order[: cut[0]]), "val": np.sort(order[cut[0] : cut[1]]),
              "test": np.sort(order[cut[1] :])}
    opts = {"compression": "gzip", "compression_opts": 1, "shuffle": True} if compression == "gzip" else {}
    path = Path(path)
    with atomic.atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        hdf5.set_attrs(h5, {"format": FORMAT, "version": VERSION, "name": "mmimdb-like",
                            "description": f"synthetic: {samples} samples, "
                                           + ", ".join(f"{n} {d}" for n, d in dims.items())
                                           + f", {CLASSES} classes (deqstudio.workflows.scale_data, seed {seed})",
                            "source": "generated", "license": "CC0"})
        group = h5.create_group("modalities", track_order=True)
        dsets = {}
        for name, d in dims.items():
            side = int(round(np.sqrt(d)))
            image = name == "image" and side * side == d
            shape = (samples, side, side) if image else (samples, d)
            chunks = (min(CHUNK_ROWS, samples), *shape[1:])
            dsets[name] = group.create_dataset(name, shape=shape, dtype=np.float32, chunks=chunks,
                                               track_times=False, **opts)
            hdf5.set_attrs(dsets[name], {"kind": "image" if image else "vector",
                                         **({"image_shape": [side, side]} if image else {})})
        for start in range(0, samples, BLOCK):
            stop = min(start + BLOCK, samples)
            block_rng = np.random.default_rng([seed, start])
            latent = centres[labels[start:stop]] + 0.8 * block_rng.normal(0.0, 1.0, (stop - start, LATENT))
            for name, d in dims.items():
                x = latent.astype(np.float32) @ projections[name]
                x += NOISE.get(name, 1.5) * block_rng.standard_normal((stop - start, d), dtype=np.float32)
                dsets[name][start:stop] = x.reshape(stop - start, *dsets[name].shape[1:])
        lab = h5.create_dataset("labels", data=labels, track_times=False)
        hdf5.set_attrs(lab, {"class_names": [f"class {c}" for c in range(CLASSES)]})
        group = h5.create_group("splits")
        for split in SPLITS:
            group.create_dataset(split, data=splits[split].astype(np.int64), track_times=False)
    return path
