#!/usr/bin/env python
"""Write the corpus of bad inputs in tests/data/bad/ that tests/test_bad_inputs.py feeds to the loaders.

Every file is small (a few KB), rebuilt byte for byte the same on each run, and listed in
tests/data/bad/MANIFEST.json with what is wrong with it, which loader it targets (checkpoint, dataset
or session) and a keyword the error message must contain. Hostile files that cannot live in git
(FIFOs, links to them) are made by the tests at run time. Files that are valid on their own but do not fit a checkpoint (modality
names, feature counts, classes) are listed under "pairs".

The code-payload checkpoints carry a pickle that, if it were ever unpickled unsafely, would create a
marker file: $DEQSTUDIO_PAYLOAD_MARKER, or deqstudio_payload_ran in the system temp folder.

    .venv/bin/python scripts/make_bad_corpus.py [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import h5py  # noqa: E402
import torch  # noqa: E402

from deqstudio.core.config import ModalitySpec, ModelConfig  # noqa: E402
from deqstudio.core.model import FusionModel  # noqa: E402
from deqstudio.io.checkpoint import save_checkpoint  # noqa: E402

OUT = ROOT / "tests" / "data" / "bad"
MARKER_ENV = "DEQSTUDIO_PAYLOAD_MARKER"
MARKER_NAME = "deqstudio_payload_ran"
DEFAULT = "@default"  # a pair member that is the bundled default checkpoint (deqstudio.paths)
FIFO_NAME = "bad-corpus-fifo"  # external targets the tests make a FIFO of (FIFOs cannot live in git)
# text from a file that would colour the terminal and print a fake error line if it reached it raw
ESCAPE_TEXT = "\x1b[31mred\x1b[0m\nerror: all good"
NOT_A_MODEL_FILE = "neither a DEQ Studio checkpoint"  # what inspect says of a session file

# --- the valid bases every bad file is derived from ------------------------------------------------
N = 12  # samples in the small datasets
CLASSES = ("zero", "one", "two")
BASE_MODS = (ModalitySpec("alpha", 6),)  # the checkpoint most bad checkpoints derive from: small
PAIR_MODS = (ModalitySpec("alpha", 6), ModalitySpec("beta", 5))


def _rng(tag: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(tag.encode()))


def _features(tag: str, n: int, d: int) -> np.ndarray:
    # values on a 1/8 grid: compressible and exactly representable
    return (np.round(_rng(tag).standard_normal((n, d)) * 8) / 8).astype(np.float32)


def _labels(n: int = N, classes: int = len(CLASSES)) -> np.ndarray:
    return (np.arange(n) % classes).astype(np.int64)


def _splits(n: int = N) -> dict[str, np.ndarray]:
    idx = np.arange(n, dtype=np.int64)
    a, b = n // 2, (3 * n) // 4
    return {"train": idx[:a], "val": idx[a:b], "test": idx[b:]}


def _dataset_h5(path: Path, modalities: dict, *, labels=None, class_names=CLASSES, splits=None,
                name: str = "bad-corpus", mutate=None, libver: str = "earliest") -> None:
    """A dataset in the README schema, written with h5py directly; ``mutate(f)`` then breaks it.

    modalities: name -> (array, kind, image_shape or None); image arrays are stored (N, H, W).
    """
    labels = _labels() if labels is None else labels
    splits = _splits(len(labels)) if splits is None else splits
    # Strings are fixed-length bytes (read_dataset decodes them): a variable-length string would
    # cost each file a 4 KiB global heap.
    with h5py.File(path, "w", libver=(libver, "latest") if libver != "earliest" else "earliest",
                   track_order=True) as f:
        f.attrs.update({k: np.bytes_(v) for k, v in {
            "format": "deqstudio-dataset", "name": name, "source": "scripts/make_bad_corpus.py", "license": "CC0",
            "description": "part of the bad-input corpus"}.items()})
        f.attrs["version"] = 1
        group = f.create_group("modalities", track_order=True)
        for mod, (data, kind, shape) in modalities.items():
            arr = data.reshape(len(data), *shape) if kind == "image" else data
            dset = group.create_dataset(mod, data=arr, track_times=False)
            dset.attrs["kind"] = np.bytes_(kind)
            if shape is not None:
                dset.attrs["image_shape"] = np.asarray(shape, dtype=np.int64)
        lab = f.create_dataset("labels", data=labels, track_times=False)
        lab.attrs["class_names"] = np.asarray([n.encode() for n in class_names], dtype="S")
        sg = f.create_group("splits", track_order=True)
        for split, idx in splits.items():
            sg.create_dataset(split, data=idx, track_times=False)
        if mutate is not None:
            mutate(f)


def _base_modalities() -> dict:
    return {
        "img": (_features("img", N, 12), "image", (3, 4)),
        "vec": (_features("vec", N, 5), "vector", None),
    }


def _replace(f, name: str, **create) -> h5py.Dataset:
    attrs = dict(f[name].attrs)
    del f[name]
    dset = f.create_dataset(name, track_times=False, **create)
    dset.attrs.update(attrs)
    return dset


def _tiny_model(mods, fusion: str) -> FusionModel:
    torch.manual_seed(0)
    config = ModelConfig(tuple(mods), num_classes=len(CLASSES), fusion=fusion, hidden=4, encoder_hidden=4,
                         class_names=CLASSES)
    model = FusionModel(config).eval()
    means = [torch.linspace(-1, 1, m.input_dim) for m in mods]
    stds = [torch.linspace(0.5, 1.5, m.input_dim) for m in mods]
    model.set_normalisation(means, stds)
    return model


def _valid_checkpoint(path: Path, mods, fusion: str) -> dict:
    model = _tiny_model(mods, fusion)
    save_checkpoint(path, model, metrics={"test_accuracy": 0.5}, dataset={"name": "bad-corpus"},
                    dependency={"logit_magnitude": {m.name: 1.0 for m in mods}},
                    training={"command": "scripts/make_bad_corpus.py"})
    payload = torch.load(path, map_location="cpu", weights_only=True)
    # torch names the archive's root folder after the file, and save_checkpoint writes a randomly named
    # temporary file first: re-save through a buffer ("archive/") so the bytes are reproducible
    buf = io.BytesIO()
    torch.save(payload, buf)
    path.write_bytes(buf.getvalue())
    return payload


def _png() -> bytes:
    """A valid 1x1 grey PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


