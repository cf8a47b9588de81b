"""Property tests of the loaders and the corruptions: whatever comes in, the clear error or a valid result.

- ``read_dataset`` on random small HDF5 files (shapes, dtypes, NaN/Inf, labels, splits, attributes):
  a dataset that passes ``validate``, or ``DatasetError``; ``Dataset`` objects likewise, and valid ones
  survive a write/read round trip.
- ``load_checkpoint`` on random bytes, damaged checkpoints and random ``torch.save``d structures:
  a working checkpoint or ``CheckpointError``.
- ``corrupt``, ``parameter_for``, ``Corruption.parse``: a finite array of the input's shape (from
  finite input), or ``ValueError``.
- ``ModelConfig`` with random field values: every field within its documented range, or ``ValueError``
  naming the field; ``Session.load`` on random JSON and bytes: ``LoadError`` or settings in range;
  metadata with shared and nested containers: checked in time linear in what was unpickled.
"""

import io
import math
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import event as _event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from deqstudio.core.corruptions import (
    CORRUPTIONS, MAX_SEVERITY, Corruption, corrupt, kinds_for, parameter_for,
)
from deqstudio.io.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from deqstudio.io.dataset import SPLITS, Dataset, DatasetError, Modality, read_dataset, validate, write_dataset

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True, database=None)
VALID_CHECKPOINT = Path(__file__).resolve().parent / "data" / "bad" / "pair_model.pt"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def event(text: str) -> None:
    """Count outcomes (pytest --hypothesis-show-statistics) when inside a property test."""
    if currently_in_test_context():
        _event(text)


def _fill(rng: np.random.Generator, shape, dtype: str, poison) -> np.ndarray:
    values = rng.standard_normal(shape) * 3
    if poison is not None and values.size:
        values.reshape(-1)[int(rng.integers(values.size))] = poison
    if dtype.startswith("S"):
        return values.astype("U6").astype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype)


# ---------------------------------------------------------------------------------------------------
# (a) datasets
# ---------------------------------------------------------------------------------------------------
DTYPES = st.sampled_from(["f8", "f2", "i4", "u1", "?", "S3", "c8"])
POISON = st.sampled_from([np.nan, np.inf, -np.inf, 1e300])
SHAPE_ATTR = st.one_of(
    st.none(), st.tuples(st.integers(-2, 12), st.integers(-2, 12)), st.lists(st.integers(0, 6), max_size=3),
    st.just("3x4"), st.just((math.inf, 1.0)), st.just((10**12, 10**12)),
)
# Each example starts from a valid file and breaks up to three things in it, so that valid files
# (and every single kind of breakage) come up often.
DEFECTS = ("format", "version", "no_modalities", "rows", "kind", "dtype", "ndim", "features", "image_shape",
           "poison", "labels_missing", "labels_dtype", "labels_range", "labels_column", "labels_length",
           "class_names", "splits_missing", "split_missing", "split_range", "split_empty", "split_dtype")
DEFECT_SETS = st.sets(st.sampled_from(DEFECTS), max_size=3)


@st.composite
def modality_layouts(draw, n, defects):
    broken = {d for d in defects if draw(st.booleans())} if defects else set()
    rows = draw(st.integers(0, 9)) if "rows" in broken else n
    kind = draw(st.sampled_from(["audio", None, "Image"])) if "kind" in broken else draw(st.sampled_from(["vector", "image"]))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    image_shape = None
    if kind == "image" and draw(st.booleans()):
        shape = (rows, h, w)
        image_shape = draw(st.sampled_from([(h, w), None]))  # a 3-D image needs no image_shape attribute
    else:
        d = h * w if kind == "image" else draw(st.integers(1, 6))
        shape = (rows, d)
        if kind == "image":
            image_shape = (h, w)
    if "features" in broken:
        shape = (rows, 0)
    if "ndim" in broken:
        shape = draw(st.sampled_from([(rows,), (rows, shape[-1], 2), ()]))
    if "image_shape" in broken:
        image_shape = draw(SHAPE_ATTR)
    return {"shape": shape, "kind": kind, "image_shape": image_shape,
            "dtype": draw(DTYPES) if "dtype" in broken else draw(st.sampled_from(["f4", "f4", "f8", "f2"])),
            "poison": draw(POISON) if "poison" in broken else None, "seed": draw(st.integers(0, 2**16))}


