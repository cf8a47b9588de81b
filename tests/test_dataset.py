"""The HDF5 dataset schema: round trip, the bundled files, and every kind of invalid file."""

import h5py
import numpy as np
import pytest

from deqstudio.io.dataset import Dataset, DatasetError, Modality, read_dataset, stratified_splits, write_dataset
from deqstudio.io.synthetic import make_synthetic
from deqstudio.paths import datasets_dir


@pytest.fixture
def valid_file(tmp_path):
    ds = make_synthetic(n=60, num_classes=3, seed=1)
    return write_dataset(ds, tmp_path / "syn.h5"), ds


def test_round_trip_keeps_every_array(valid_file):
    path, ds = valid_file
    back = read_dataset(path)
    assert back.modality_names == ds.modality_names
    for name in ds.modality_names:
        np.testing.assert_array_equal(back.modalities[name].data, ds.modalities[name].data)
    assert back.modalities["picture"].image_shape == (8, 8) and back.modalities["picture"].kind == "image"
    np.testing.assert_array_equal(back.labels, ds.labels)
    assert back.class_names == ds.class_names
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(back.splits[split], ds.splits[split])
    assert len(back.sha256) == 64


def test_readme_example_writes_a_valid_file(tmp_path):
    # the ten-line example in the README, verbatim in spirit: numpy arrays → a file the app opens
    n = 30
    with h5py.File(tmp_path / "mine.h5", "w") as f:
        f.attrs.update(format="deqstudio-dataset", version=1, name="mine")
        f.create_dataset("modalities/audio", data=np.random.rand(n, 20).astype("float32")).attrs["kind"] = "vector"
        img = f.create_dataset("modalities/video", data=np.random.rand(n, 4, 5).astype("float32"))
        img.attrs.update(kind="image", image_shape=(4, 5))
        f.create_dataset("labels", data=np.arange(n) % 2).attrs["class_names"] = ["no", "yes"]
        for split, idx in {"train": range(20), "val": range(20, 25), "test": range(25, 30)}.items():
            f.create_dataset(f"splits/{split}", data=np.array(idx))
    ds = read_dataset(tmp_path / "mine.h5")
    assert ds.modalities["video"].data.shape == (30, 20)


@pytest.mark.parametrize("name, modalities", [
    ("uci_mfeat.h5", {"pix": 240, "fou": 76, "fac": 216, "kar": 64, "zer": 47, "mor": 6}),
    ("breast_cancer.h5", {"mean": 10, "se": 10, "worst": 10}),
])
def test_bundled_datasets_open(name, modalities):
    ds = read_dataset(datasets_dir() / name)
    assert {n: m.dim for n, m in ds.modalities.items()} == modalities
    if name == "uci_mfeat.h5":
        assert len(ds) == 2000 and ds.num_classes == 10
        assert ds.modalities["pix"].image_shape == (16, 15)
        assert ds.modalities["pix"].data.min() == 0 and ds.modalities["pix"].data.max() == 6
        assert "CC BY 4.0" in ds.license
    else:
        assert len(ds) == 569 and ds.class_names == ("malignant", "benign")
        assert np.bincount(ds.labels).tolist() == [212, 357]


def _mutate(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)
    return path


def _replace(f, name, data):
    attrs = dict(f[name].attrs)
    del f[name]
    f.create_dataset(name, data=data).attrs.update(attrs)


@pytest.mark.parametrize("mutation, message", [
    (lambda f: f.attrs.__setitem__("format", "something-else"), "not a DEQ Studio dataset"),
    (lambda f: f.attrs.__setitem__("version", 7), "version"),
    (lambda f: f.__delitem__("modalities"), "missing group /modalities"),
    (lambda f: f.__delitem__("labels"), "missing labels"),
    (lambda f: f.__delitem__("splits/val"), "missing split /splits/val"),
    (lambda f: _replace(f, "modalities/strong", f["modalities/strong"][:-3]), "has 57 rows but /labels has 60"),
    (lambda f: _replace(f, "modalities/weak", np.where(np.arange(12) == 3, np.nan, f["modalities/weak"][()])), "non-finite"),
    (lambda f: _replace(f, "modalities/weak", f["modalities/weak"][()].astype("int32")), "floating point"),
    (lambda f: _replace(f, "labels", f["labels"][()].astype("float32")), "integer"),
    (lambda f: _replace(f, "labels", f["labels"][()] + 5), "labels must lie in 0..2"),
    (lambda f: _replace(f, "splits/test", np.array([], dtype=np.int64)), "split 'test' is empty"),
    (lambda f: _replace(f, "splits/train", np.array([0, 1, 999])), "outside"),
    (lambda f: f["labels"].attrs.__delitem__("class_names"), "class_names"),
    (lambda f: f["modalities/picture"].attrs.__setitem__("image_shape", (7, 7)), "image_shape"),
    (lambda f: f["modalities/weak"].attrs.__setitem__("kind", "audio"), "kind 'audio'"),
])
def test_invalid_files_are_refused_with_the_problem_named(valid_file, mutation, message):
    path, _ = valid_file
    _mutate(path, mutation)
    with pytest.raises(DatasetError, match=message):
        read_dataset(path)


def test_not_hdf5_truncated_and_missing_files(tmp_path, valid_file):
    path, _ = valid_file
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        read_dataset(tmp_path / "text.h5")
    data = path.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match=r"text\.h5|cut\.h5"):
        read_dataset(tmp_path / "cut.h5")
    with pytest.raises(DatasetError, match="no such file"):
        read_dataset(tmp_path / "absent.h5")


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, valid_file):
    _, ds = valid_file
    target = tmp_path / "out.h5"
    target.write_bytes(b"previous")
    bad = Dataset.__new__(Dataset)
    bad.__dict__.update(ds.__dict__)
    bad.labels = ds.labels[:-1]
    with pytest.raises(DatasetError):
        write_dataset(bad, target)
    assert target.read_bytes() == b"previous"
    write_dataset(ds, target)
    assert read_dataset(target).name == ds.name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_stratified_splits_partition_and_balance():
    labels = np.repeat(np.arange(4), 50)
    s = stratified_splits(labels, seed=3)
    joined = np.sort(np.concatenate(list(s.values())))
    np.testing.assert_array_equal(joined, np.arange(200))
    assert np.bincount(labels[s["test"]]).tolist() == [10] * 4


def test_in_memory_validation_messages():
    mods = {"a": Modality("a", "vector", np.zeros((4, 2), np.float32))}
    with pytest.raises(DatasetError, match="at least 2 classes"):
        Dataset("x", mods, np.zeros(4, np.int64), ("only",), {"train": np.arange(4)})