# --- hostile pickles: each would create the marker file if it were ever unpickled unsafely ---------
_MARKER_EXPR = (f"__import__('os').environ.get({MARKER_ENV!r}, "
                f"__import__('os').path.join(__import__('tempfile').gettempdir(), {MARKER_NAME!r}))")


class _ExecPayload:
    def __reduce__(self):
        import builtins

        return (builtins.exec, (f"open({_MARKER_EXPR}, 'w').write('payload ran')",))


class _SystemPayload:
    def __reduce__(self):
        import os

        return (os.system, (f'touch "${{{MARKER_ENV}:-{Path(tempfile.gettempdir()) / MARKER_NAME}}}"',))


# --- the corpus ------------------------------------------------------------------------------------
class Corpus:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.files: dict[str, dict] = {}
        self.pairs: list[dict] = []

    def add(self, name: str, target: str, problem: str, keyword: str, **extra) -> Path:
        assert name not in self.files, name
        self.files[name] = {"target": target, "problem": problem, "keyword": keyword, **extra}
        return self.out / name

    def write_bytes(self, name, target, problem, keyword, data: bytes, **extra) -> None:
        self.add(name, target, problem, keyword, **extra).write_bytes(data)

    def torch_save(self, name, target, problem, keyword, obj, **extra) -> None:
        buf = io.BytesIO()
        torch.save(obj, buf, **extra.pop("save_options", {}))
        self.write_bytes(name, target, problem, keyword, buf.getvalue(), **extra)