@st.composite
def dataset_layouts(draw):
    defects = draw(DEFECT_SETS)
    n = draw(st.integers(0, 3)) if "split_range" in defects else draw(st.integers(3, 8))
    k = draw(st.integers(1, 4)) if "class_names" in defects else draw(st.integers(2, 4))
    names = draw(st.lists(st.sampled_from(["a", "b", "pix", "vec"]), min_size=1, max_size=3, unique=True))
    label_len = draw(st.integers(0, 9)) if "labels_length" in defects else n
    labels = draw(st.lists(st.integers(-2, k + 2) if "labels_range" in defects else st.integers(0, k - 1),
                           min_size=label_len, max_size=label_len))
    splits = {}
    for split in (*SPLITS, "extra"):
        if split == "extra" and draw(st.booleans()):
            continue
        if "split_missing" in defects and split != "extra" and draw(st.booleans()):
            continue
        values = draw(st.lists(st.integers(-2, n + 2) if "split_range" in defects else st.integers(0, max(n - 1, 0)),
                               min_size=0 if "split_empty" in defects else 1, max_size=6))
        splits[split] = {"values": values,
                         "dtype": draw(st.sampled_from(["f8", "f4", "S2"])) if "split_dtype" in defects else "i8"}
    text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
    return {
        "format": draw(st.sampled_from(["something-else", None]) | text) if "format" in defects else "deqstudio-dataset",
        "version": draw(st.sampled_from([2, "1", -1, None, 1.5, [1, 2], 2**62])) if "version" in defects else 1,
        "modalities": None if "no_modalities" in defects and draw(st.booleans()) else {
            m: draw(modality_layouts(n, defects & {"rows", "kind", "dtype", "ndim", "features", "image_shape", "poison"}))
            for m in names if "no_modalities" not in defects},
        "labels": None if "labels_missing" in defects else {
            "values": labels,
            "dtype": draw(st.sampled_from(["f8", "S2", "?"]) | st.just("i4")) if "labels_dtype" in defects else
            draw(st.sampled_from(["i8", "i4", "u1"])),
            "column": "labels_column" in defects,
        },
        "class_names": draw(st.one_of(st.none(), st.lists(st.text("xyz", min_size=1, max_size=3), max_size=5)))
        if "class_names" in defects else [f"c{i}" for i in range(k)],
        "splits": None if "splits_missing" in defects else splits,
        "defects": sorted(defects),
    }


def _write_layout(path: Path, layout: dict) -> None:
    with h5py.File(path, "w") as f:
        if layout["format"] is not None:
            f.attrs["format"] = np.bytes_(layout["format"].encode())
        if layout["version"] is not None:
            f.attrs["version"] = layout["version"] if not isinstance(layout["version"], str) else np.bytes_(layout["version"])
        if layout["modalities"] is not None:
            group = f.create_group("modalities")
            for name, m in layout["modalities"].items():
                data = _fill(np.random.default_rng(m["seed"]), m["shape"], m["dtype"], m["poison"])
                dset = group.create_dataset(name, data=data)
                if m["kind"] is not None:
                    dset.attrs["kind"] = np.bytes_(m["kind"])
                shape = m["image_shape"]
                if shape is not None:
                    dset.attrs["image_shape"] = np.bytes_(shape) if isinstance(shape, str) else np.asarray(shape)
        if layout["labels"] is not None:
            values = np.asarray(layout["labels"]["values"], dtype=np.int64)
            dtype = layout["labels"]["dtype"]
            data = values.astype("U4").astype(dtype) if dtype.startswith("S") else values.astype(dtype)
            labels = f.create_dataset("labels", data=data.reshape(-1, 1) if layout["labels"]["column"] else data)
            if layout["class_names"] is not None:
                labels.attrs["class_names"] = np.asarray(layout["class_names"], dtype="S")
        if layout["splits"] is not None:
            group = f.create_group("splits")
            for name, s in layout["splits"].items():
                group.create_dataset(name, data=np.asarray(s["values"], dtype=np.int64).astype(s["dtype"]))


def _assert_valid(ds: Dataset) -> None:
    validate(ds)
    n = len(ds)
    assert n > 0 and ds.labels.dtype == np.int64 and ds.labels.ndim == 1
    assert ds.labels.min() >= 0 and ds.labels.max() < ds.num_classes
    for m in ds.modalities.values():
        assert m.data.dtype == np.float32 and m.data.shape == (n, m.dim) and m.dim > 0
        assert np.isfinite(m.data).all()
        if m.kind == "image":
            assert m.image_shape[0] * m.image_shape[1] == m.dim
    assert set(SPLITS) <= set(ds.splits)
    for idx in ds.splits.values():
        assert idx.dtype == np.int64 and idx.size and idx.min() >= 0 and idx.max() < n


@FUZZ
@given(layout=dataset_layouts())
def test_read_dataset_returns_a_valid_dataset_or_raises_dataset_error(workdir, layout):
    path = workdir / "fuzz.h5"
    _write_layout(path, layout)
    try:
        ds = read_dataset(path)
    except DatasetError as exc:
        assert str(exc).startswith("fuzz.h5: ") and "\n" not in str(exc)
        assert layout["defects"], f"a valid file was refused: {exc}"
        event("DatasetError")
        return
    event("valid")
    _assert_valid(ds)


@FUZZ
@given(layout=dataset_layouts(), cut=st.floats(0.0, 1.0), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                                         max_size=4))
def test_damaged_dataset_files_raise_dataset_error(workdir, layout, cut, flips):
    path = workdir / "damaged.h5"
    _write_layout(path, layout)
    raw = bytearray(path.read_bytes())
    for where, value in flips:
        raw[min(int(where * len(raw)), len(raw) - 1)] = value
    path.write_bytes(bytes(raw[: max(0, int(cut * len(raw)))] if cut < 1 else raw))
    try:
        ds = read_dataset(path)
    except DatasetError:
        return
    _assert_valid(ds)


@st.composite
def datasets(draw):
    defects = draw(DEFECT_SETS)
    n = draw(st.integers(0, 7)) if {"rows", "labels_length"} & defects else draw(st.integers(3, 7))
    k = draw(st.integers(0, 4)) if "class_names" in defects else draw(st.integers(2, 4))
    mods = {}
    for name in draw(st.lists(st.sampled_from(["a", "b", "img"]), min_size=0 if "no_modalities" in defects else 1,
                              max_size=3, unique=True)):
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        kind = draw(st.sampled_from(["other", "Image"])) if "kind" in defects else draw(st.sampled_from(["vector", "image"]))
        rows = draw(st.integers(0, 8)) if "rows" in defects else n
        h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        d = 0 if "features" in defects else h * w
        shape = draw(st.sampled_from([(rows,), (rows, d, 1)])) if "ndim" in defects else (rows, d)
        dtype = draw(st.sampled_from(["f8", "i8", "f2"])) if "dtype" in defects else "f4"
        data = _fill(rng, shape, dtype, draw(POISON) if "poison" in defects else None)
        image_shape = draw(st.tuples(st.integers(-2, 9), st.integers(-2, 9))) if "image_shape" in defects else (h, w)
        mods[name] = Modality(name, kind, data, image_shape if kind != "vector" or draw(st.booleans()) else None)
    labels = np.asarray(draw(st.lists(st.integers(-1, k) if "labels_range" in defects else st.integers(0, max(k - 1, 0)),
                                      min_size=n, max_size=n)), dtype=np.int64)
    if "labels_dtype" in defects:
        labels = labels.astype(draw(st.sampled_from(["i4", "f8"])))
    if "labels_column" in defects:
        labels = labels.reshape(-1, 1)
    splits = {}
    for split in SPLITS:
        if "split_missing" in defects and draw(st.booleans()):
            continue
        values = draw(st.lists(st.integers(-1, n) if "split_range" in defects else st.integers(0, max(n - 1, 0)),
                               min_size=0 if "split_empty" in defects else 1, max_size=5))
        splits[split] = np.asarray(values, dtype=draw(st.sampled_from(["i4", "f4"])) if "split_dtype" in defects else np.int64)
    names = tuple(f"class {i}" for i in range(k))
    return {"name": "fuzz", "modalities": mods, "labels": labels, "class_names": names, "splits": splits,
            "defects": defects}