def build(out: Path) -> Corpus:
    out.mkdir(parents=True, exist_ok=True)
    c = Corpus(out)
    work = Path(tempfile.mkdtemp(prefix="deq-bad-"))

    # ---------------- checkpoints ----------------
    payload = _valid_checkpoint(work / "valid.pt", BASE_MODS, "sum")
    valid_bytes = (work / "valid.pt").read_bytes()
    sd = payload["state_dict"]
    ck = "checkpoint"

    c.write_bytes("ck_empty.pt", ck, "zero-byte file", "empty", b"")
    c.write_bytes("ck_truncated.pt", ck, "a valid checkpoint cut to its first half", "truncated or corrupt",
                  valid_bytes[: len(valid_bytes) // 2])
    c.write_bytes("ck_truncated_tail.pt", ck, "a valid checkpoint missing its last 64 bytes (zip directory gone)",
                  "truncated or corrupt", valid_bytes[:-64])
    c.write_bytes("ck_png.pt", ck, "a PNG image renamed .pt (wrong magic)", "not a torch zip archive", _png())
    c.write_bytes("ck_text.pt", ck, "a text file renamed .pt (wrong magic)", "not a torch zip archive",
                  b"this is not a checkpoint\n" * 4)
    c.write_bytes("ck_zip_magic_junk.pt", ck, "zip magic followed by garbage", "truncated or corrupt",
                  b"PK\x03\x04" + bytes(range(256)) * 4)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        info = zipfile.ZipInfo("notes/readme.txt", date_time=(2020, 1, 1, 0, 0, 0))
        z.writestr(info, "a zip archive that torch did not write\n")
    c.write_bytes("ck_zip_not_torch.pt", ck, "a valid zip archive without torch's data.pkl", "truncated or corrupt",
                  zbuf.getvalue())
    c.torch_save("ck_payload_exec.pt", ck, "pickle with a __reduce__ code payload (builtins.exec) next to real keys",
                 "refused", {**payload, "metrics": {"x": _ExecPayload()}}, payload=True)
    c.torch_save("ck_payload_system.pt", ck, "the whole pickle is a __reduce__ payload calling os.system",
                 "refused", _SystemPayload(), payload=True)
    c.torch_save("ck_payload_legacy.pt", ck, "legacy (non-zip) torch pickle with a code payload",
                 "not a torch zip archive", {"format": "deqstudio-checkpoint", "x": _ExecPayload()}, payload=True,
                 save_options={"_use_new_zipfile_serialization": False})
    c.torch_save("ck_list.pt", ck, "a torch file holding a list, not a dict", "holds a list", [1, 2, 3])
    c.torch_save("ck_bare_tensor.pt", ck, "a torch file holding one tensor", "holds a Tensor", torch.zeros(3))
    c.torch_save("ck_wrong_format.pt", ck, "format tag of another program", "format is 'someone-elses-model'",
                 {**payload, "format": "someone-elses-model"})
    c.torch_save("ck_no_format.pt", ck, "a plain state dict without any of our keys", "format is None", dict(sd))
    c.torch_save("ck_future_version.pt", ck, "format version from the future", "version 99 is not supported",
                 {**payload, "version": 99})
    c.torch_save("ck_version_tensor.pt", ck, "the version is a tensor, not an integer", "checkpoint version tensor",
                 {**payload, "version": torch.ones(2)})
    c.torch_save("ck_config_tensor.pt", ck, "config field hidden is a tensor", "config.hidden is a Tensor",
                 {**payload, "config": {**payload["config"], "hidden": torch.ones(3)}})
    c.torch_save("ck_missing_config.pt", ck, "no 'config' key", "missing 'config'",
                 {k: v for k, v in payload.items() if k != "config"})
    c.torch_save("ck_missing_state_dict.pt", ck, "no 'state_dict' key", "missing 'state_dict'",
                 {k: v for k, v in payload.items() if k != "state_dict"})
    c.torch_save("ck_state_dict_not_tensors.pt", ck, "'state_dict' maps names to lists, not tensors",
                 "must map names to tensors", {**payload, "state_dict": {k: v.tolist() for k, v in sd.items()}})
    c.torch_save("ck_bad_config.pt", ck, "config names a fusion that does not exist", "unknown fusion",
                 {**payload, "config": {**payload["config"], "fusion": "attention"}})
    c.torch_save("ck_config_unknown_key.pt", ck, "config has a key this version does not know", "unknown model config key",
                 {**payload, "config": {**payload["config"], "quantum": True}})
    c.torch_save("ck_config_bad_type.pt", ck, "config field tol is a string, not a number", "tol",
                 {**payload, "config": {**payload["config"], "tol": "tiny"}})
    c.torch_save("ck_config_inf_image_shape.pt", ck, "config declares an image modality of shape (inf, 1)",
                 "image_shape must be two positive integers",
                 {**payload, "config": {**payload["config"], "modalities": [
                     {"name": "alpha", "input_dim": 6, "kind": "image", "image_shape": [float("inf"), 1]}]}})
    c.torch_save("ck_huge_config.pt", ck,
                 "config declares a model of ~2^30 parameters (every field within its range: input_dim 2^16, "
                 "encoder_hidden 2^14, hidden 2^12) with the tiny weights: must be refused without allocating it",
                 "parameters, more than any checkpoint file holds",
                 {**payload, "config": {**payload["config"], "hidden": 2**12, "encoder_hidden": 2**14, "modalities": [
                     {"name": "alpha", "input_dim": 2**16, "kind": "vector", "image_shape": None}]}})
    wide = {**payload["config"], "hidden": 2**12, "encoder_hidden": 2**12}
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in FusionModel(ModelConfig.from_dict(wide)).state_dict().items()}
    c.torch_save("ck_broadcast_weights.pt", ck,
                 "config declares hidden 4096 (~17M parameters) and every weight is a stride-0 view of one "
                 "stored value: 5 KB on disk, 68 MB once loaded", "a broadcast view",
                 {**payload, "config": wide,
                  "state_dict": {k: torch.zeros(1, dtype=sd[k].dtype).expand(*s) if s else sd[k].clone()
                                 for k, s in shapes.items()}})
    bad = dict(sd)
    bad["head.weight"] = torch.zeros(7, 7)
    c.torch_save("ck_shape_mismatch.pt", ck, "head.weight is 7x7, the config needs 3x4",
                 "'head.weight' has shape (7, 7)", {**payload, "state_dict": bad})
    bad = dict(sd)
    bad["head.weight"] = torch.zeros(1).expand(10**6, 10**6)
    c.torch_save("ck_huge_tensor.pt", ck, "head.weight declares shape 10^6 x 10^6 (a stride-0 view of one float)",
                 "has shape (1000000, 1000000)", {**payload, "state_dict": bad})
    c.torch_save("ck_missing_weight.pt", ck, "head.bias missing from the state dict", "weights missing for its config",
                 {**payload, "state_dict": {k: v for k, v in sd.items() if k != "head.bias"}})
    c.torch_save("ck_extra_weight.pt", ck, "a weight its config does not have", "weights its config does not have",
                 {**payload, "state_dict": {**sd, "encoder.extra": torch.zeros(2)}})
    bad = dict(sd)
    bad["head.bias"] = torch.tensor([0.0, float("nan"), float("inf")])
    c.torch_save("ck_nan_weights.pt", ck, "head.bias holds NaN and Inf", "NaN or Inf", {**payload, "state_dict": bad})
    c.torch_save("ck_metrics_not_dict.pt", ck, "'metrics' is a list", "'metrics' must be a dict",
                 {**payload, "metrics": [0.5]})
    c.torch_save("ck_dependency_strings.pt", ck, "dependency logit_magnitude holds strings, not numbers",
                 "logit_magnitude", {**payload, "dependency": {"logit_magnitude": {"alpha": "high", "beta": "low"}}})
    c.torch_save("ck_metrics_tensor.pt", ck, "'metrics' holds a tensor where plain numbers belong", "plain data",
                 {**payload, "metrics": {"test_accuracy": torch.tensor(0.5)}})

    # -- checkpoint contents that explode when walked, overflow, or slip past a float-only check --
    shared: list = [0.5]
    for _ in range(16):  # the same list four times over, 16 levels: 4^16 leaves, a few hundred bytes pickled
        shared = [shared, shared, shared, shared]
    c.torch_save("ck_shared_nested.pt", ck, "'metrics' holds one list shared four times at each of 16 levels: "
                 "4^16 values when walked or written out naively", "shared many times over",
                 {**payload, "metrics": {"history": shared}})
    loop: list = []
    loop.append(loop)
    c.torch_save("ck_self_reference.pt", ck, "'training' holds a list that contains itself", "contains itself",
                 {**payload, "training": {"history": loop}})
    c.torch_save("ck_huge_int.pt", ck, "a metric is the integer 10^400 (too large for a float), under a key with a "
                 "terminal escape sequence and a newline", "integer too large for a float",
                 {**payload, "metrics": {ESCAPE_TEXT: 10**400}})
    bad = dict(sd)
    bad["head.bias"] = torch.tensor([complex(float("nan"), 0.0), 1j, 0.0], dtype=torch.complex64)
    c.torch_save("ck_complex_weights.pt", ck, "head.bias is a complex tensor holding NaN (a float-only finiteness "
                 "check lets it through)", "has dtype complex64, its config needs float32",
                 {**payload, "state_dict": bad})
    for field, value, keyword in (
            ("max_iter", 10**9, "max_iter must be an integer in 1..10,000"),
            ("tol", 1e-300, "tol must be a number in [1e-12, 1000]"),
            ("unrolled_steps", 10**9, "unrolled_steps must be an integer in 1..1,000"),
            ("hidden", 2**20, "hidden must be an integer in 4..16,384"),
            ("jac_vectors", 10**8, "jac_vectors must be an integer in 1..1,000"),
            ("backward_max_iter", 10**9, "backward_max_iter must be an integer in 1..10,000"),
            ("num_classes", 10**9, "num_classes must be an integer in 2..100,000"),
    ):
        c.torch_save(f"ck_config_{field}.pt", ck, f"config {field} is {value!r}: absurd, it would only fail later "
                     "as a hang or an allocation error", keyword,
                     {**payload, "config": {**payload["config"], field: value}})
    c.torch_save("ck_config_anderson_m.pt", ck, "config asks for Anderson with a history of 10^8 (m)",
                 "solver_options.m must be an integer in 1..256",
                 {**payload, "config": {**payload["config"], "solver": "anderson", "solver_options": {"m": 10**8}}})
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        info = zipfile.ZipInfo("archive/data.pkl", date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, bytes(4 * 1024**2))
    c.write_bytes("ck_zip_bomb.pt", ck, "a zip whose data.pkl inflates from ~4 KB to 4 MB of zeros",
                  "decompression bomb", zbuf.getvalue())
    escaped = {**payload, "metrics": {**payload["metrics"], ESCAPE_TEXT: 0.5},
               "training": {"command": ESCAPE_TEXT, "note": "\u202eevil"},
               "dataset": {"name": ESCAPE_TEXT, "sha256": "\x1b[2J"}}
    c.torch_save("ck_escape_metadata.pt", ck, "valid, but its metadata strings carry terminal escape sequences, "
                 "newlines and a bidirectional override: inspect must print them escaped", "",
                 escaped, valid_alone=True, hostile_text=True)

    # ---------------- datasets ----------------
    ds = "dataset"
    mods = _base_modalities()
    _dataset_h5(work / "valid.h5", mods)
    valid_h5 = (work / "valid.h5").read_bytes()

    c.write_bytes("ds_empty.h5", ds, "zero-byte file", "empty", b"")
    c.write_bytes("ds_truncated.h5", ds, "a valid dataset cut to its first half", "truncated",
                  valid_h5[: len(valid_h5) // 2])
    # inspect goes by the first bytes (neither zip nor HDF5); read_dataset asks h5py
    c.write_bytes("ds_png.h5", ds, "a PNG image renamed .h5 (wrong magic)", "nor a dataset (HDF5)", _png(),
                  loader_keyword="not an HDF5 file")
    c.write_bytes("ds_text.h5", ds, "a CSV text file renamed .h5 (wrong magic)", "nor a dataset (HDF5)",
                  b"x1,x2,label\n0.1,0.2,0\n0.3,0.4,1\n", loader_keyword="not an HDF5 file")
    c.write_bytes("ds_magic_only.h5", ds, "the HDF5 signature followed by zeros", "not an HDF5 file",
                  b"\x89HDF\r\n\x1a\n" + bytes(1024))

    def h5(name, problem, keyword, modalities=None, fifo_target=None, **kw):
        extra = {"fifo_target": fifo_target} if fifo_target else {}
        _dataset_h5(c.add(name, ds, problem, keyword, **extra), _base_modalities() if modalities is None else modalities,
                    **kw)

    h5("ds_wrong_format.h5", "root attribute format names another program", "not a DEQ Studio dataset",
       mutate=lambda f: f.attrs.__setitem__("format", np.bytes_("someone-elses-data")))
    h5("ds_future_version.h5", "dataset format version from the future", "version 99",
       mutate=lambda f: f.attrs.__setitem__("version", 99))
    h5("ds_missing_modalities.h5", "no /modalities group", "missing group /modalities",
       mutate=lambda f: f.__delitem__("modalities"))
    h5("ds_empty_modalities.h5", "/modalities has no members", "/modalities is empty",
       mutate=lambda f: [f["modalities"].__delitem__(k) for k in list(f["modalities"])])
    h5("ds_missing_labels.h5", "no /labels", "missing labels", mutate=lambda f: f.__delitem__("labels"))
    h5("ds_missing_splits.h5", "no /splits group", "missing group /splits", mutate=lambda f: f.__delitem__("splits"))
    h5("ds_missing_test_split.h5", "/splits has train and val only", "missing split /splits/test",
       mutate=lambda f: f["splits"].__delitem__("test"))
    h5("ds_no_class_names.h5", "/labels has no class_names attribute", "no class_names",
       mutate=lambda f: f["labels"].attrs.__delitem__("class_names"))
    h5("ds_one_class.h5", "class_names lists a single class", "at least 2 classes",
       labels=np.zeros(N, np.int64), class_names=("only",))
    h5("ds_modality_group.h5", "/modalities/vec is a group, not an array", "must be an array, not a group",
       mutate=lambda f: (f["modalities"].__delitem__("vec"), f["modalities"].create_group("vec")))
    h5("ds_ragged.h5", "modality vec has 10 rows, /labels has 12", "has 10 rows but /labels has 12",
       modalities={**mods, "vec": (_features("vec", 10, 5), "vector", None)})
    h5("ds_ragged_labels.h5", "/labels has 9 entries, the modalities 12 rows", "rows but /labels has 9",
       labels=_labels(9), splits=_splits(9))
    h5("ds_1d_modality.h5", "modality vec is one-dimensional", "must have shape (N, ...)",
       mutate=lambda f: _replace(f, "modalities/vec", data=np.zeros(N, np.float32)))
    h5("ds_zero_features.h5", "modality vec has shape (12, 0)", "has no features",
       mutate=lambda f: _replace(f, "modalities/vec", shape=(N, 0), dtype="f4"))
    h5("ds_no_samples.h5", "every array has zero rows", "no samples",
       modalities={"vec": (np.zeros((0, 5), np.float32), "vector", None)}, labels=np.zeros(0, np.int64),
       splits={s: np.zeros(0, np.int64) for s in ("train", "val", "test")})
    nan = _features("vec", N, 5)
    nan[3, 2] = np.nan
    h5("ds_nan.h5", "a NaN in modality vec", "non-finite values", modalities={**mods, "vec": (nan, "vector", None)})
    inf = _features("vec", N, 5)
    inf[[1, 4], 0] = [np.inf, -np.inf]
    h5("ds_inf.h5", "+Inf and -Inf in modality vec", "non-finite values",
       modalities={**mods, "vec": (inf, "vector", None)})
    big = _features("vec", N, 5).astype(np.float64)
    big[0, 0] = 1e300
    h5("ds_float32_overflow.h5", "a float64 value (1e300) too large for float32", "beyond the float32 range",
       modalities={**mods, "vec": (big, "vector", None)})
    h5("ds_string_features.h5", "modality vec holds strings", "must be floating point",
       mutate=lambda f: _replace(f, "modalities/vec", data=np.array([["1.0"] * 5] * N, dtype="S3")))
    h5("ds_int_features.h5", "modality vec holds int32 values", "must be floating point",
       mutate=lambda f: _replace(f, "modalities/vec", data=np.ones((N, 5), np.int32)))
    h5("ds_complex_features.h5", "modality vec holds complex numbers", "must be floating point",
       mutate=lambda f: _replace(f, "modalities/vec", data=np.ones((N, 5), np.complex64)))
    h5("ds_float_labels.h5", "/labels holds floats", "must hold integer class labels",
       labels=_labels().astype(np.float64))
    h5("ds_string_labels.h5", "/labels holds strings", "must hold integer class labels",
       labels=np.array([CLASSES[i] for i in _labels()], dtype="S"))
    h5("ds_labels_2d.h5", "/labels has shape (12, 1)", "must be one-dimensional", labels=_labels().reshape(N, 1))
    h5("ds_label_out_of_range.h5", "a label of 7 with 3 class names", "labels must lie in 0..2",
       labels=np.where(np.arange(N) == 5, 7, _labels()).astype(np.int64))
    h5("ds_negative_label.h5", "a label of -1", "labels must lie in 0..2",
       labels=np.where(np.arange(N) == 0, -1, _labels()).astype(np.int64))
    h5("ds_empty_split.h5", "/splits/val has no indices", "split 'val' is empty",
       splits={**_splits(), "val": np.zeros(0, np.int64)})
    h5("ds_split_out_of_range.h5", "/splits/test holds index 12 of 12 samples", "indices outside 0..11",
       splits={**_splits(), "test": np.array([9, 10, 12], np.int64)})
    h5("ds_split_negative.h5", "/splits/train holds index -3", "indices outside 0..11",
       splits={**_splits(), "train": np.array([-3, 0, 1], np.int64)})
    h5("ds_float_split.h5", "/splits/train holds floats", "must hold integer sample indices",
       splits={**_splits(), "train": np.arange(6, dtype=np.float64)})
    h5("ds_bad_kind.h5", "modality vec has kind 'audio'", "has kind 'audio'",
       mutate=lambda f: f["modalities/vec"].attrs.__setitem__("kind", np.bytes_("audio")))
    h5("ds_image_no_shape.h5", "image modality stored flat with no image_shape", "needs image_shape",
       mutate=lambda f: (_replace(f, "modalities/img", data=_features("img", N, 12)),
                         f["modalities/img"].attrs.__delitem__("image_shape")))
    h5("ds_huge_image_shape.h5", "image_shape attribute claims 1000000 x 1000000 pixels for 12 features",
       "needs image_shape", mutate=lambda f: f["modalities/img"].attrs.__setitem__(
           "image_shape", np.array([10**6, 10**6], np.int64)))
    h5("ds_inf_image_shape.h5", "image_shape attribute is (inf, 1)", "unreadable image_shape",
       mutate=lambda f: f["modalities/img"].attrs.__setitem__("image_shape", np.array([np.inf, 1.0])))
    h5("ds_text_image_shape.h5", "image_shape attribute is text", "unreadable image_shape",
       mutate=lambda f: f["modalities/img"].attrs.__setitem__("image_shape", np.bytes_("three by four")))
    h5("ds_huge_modality.h5", "modality vec declares shape (12, 10^10) (chunked, nothing written: the file is tiny)",
       "too large to load", mutate=lambda f: _replace(f, "modalities/vec", shape=(N, 10**10), dtype="f4",
                                                       chunks=(1, 4096)))
    h5("ds_huge_labels.h5", "/labels declares 2^40 entries (chunked, nothing written)", "too large",
       mutate=lambda f: _replace(f, "labels", shape=(2**40,), dtype="i8", chunks=(4096,)))
    h5("ds_huge_split.h5", "/splits/train declares 2^40 indices (chunked, nothing written)", "too large",
       mutate=lambda f: _replace(f, "splits/train", shape=(2**40,), dtype="i8", chunks=(4096,)))

    def corrupt_chunk(f):
        dset = _replace(f, "modalities/vec", data=_features("vec", N, 5), chunks=(N, 5), compression="gzip")
        f.flush()
        info = dset.id.get_chunk_info(0)  # the bytes are patched once the file is closed
        corrupt_chunk.at = (info.byte_offset, info.size)

    path = c.add("ds_corrupt_chunk.h5", ds, "the gzip chunk of modality vec is overwritten with garbage",
                 "unreadable HDF5 content")
    _dataset_h5(path, _base_modalities(), mutate=corrupt_chunk)
    offset, size = corrupt_chunk.at
    raw = bytearray(path.read_bytes())
    raw[offset : offset + size] = bytes((i * 37 + 11) % 256 for i in range(size))
    path.write_bytes(bytes(raw))

    # -- HDF5 features that pull data from elsewhere: a dataset file is self-contained --
    h5("ds_external_link.h5", "/modalities/vec is an external link to a file named bad-corpus-fifo (the test puts "
       "a FIFO there: following the link would block forever)", "external link",
       mutate=lambda f: (f["modalities"].__delitem__("vec"),
                         f["modalities"].__setitem__("vec", h5py.ExternalLink(FIFO_NAME, "/data"))),
       fifo_target=FIFO_NAME)
    h5("ds_external_root_link.h5", "/splits is an external link to another file", "external link",
       mutate=lambda f: (f.__delitem__("splits"), f.__setitem__("splits", h5py.ExternalLink("other.h5", "/splits"))))
    h5("ds_external_storage.h5", "/modalities/vec keeps its raw bytes in /etc/passwd (external storage): reading "
       "it would show a system file as features", "external storage",
       mutate=lambda f: _replace(f, "modalities/vec", shape=(N, 5), dtype="<f4",
                                 external=[("/etc/passwd", 0, N * 5 * 4)]))
    h5("ds_external_labels.h5", "/labels keeps its raw bytes in /dev/zero (external storage)", "external storage",
       mutate=lambda f: _replace(f, "labels", shape=(N,), dtype="<i8", external=[("/dev/zero", 0, N * 8)]))

    def virtual(source_file, source_name):
        def mutate(f):
            attrs = dict(f["modalities/vec"].attrs)
            del f["modalities/vec"]
            layout = h5py.VirtualLayout(shape=(N, 5), dtype="<f4")
            layout[:] = h5py.VirtualSource(source_file, source_name, shape=(N, 5))
            # as layout.make_dataset does, with the object's time stamps off (reproducible bytes)
            dcpl = layout._get_dcpl(f.filename)
            dcpl.set_fill_value(np.zeros(1, "<f4"))
            dcpl.set_obj_track_times(False)
            h5py.h5d.create(f["modalities"].id, b"vec", h5py.h5t.py_create(np.dtype("<f4"), logical=1),
                            h5py.h5s.create_simple((N, 5)), dcpl=dcpl)
            f["modalities/vec"].attrs.update(attrs)
        return mutate

    h5("ds_virtual_missing.h5", "/modalities/vec is a virtual dataset whose source file is missing (HDF5 would "
       "silently read zeros)", "virtual dataset", mutate=virtual("missing-source.h5", "data"))
    h5("ds_virtual_self.h5", "/modalities/vec is a virtual dataset mapped onto itself (reading it crashes "
       "libhdf5 with a segmentation fault)", "virtual dataset", mutate=virtual(".", "/modalities/vec"))
    h5("ds_soft_link.h5", "/labels is a soft link to /splits/train", "soft link",
       mutate=lambda f: (f.__delitem__("labels"), f.__setitem__("labels", h5py.SoftLink("/splits/train"))))

    # -- decompression and fill-value bombs: declared sizes far beyond the file's --
    h5("ds_gzip_bomb.h5", "/modalities/vec declares (12, 200000) float32 (9.6 MB) of gzip-compressed zeros in a "
       "~15 KB file: 600 times its size", "refused before reading",
       mutate=lambda f: _replace(f, "modalities/vec", data=np.zeros((N, 200_000), np.float32), chunks=(1, 200_000),
                                 compression="gzip", compression_opts=9))
    h5("ds_fill_value_bomb.h5", "/modalities/vec declares (12, 10^7) float32 (480 MB), never written: reading "
       "it would allocate its fill value", "refused before reading",
       mutate=lambda f: _replace(f, "modalities/vec", shape=(N, 10**7), dtype="f4", chunks=(1, 4096),
                                 fillvalue=1.0))
    h5("ds_split_widen_bomb.h5", "/splits/train declares 1.5e8 int8 indices (never written): small as stored, "
       "1.2 GB once widened to int64", "refused before reading",
       mutate=lambda f: _replace(f, "splits/train", shape=(150_000_000,), dtype="i1", chunks=(65536,)))

    # -- names and text from the file --
    def non_utf8(f):
        group = f["modalities"]
        group[b"\xff\xfevec"] = group["vec"]  # a second (hard) link to the same array, then the first goes
        del group["vec"]

    h5("ds_non_utf8_name.h5", "a modality's link name is the bytes ff fe 76 65 63 (not UTF-8)", "not valid UTF-8",
       mutate=non_utf8)
    h5("ds_escape_name.h5", "a one-dimensional modality named with a terminal escape sequence and a newline that "
       "starts a fake error line", "must have shape (N, ...)",
       modalities={"img": _base_modalities()["img"], ESCAPE_TEXT: (_features("vec", N, 5), "vector", None)},
       mutate=lambda f: _replace(f, f"modalities/{ESCAPE_TEXT}", data=np.zeros(N, np.float32)))
    _dataset_h5(c.add("ds_escape_metadata.h5", ds, "valid, but its name, description, source, licence and class "
                      "names carry terminal escape sequences and newlines: inspect must print them escaped", "",
                      valid_alone=True, hostile_text=True),
                _base_modalities(), class_names=(ESCAPE_TEXT, "one\x07", "\u202etwo"), name=ESCAPE_TEXT,
                mutate=lambda f: f.attrs.update({"description": np.bytes_(ESCAPE_TEXT.encode()),
                                                 "source": np.bytes_(b"\xff\xfe not utf-8"),
                                                 "license": np.bytes_(b"\x1b]0;title\x07")}))

    # ---------------- sessions ----------------
    se = "session"

    def session(name, problem, keyword, **fields):
        data = {"format": "deqstudio-session", "version": 1, **fields}
        text = fields.pop("_raw", None) or json.dumps(data, indent=1)
        c.write_bytes(name, se, problem, keyword, text.encode("utf-8"), inspect_keyword=NOT_A_MODEL_FILE)

    deep = "[" * 3000 + "]" * 3000
    session("session_deep.json", "'solver' is a list nested 3000 levels deep", "nested too deeply",
            _raw='{"format": "deqstudio-session", "version": 1, "solver": ' + deep + "}")
    session("session_infinity.json", "'sample' is Infinity (JSON extension Python accepts)", "Infinity",
            _raw='{"format": "deqstudio-session", "version": 1, "sample": Infinity}')
    session("session_nan_tol.json", "the solver tolerance is NaN", "NaN",
            _raw='{"format": "deqstudio-session", "version": 1, "solver": {"tol": NaN}}')
    session("session_huge_number.json", "'step' is 1e999 (parses as infinity)", "beyond the range of a float",
            _raw='{"format": "deqstudio-session", "version": 1, "step": 1e999}')
    session("session_wrong_types.json", "'solver' is a string, not an object", "'solver' must be an object",
            solver="anderson")
    session("session_string_sample.json", "'sample' is the string \"12\"", "sample must be an integer", sample="12")
    session("session_corruptions_list.json", "'corruptions' is a list", "'corruptions' must be an object",
            corruptions=[1, 2])
    session("session_bool_version.json", "'version' is true (equal to 1 in Python)", "session version True",
            _raw='{"format": "deqstudio-session", "version": true}')
    session("session_max_iter.json", "the solver's max_iter is 10^9 (a solve that never ends)",
            "max_iter must be an integer in 1..10,000", solver={"max_iter": 10**9})
    session("session_anderson_m.json", "the solver's Anderson history m is 10^8", "m must be an integer in 1..256",
            solver={"m": 10**8})
    session("session_big_seed.json", "a corruption seed of 2^70", "seed must be an integer",
            corruptions={"pix": {"kind": "gaussian", "severity": 2, "seed": 2**70}})
    session("session_device_path.json", "its checkpoint is /dev/zero (a device)", "is a device",
            checkpoint="/dev/zero")
    session("session_folder_path.json", "its dataset is '.', the folder the session lies in", "is a folder",
            dataset=".")
    session("session_escape_path.json", "its checkpoint path carries a terminal escape sequence and a newline "
            "starting a fake error line", "no such file", checkpoint=ESCAPE_TEXT + ".pt")

    # ---------------- pairs: each file valid alone, but they do not fit together ----------------
    _valid_checkpoint(c.add("pair_model.pt", ck, "valid alone: deq-udml on alpha (6) + beta (5), 3 classes", "",
                            valid_alone=True), PAIR_MODS, "deq-udml")
    _dataset_h5(c.add("pair_data_names.h5", ds, "valid alone: modalities alpha + gamma; pair_model.pt needs beta",
                      "", valid_alone=True),
                {"alpha": (_features("alpha", N, 6), "vector", None), "gamma": (_features("gamma", N, 5), "vector", None)})
    c.pairs.append({"checkpoint": "pair_model.pt", "dataset": "pair_data_names.h5",
                    "problem": "the dataset lacks modality beta", "keyword": "modality 'beta' is missing"})
    _dataset_h5(c.add("pair_data_dims.h5", ds, "valid alone: beta has 7 features; pair_model.pt expects 5", "",
                      valid_alone=True),
                {"alpha": (_features("alpha", N, 6), "vector", None), "beta": (_features("beta", N, 7), "vector", None)})
    c.pairs.append({"checkpoint": "pair_model.pt", "dataset": "pair_data_dims.h5",
                    "problem": "modality beta has 7 features, the model expects 5",
                    "keyword": "modality 'beta' has 7 features, the model expects 5"})
    _dataset_h5(c.add("pair_data_classes.h5", ds, "valid alone: 2 classes; pair_model.pt has 3", "",
                      valid_alone=True),
                {"alpha": (_features("alpha", N, 6), "vector", None), "beta": (_features("beta", N, 5), "vector", None)},
                labels=_labels(N, 2), class_names=("no", "yes"))
    c.pairs.append({"checkpoint": "pair_model.pt", "dataset": "pair_data_classes.h5",
                    "problem": "the dataset has 2 classes, the model 3", "keyword": "2 classes, the model 3"})
    # the bundled default checkpoint (UCI pix + fou + zer) against a dataset whose names differ
    n10 = 10  # one sample per class
    _dataset_h5(c.add("uci_renamed_modalities.h5", ds,
                      "valid alone: UCI-shaped pix (16x15 image) + fou (76) + zernike (47); the bundled default "
                      "checkpoint needs zer", "", valid_alone=True),
                {"pix": (np.round(_rng("pix").random((n10, 240)) * 6).astype(np.float32), "image", (16, 15)),
                 "fou": (_features("fou", n10, 76), "vector", None),
                 "zernike": (_features("zer", n10, 47), "vector", None)},
                labels=_labels(n10, 10), class_names=tuple(str(d) for d in range(10)), splits=_splits(n10))
    c.pairs.append({"checkpoint": DEFAULT, "dataset": "uci_renamed_modalities.h5",
                    "problem": "the default checkpoint needs modality zer; the dataset calls it zernike",
                    "keyword": "modality 'zer' is missing"})

    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    return c


def write_manifest(c: Corpus) -> None:
    manifest = {
        "about": "Bad inputs for tests/test_bad_inputs.py, written by scripts/make_bad_corpus.py (do not edit by "
                 "hand). files: name -> what is wrong, the loader it targets (checkpoint: load_checkpoint, dataset: "
                 "read_dataset, session: Session.load) and a keyword `deqstudio inspect` and the loader must name "
                 "(inspect_keyword / loader_keyword where the two differ). valid_alone files load on their own and "
                 "fail only in the listed pairs (Session.open raises LoadError naming the keyword); hostile_text "
                 "files are valid but carry terminal escape sequences that inspect must print escaped; fifo_target "
                 "names an external target the tests make a FIFO of (FIFOs cannot live in git); "
                 f"checkpoint {DEFAULT!r} is deqstudio.paths.default_checkpoint().",
        "payload_marker": {"env": MARKER_ENV, "default": f"<tempfile.gettempdir()>/{MARKER_NAME}"},
        "files": {name: c.files[name] for name in sorted(c.files)},
        "pairs": c.pairs,
    }
    (c.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="rebuild in a temp folder and compare with --out")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = build(Path(tmp))
            write_manifest(fresh)
            names = sorted([*fresh.files, "MANIFEST.json"])
            have = sorted(p.name for p in args.out.iterdir()) if args.out.is_dir() else []
            differ = [n for n in names if not (args.out / n).is_file()
                      or (args.out / n).read_bytes() != (Path(tmp) / n).read_bytes()]
            stale = sorted(set(have) - set(names))
            if differ or stale:
                print(f"corpus out of date: differs {differ}, not generated {stale}", file=sys.stderr)
                return 1
            print(f"{args.out}: {len(names)} files up to date")
            return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.iterdir():  # idempotent: the folder holds exactly what this run writes
        if old.is_file():
            old.unlink()
    corpus = build(args.out)
    write_manifest(corpus)
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {len(corpus.files)} files + MANIFEST.json to {args.out} ({total / 1024:.1f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