@FUZZ
@given(fields=datasets())
def test_dataset_objects_validate_or_raise_and_valid_ones_round_trip(workdir, fields):
    defects = fields.pop("defects")
    try:
        ds = Dataset(**fields)
    except DatasetError as exc:
        assert "\n" not in str(exc)
        assert defects, f"a valid dataset was refused: {exc}"
        event("DatasetError")
        return
    event("valid")
    _assert_valid(ds)
    back = read_dataset(write_dataset(ds, workdir / "round.h5"))
    assert back.modality_names == ds.modality_names and back.class_names == ds.class_names
    for name, m in ds.modalities.items():
        np.testing.assert_array_equal(back.modalities[name].data, m.data)
        assert back.modalities[name].kind == m.kind
    np.testing.assert_array_equal(back.labels, ds.labels)
    for split, idx in ds.splits.items():
        np.testing.assert_array_equal(back.splits[split], idx)


# ---------------------------------------------------------------------------------------------------
# (b) checkpoints
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def valid_checkpoint():
    data = VALID_CHECKPOINT.read_bytes()
    return data, torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _load_or_error(path: Path) -> Checkpoint | None:
    try:
        ck = load_checkpoint(path)
    except CheckpointError as exc:
        message = str(exc)
        assert message.startswith(f"{path.name}: ") and "\n" not in message
        event(f"CheckpointError: {message.split(': ', 1)[1][:28]}")
        return None
    event("loaded")
    assert isinstance(ck, Checkpoint) and len(ck.sha256) == 64
    for key in ("metrics", "dataset", "dependency", "training"):
        assert isinstance(getattr(ck, key), dict)
    return ck


PREFIXES = st.sampled_from([b"", b"PK\x03\x04", b"PK\x05\x06", b"\x89HDF\r\n\x1a\n", b"\x80\x02", b"\x80\x04"])


@FUZZ
@given(prefix=PREFIXES, body=st.binary(max_size=600))
def test_random_bytes_are_a_checkpoint_error(workdir, prefix, body):
    path = workdir / "random.pt"
    path.write_bytes(prefix + body)
    assert _load_or_error(path) is None


@FUZZ
@given(cut=st.floats(0.0, 1.0), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6))
def test_damaged_checkpoints_load_or_raise_checkpoint_error(workdir, valid_checkpoint, cut, flips):
    raw = bytearray(valid_checkpoint[0])
    for where, value in flips:
        raw[min(int(where * len(raw)), len(raw) - 1)] = value
    path = workdir / "damaged.pt"
    path.write_bytes(bytes(raw[: int(cut * len(raw))] if cut < 1 else raw))
    _load_or_error(path)


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["deqstudio-checkpoint", "deq-udml", "concat", "image", "vector", "anderson", "rel"]),
)
TENSORS = st.builds(
    lambda shape, value, dtype: torch.full(tuple(shape), value).to(dtype),
    st.lists(st.integers(0, 4), max_size=3), st.floats(-4, 4) | st.sampled_from([math.nan, math.inf]),
    st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool]),
)
PLAIN = st.recursive(
    SCALARS | TENSORS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)


def _save(path: Path, obj) -> None:
    torch.save(obj, path)


@FUZZ
@given(obj=PLAIN, tagged=st.booleans())
def test_random_structures_are_a_checkpoint_error(workdir, obj, tagged):
    if tagged and isinstance(obj, dict):
        obj = {**obj, "format": "deqstudio-checkpoint", "version": 1}
    path = workdir / "structure.pt"
    _save(path, obj)
    assert _load_or_error(path) is None


CONFIG_KEYS = ("modalities", "num_classes", "fusion", "hidden", "encoder_hidden", "dropout", "ablation", "solver",
               "max_iter", "tol", "stop_mode", "solver_options", "backward", "phantom_steps", "jac_weight",
               "class_names", "unrolled_steps", "image_shape", "input_dim", "kind", "name")
SIZES = st.one_of(st.integers(-2, 12), st.sampled_from([2**12, 2**20, 2**31, 2**40, 2**63 - 1]), st.floats(-1, 1e6))


@FUZZ
@given(
    top=st.dictionaries(st.sampled_from(["format", "version", "config", "state_dict", "metrics", "dataset",
                                         "dependency", "training", "normalisation"]),
                        st.one_of(PLAIN, st.just("<drop>")), max_size=2),
    config=st.dictionaries(st.sampled_from(CONFIG_KEYS), st.one_of(SCALARS, SIZES, PLAIN), max_size=3),
    modality=st.dictionaries(st.sampled_from(["name", "input_dim", "kind", "image_shape", "extra"]),
                             st.one_of(SCALARS, SIZES, st.lists(SIZES, max_size=3)), max_size=2),
    weights=st.lists(st.tuples(st.integers(0, 200), st.one_of(TENSORS, st.just("<drop>"), SCALARS)), max_size=3),
)
def test_damaged_payloads_load_or_raise_checkpoint_error(workdir, valid_checkpoint, top, config, modality, weights):
    payload = dict(valid_checkpoint[1])
    cfg = dict(payload["config"])
    mods = [dict(m) for m in cfg["modalities"]]
    mods[0].update(modality)
    cfg["modalities"] = mods
    cfg.update(config)
    payload["config"] = cfg
    state = dict(payload["state_dict"])
    names = sorted(state)
    for index, value in weights:
        name = names[index % len(names)]
        if isinstance(value, str) and value == "<drop>":
            state.pop(name, None)
        else:
            state[name] = value
    payload["state_dict"] = state
    for key, value in top.items():
        if isinstance(value, str) and value == "<drop>":
            payload.pop(key, None)
        else:
            payload[key] = value
    path = workdir / "payload.pt"
    _save(path, payload)
    ck = _load_or_error(path)
    if ck is not None:
        assert not ck.model.training
        for name, tensor in ck.model.state_dict().items():
            if tensor.is_floating_point():
                assert torch.isfinite(tensor).all(), name


def test_the_fuzzed_checkpoint_base_is_valid(valid_checkpoint, workdir):
    path = workdir / "base.pt"
    path.write_bytes(valid_checkpoint[0])
    assert _load_or_error(path) is not None


def test_a_zip_of_other_things_is_a_checkpoint_error(workdir):
    path = workdir / "other.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")  # an empty dict, but no other torch records
        z.writestr("archive/version", b"3\n")
    assert _load_or_error(path) is None


# ---------------------------------------------------------------------------------------------------
# (c) corruptions
# ---------------------------------------------------------------------------------------------------
KINDS = st.sampled_from([*CORRUPTIONS, "snow", "", "Gaussian"])
SEVERITIES = st.one_of(
    st.floats(0, MAX_SEVERITY), st.integers(0, 5), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**400), 10**400), st.sampled_from(["3", "x", None, 2.5 + 0j]),
)
SEEDS = st.one_of(st.integers(-(2**70), 2**70), st.integers(0, 9), st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from(["7", "seed", None]))


@st.composite
def feature_batches(draw):
    batch = draw(st.integers(0, 5))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    d = h * w if draw(st.booleans()) else draw(st.integers(0, 12))
    shape = (d,) if batch == 0 and draw(st.booleans()) else (batch, d)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([1.0, 1e-6, 1e3, 1e6]))
    dtype = draw(st.sampled_from(["f4", "f4", "f8", "i4", "f2"]))
    with np.errstate(over="ignore"):  # float16 * 1e6 is Inf: non-finite input, checked for shape only
        x = (rng.standard_normal(shape) * scale).astype(dtype)
    image_shape = draw(st.one_of(st.just((h, w)), st.none(), st.tuples(st.integers(-1, 6), st.integers(-1, 6))))
    return x, image_shape


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    batch=feature_batches(), modality_kind=st.sampled_from(["vector", "image", "audio"]), kind=KINDS,
    severity=SEVERITIES, seed=SEEDS,
    feature_std=st.one_of(st.none(), st.floats(0, 1e3), st.just(np.float32(math.nan)), st.just([1.0, 2.0])),
    value_range=st.one_of(st.none(), st.tuples(st.floats(-10, 0), st.floats(0, 10))),
)
def test_corrupt_is_finite_and_keeps_the_shape_or_raises_value_error(batch, modality_kind, kind, severity, seed,
                                                                    feature_std, value_range):
    x, image_shape = batch
    before = x.copy()
    kwargs = dict(modality="m", feature_std=feature_std, image_shape=image_shape, value_range=value_range)
    try:
        out = corrupt(x, modality_kind, kind, severity, seed, **kwargs)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert out.shape == x.shape and out.dtype == np.float32
    if np.isfinite(x).all():
        assert np.isfinite(out).all()
    np.testing.assert_array_equal(x, before)  # pure: the input is never modified
    np.testing.assert_array_equal(out, corrupt(x, modality_kind, kind, severity, seed, **kwargs))  # seeded


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(kind=KINDS, severity=SEVERITIES)
def test_parameter_for_is_finite_and_between_the_table_values_or_raises(kind, severity):
    try:
        p = parameter_for(kind, severity)
    except ValueError as exc:
        assert str(exc)
        return
    spec = CORRUPTIONS[kind]
    points = (spec.clean, *spec.levels)
    assert math.isfinite(p) and min(points) <= p <= max(points)
    s = float(severity)
    if s == int(s):
        assert p == pytest.approx(points[int(s)])


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(text=st.one_of(
    st.text(max_size=30),
    st.builds(lambda m, k, s, seed: f"{m}={k}:{s}" + (f"@{seed}" if seed is not None else ""),
              st.text("abcxyz_", min_size=1, max_size=4), KINDS, st.one_of(st.floats(-1, 7), st.sampled_from(
                  ["1e999", "-0", "5.0000001", ".", "1e-400", "3.", "+2"])), st.none() | st.integers(-(2**40), 2**40)),
))
def test_corruption_spec_parse_round_trips_or_raises_value_error(text):
    try:
        modality, spec = Corruption.parse(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert spec.kind in CORRUPTIONS and 0 <= spec.severity <= MAX_SEVERITY
    again_modality, again = Corruption.parse(spec.text(modality))  # text() shows 6 significant digits
    assert (again_modality, again.kind, again.seed) == (modality, spec.kind, spec.seed)
    assert again.severity == pytest.approx(spec.severity, rel=1e-5, abs=1e-12)
    assert math.isfinite(spec.to_dict()["parameter"])


@pytest.mark.parametrize("modality_kind", ["vector", "image", "", "Vector", None])
def test_kinds_for(modality_kind):
    if modality_kind in ("vector", "image"):
        assert set(kinds_for(modality_kind)) <= set(CORRUPTIONS)
    else:
        with pytest.raises(ValueError):
            kinds_for(modality_kind)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(kind=st.sampled_from(["mask", "drop", "impulse"]), seed=st.integers(0, 2**32), low=st.floats(0, MAX_SEVERITY),
       high=st.floats(0, MAX_SEVERITY))
def test_a_higher_severity_never_undoes_a_lower_one_for_masking_kinds(kind, seed, low, high):
    low, high = min(low, high), max(low, high)
    x = np.random.default_rng(seed % 1000).uniform(1, 2, (3, 16)).astype(np.float32)
    a = corrupt(x, "image", kind, low, seed, modality="m", image_shape=(4, 4), value_range=(-1.0, 5.0))
    b = corrupt(x, "image", kind, high, seed, modality="m", image_shape=(4, 4), value_range=(-1.0, 5.0))
    assert np.all((a == x) | (b != x))  # every element changed at the lower severity is changed at the higher



# -- issue 12: config bounds, session files, shared metadata ----------------------------------------------
NUMBERS = st.one_of(st.integers(-2, 20), st.integers(-(2**70), 2**70), st.sampled_from([10**9, 10**400, 2**63]),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e-300, 1e300, 0.5, 1.0]),
                    st.booleans(), st.text(max_size=3), st.none())


@FUZZ
@given(values=st.dictionaries(st.sampled_from(sorted(["num_classes", "hidden", "encoder_hidden", "unrolled_steps",
                                                      "max_iter", "backward_max_iter", "phantom_steps", "jac_vectors",
                                                      "dropout", "tol", "backward_tol", "phantom_tau",
                                                      "jac_weight"])), NUMBERS, min_size=1, max_size=4),
       m=st.one_of(st.just(None), NUMBERS))
def test_config_fields_are_within_their_ranges_or_a_value_error_naming_them(values, m):
    from deqstudio.core.config import INT_FIELDS, REAL_FIELDS, ModelConfig

    data = {"modalities": [{"name": "a", "input_dim": 3}], "num_classes": 3, **values}
    if m is not None:
        data["solver_options"] = {"m": m}
    try:
        config = ModelConfig.from_dict(data)
    except ValueError as exc:
        event("refused")
        assert any(name in str(exc) for name in [*values, "solver_options", "hidden"]), str(exc)
        return
    event("accepted")
    for name, (low, high) in INT_FIELDS.items():
        value = getattr(config, name)
        assert type(value) is int and low <= value <= high, name
    for name, (low, high) in REAL_FIELDS.items():
        value = getattr(config, name)
        assert type(value) is float and math.isfinite(value) and low <= value <= high, name
    if m is not None:
        assert 1 <= config.solver_options["m"] <= 256


JSON_VALUES = st.recursive(
    NUMBERS.filter(lambda v: not isinstance(v, float) or math.isfinite(v)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["format", "version", "solver", "corruptions", "sample", "step",
                                               "checkpoint", "dataset", "split"]), JSON_VALUES, max_size=4),
       solver=st.dictionaries(st.sampled_from(["solver", "max_iter", "tol", "stop_mode", "m", "lam", "tau", "device",
                                               "other"]), JSON_VALUES, max_size=3),
       corruption=st.dictionaries(st.sampled_from(["kind", "severity", "seed", "other"]), JSON_VALUES, max_size=3))
def test_random_session_files_are_a_load_error_or_settings_in_range(workdir, fields, solver, corruption):
    import json

    from deqstudio.errors import LoadError
    from deqstudio.io.session_file import read_session

    data = {"format": "deqstudio-session", "version": 1, "solver": solver, "corruptions": {"m": corruption},
            **fields}
    path = workdir / "session.json"
    path.write_text(json.dumps(data))
    try:
        saved = read_session(path)
    except LoadError as exc:
        event("refused")
        assert str(exc).startswith("session.json: ") and str(exc).isprintable()
        return
    event("accepted")
    assert 1 <= saved.solver.max_iter <= 10_000 and 1e-12 <= saved.solver.tol <= 1e3
    options = saved.solver.option_dict  # the chosen solver's options, each within its range
    assert 1 <= options.get("m", 1) <= 256 and 1e-3 <= options.get("tau", 1.0) <= 1 and 0 <= options.get("lam", 0) <= 1e6
    assert all(0 <= c.severity <= 5 and 0 <= c.seed < 2**32 for c in saved.corruptions.values())


@FUZZ
@given(raw=st.binary(max_size=200))
def test_random_bytes_are_not_a_session(workdir, raw):
    from deqstudio.session.state import LoadError, Session

    path = workdir / "bytes.json"
    path.write_bytes(raw)
    with pytest.raises(LoadError):
        Session().load(path)


@FUZZ
@given(levels=st.integers(1, 40), fan=st.integers(1, 6), leaf=SCALARS)
def test_shared_containers_are_checked_without_walking_every_path(workdir, levels, fan, leaf):
    """A list holding one list ``fan`` times, ``levels`` deep: fan**levels paths, checked in linear time."""
    import time

    from deqstudio.io.checkpoint import _MAX_DEPTH, _MAX_ENTRIES, _plain_problem

    value = [leaf]
    for _ in range(levels):
        value = [value] * fan
    t0 = time.perf_counter()
    problem = _plain_problem({"history": value}, "metrics")
    assert time.perf_counter() - t0 < 1.0
    size = 2  # [leaf]: the list and its value, as written out
    for _ in range(levels):
        size = 1 + fan * size
    nested, written = levels + 2, 1 + size  # the leaf's depth below the metadata dict; entries written out
    assert bool(problem) == (nested > _MAX_DEPTH or written > _MAX_ENTRIES), (levels, fan, problem)
    if problem and nested <= _MAX_DEPTH:
        assert "shared many times over" in problem
