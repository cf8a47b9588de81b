"""Big datasets read on demand: a 200,000-sample file opens without reading its features, browses with bounded
memory, reads exactly what an eager read gives, refuses a non-finite value deep inside it clearly, and caches its
statistics beside the file (reused on the next open, recomputed when the file changes)."""

import hashlib
import os
import tracemalloc

import h5py
import numpy as np
import pytest

from deqstudio.cli import main
from deqstudio.core.corruptions import corrupt
from deqstudio.diagnostics.evaluation import SplitRows
from deqstudio.errors import DatasetError
from deqstudio.io import dataset_reader, dataset_stats, guard
from deqstudio.io.dataset import chunk_rows, read_dataset, write_dataset
from deqstudio.io.lazy_rows import LazyRows
from deqstudio.workflows.scale_data import make_scale_dataset

N = 200_000
DIMS = {"a": 8, "b": 4}
DEEP = 187_654  # a sample far inside the file, in the training split or not


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    return make_scale_dataset(tmp_path_factory.mktemp("big") / "big.h5", samples=N, dims=DIMS)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEQSTUDIO_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def copy_of(big_file, tmp_path):
    def make(name="copy.h5"):
        target = tmp_path / name
        target.write_bytes(big_file.read_bytes())
        return target
    return make


def _feature_arrays(obj, n, seen=None, depth=0):
    """Every float ndarray of ``n`` or more rows reachable from ``obj``'s attributes (not through h5py objects)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return [obj] if obj.dtype.kind == "f" and obj.ndim >= 1 and obj.shape[0] >= n else []
    if isinstance(obj, dict):
        values = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        values = list(obj)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("deqstudio"):
        values = list(vars(obj).values())
    else:
        return []
    return [a for v in values for a in _feature_arrays(v, n, seen, depth + 1)]


def test_a_big_file_opens_lazily_reading_no_feature(copy_of, monkeypatch):
    monkeypatch.setattr(dataset_reader, "EAGER_BYTES", 1024**2)  # 200,000 x 12 float32 = 9.6 MB: "big" here
    hashed = []
    monkeypatch.setattr(guard, "file_sha256", lambda path: hashed.append(path) or "x" * 64)
    ds = read_dataset(copy_of())  # decided by size: the lazy path
    assert ds.lazy and all(isinstance(m.data, LazyRows) for m in ds.modalities.values())
    assert len(ds) == N and ds.modalities["a"].dim == 8 and ds.modalities["b"].data.shape == (N, 4)
    assert ds.cache_bytes == 0 and hashed == []  # nothing read, nothing hashed on the way to opening
    assert _feature_arrays(ds, N) == []
    assert ds.labels.shape == (N,) and sum(len(s) for s in ds.splits.values()) == N  # these are in memory
    assert not ds.statistics_known


def test_browsing_reads_rows_on_demand_with_bounded_memory(big_file):
    ds = read_dataset(big_file, lazy=True)
    cache = ds.modalities["a"].data.file.cache
    assert cache is ds.modalities["b"].data.file.cache  # one cache per file
    cache.bound = bound = 1024**2  # a tenth of the features: the cache must drop blocks to stay within it
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        for _ in range(50):  # random rows, as a user browsing the samples
            ids = rng.integers(0, N, 64)
            a, b = ds.arrays(["a", "b"], ids)
            assert a.shape == (64, 8) and b.shape == (64, 4) and a.dtype == np.float32
        for start in range(0, N, 5_000):  # and every row once, in order (a table filling)
            ds.arrays(["a", "b"], np.arange(start, start + 5_000))
            assert ds.cache_bytes <= bound
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    whole = N * sum(DIMS.values()) * 4
    assert peak < whole / 3, f"reading the file row block by row block peaked at {peak} bytes"
    assert 0 < ds.cache_bytes <= bound and len(cache) < N // ds.modalities["a"].data.block
    assert _feature_arrays(ds, N) == []


def test_lazy_reads_equal_eager_reads_bit_for_bit(big_file, tmp_path):
    lazy, eager = read_dataset(big_file, lazy=True), read_dataset(big_file, lazy=False)
    assert not eager.lazy
    rng = np.random.default_rng(1)
    ids = np.concatenate([rng.integers(0, N, 500), [N - 1, 0, 0, DEEP, 5, 4, 3]])  # unsorted, repeated
    for name in DIMS:
        np.testing.assert_array_equal(lazy.arrays([name], ids)[0], eager.arrays([name], ids)[0])
        rows, data = lazy.modalities[name].data, eager.modalities[name].data
        np.testing.assert_array_equal(rows[DEEP], data[DEEP])
        np.testing.assert_array_equal(rows[-3], data[-3])
        np.testing.assert_array_equal(rows[1000:1100:7], data[1000:1100:7])
        mask = np.zeros(N, bool)
        mask[rng.integers(0, N, 40)] = True
        np.testing.assert_array_equal(rows[mask], data[mask])
        assert lazy.arrays([name], np.zeros(0, np.int64))[0].shape == (0, DIMS[name])
    with pytest.raises(IndexError):
        lazy.arrays(["a"], [N])
    # written back by row blocks from the lazy dataset: the same values, chunked by a few whole rows
    copy = write_dataset(lazy, tmp_path / "rewritten.h5", compression=None)
    back = read_dataset(copy, lazy=False)
    for name in DIMS:
        np.testing.assert_array_equal(back.modalities[name].data, eager.modalities[name].data)
    with h5py.File(copy) as h5:
        for name, d in DIMS.items():
            assert h5["modalities"][name].chunks == (chunk_rows(N, d), d) and chunk_rows(N, d) <= 1024
    assert chunk_rows(N, 4096) == 8  # a 64x64 image: 8 rows (128 KiB) per chunk


def test_the_statistics_pass_matches_the_eager_statistics(copy_of):
    path = copy_of()  # a file of its own: no record of another test's pass
    lazy, eager = read_dataset(path, lazy=True), read_dataset(path, lazy=False)
    got, want = lazy.statistics(), eager.statistics()
    assert not got.cached and got.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for name in DIMS:
        g, w = got.modalities[name], want.modalities[name]
        assert (g.minimum, g.maximum, g.nonfinite_samples) == (w.minimum, w.maximum, 0)
        assert g.mean == pytest.approx(w.mean, rel=1e-7, abs=1e-9)
        np.testing.assert_allclose(g.train_std, w.train_std, rtol=1e-6)
        np.testing.assert_array_equal(lazy.train_std(name), g.train_std)


def test_the_statistics_cache_is_reused_and_invalidated_when_the_file_changes(copy_of, monkeypatch):
    path = copy_of()
    first = read_dataset(path, lazy=True).statistics()
    beside, _ = dataset_stats.cache_paths(path)
    assert beside.is_file() and beside.parent == path.parent
    computed = []
    real = dataset_stats.compute
    monkeypatch.setattr(dataset_stats, "compute", lambda *a, **k: computed.append(1) or real(*a, **k))
    hashed = []
    real_hash = guard.file_sha256
    monkeypatch.setattr(guard, "file_sha256", lambda p: hashed.append(p) or real_hash(p))

    again = read_dataset(path, lazy=True)
    assert again.statistics_known and again.statistics().cached and computed == [] and hashed == []
    assert again.sha256 == first.sha256 and hashed == []  # known from the record: no hashing
    np.testing.assert_array_equal(again.train_std("a"), first.modalities["a"].train_std)

    os.utime(path, ns=(1, 1))  # the same bytes with another time: hashed once, then reused
    touched = read_dataset(path, lazy=True)
    assert not touched.statistics_known
    assert touched.statistics().cached and computed == [] and len(hashed) == 1

    with h5py.File(path, "r+") as h5:  # the content changes (same size: the chunk is rewritten in place or not)
        h5["modalities/a"][7, 0] = 1000.0
    changed = read_dataset(path, lazy=True)
    assert not changed.statistics_known
    stats = changed.statistics()
    assert computed == [1] and not stats.cached and stats.modalities["a"].maximum == 1000.0
    assert stats.sha256 != first.sha256


def test_a_read_only_folder_keeps_the_record_in_the_cache_folder(copy_of, monkeypatch, tmp_path):
    path = copy_of()
    beside, elsewhere = dataset_stats.cache_paths(path)
    from deqstudio.io import atomic

    real = atomic.write_bytes

    def refuse_beside(target, data):
        if os.path.dirname(os.path.abspath(target)) == str(path.parent):
            raise atomic.WriteError(f"cannot write {target}: read-only folder")
        return real(target, data)

    monkeypatch.setattr(atomic, "write_bytes", refuse_beside)
    read_dataset(path, lazy=True).statistics()
    assert not beside.exists() and elsewhere.is_file() and str(elsewhere).startswith(str(tmp_path / "cache"))
    assert read_dataset(path, lazy=True).statistics_known


def test_a_non_finite_value_deep_in_a_big_file_is_a_clear_error(copy_of, capsys):
    path = copy_of("nan.h5")
    with h5py.File(path, "r+") as h5:
        h5["modalities/b"][DEEP, 2] = np.nan
    ds = read_dataset(path, lazy=True)  # opening reads no feature: it opens
    np.testing.assert_array_equal(ds.arrays(["b"], [DEEP - 1, DEEP + 1])[0].shape, (2, 4))  # its neighbours read
    with pytest.raises(DatasetError) as info:
        ds.arrays(["a", "b"], [3, DEEP, 9])
    message = str(info.value)
    assert message.startswith("nan.h5: ") and "'b'" in message and "non-finite" in message and f"sample {DEEP}" in message
    with pytest.raises(DatasetError, match=rf"non-finite values \(NaN or Inf\) in 1 samples \(the first: sample {DEEP}\)"):
        ds.statistics()
    # the pass is remembered: the next open refuses the file at once, as an eager read does
    with pytest.raises(DatasetError, match="non-finite"):
        read_dataset(path, lazy=True)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: nan.h5: ") and f"sample {DEEP}" in err[0]


def test_inspect_reads_metadata_only_and_check_reads_every_value(copy_of, capsys, monkeypatch):
    monkeypatch.setattr(dataset_reader, "EAGER_BYTES", 1024**2)
    path = copy_of()
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "range not read yet" in out and "inspect --check" in out
    import json

    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["read"] == "on demand" and not info["values_checked"] and info["sha256"] is None
    assert info["modalities"]["a"]["min"] is None and info["num_samples"] == N
    assert main(["inspect", str(path), "--check"]) == 0
    assert "range not read yet" not in capsys.readouterr().out
    assert main(["inspect", str(path), "--json"]) == 0  # from the cache now
    info = json.loads(capsys.readouterr().out)
    assert info["values_checked"] and info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["modalities"]["b"]["min"] < info["modalities"]["b"]["max"]


def test_a_shuffle_pool_reads_only_the_rows_it_swaps_in(big_file, monkeypatch):
    ds = read_dataset(big_file, lazy=True)
    train = ds.split("train")
    ids = ds.split("test")[:300]
    x = ds.arrays(["a"], ids)[0]
    eager = corrupt(x, "vector", "shuffle", 2, seed=3, modality="a", sample_ids=ids,
                    pool=ds.arrays(["a"], train)[0], pool_ids=train)
    # bounded (the studio, for a split too big to keep): the rows drawn are read, nothing is kept
    pool = SplitRows(ds, "a", train, keep_bytes=0)
    asked = []
    real = pool.rows
    pool.rows = lambda positions: asked.append(len(positions)) or real(positions)
    lazy = corrupt(x, "vector", "shuffle", 2, seed=3, modality="a", sample_ids=ids, pool=pool, pool_ids=train)
    np.testing.assert_array_equal(lazy, eager)
    swapped = int((lazy != x).any(axis=1).sum())
    assert asked == [swapped] and 0 < swapped < len(ids) and pool.kept_rows == 0
    # unbounded (sweeps): the split rows of every block read are kept, each block read once, the same numbers
    reads = []
    real_read = LazyRows.read
    monkeypatch.setattr(LazyRows, "read", lambda self, a, b: reads.append((self.name, a)) or real_read(self, a, b))
    ds.modalities["a"].data.file.cache.clear()
    kept = SplitRows(ds, "a", train)
    for _ in range(3):
        again = corrupt(x, "vector", "shuffle", 2, seed=3, modality="a", sample_ids=ids, pool=kept, pool_ids=train)
        np.testing.assert_array_equal(again, eager)
    assert len(reads) == len(set(reads)) and 0 < kept.kept_rows <= len(train)


def test_the_studio_opens_a_big_file_and_tabulates_it(big_file):
    """An untrained model over the two modalities: one solve and a table chunk of random rows, features read
    on demand, and the table over all 200,000 samples."""
    import torch

    from deqstudio.core.config import ModalitySpec, ModelConfig
    from deqstudio.core.model import FusionModel
    from deqstudio.core.native import NativeAdapter
    from deqstudio.core.solvers.settings import SolverSettings
    from deqstudio.session.engine import Engine
    from deqstudio.session.sample_table import SampleTable
    from deqstudio.session.values import SolveRequest

    ds = read_dataset(big_file, lazy=True)
    torch.manual_seed(0)
    model = FusionModel(ModelConfig(tuple(ModalitySpec(n, d) for n, d in DIMS.items()), num_classes=10,
                                    hidden=8, encoder_hidden=8)).eval()
    engine = Engine(NativeAdapter(model), ds)
    result = engine.solve(SolveRequest(generation=1, sample=DEEP, corruptions=(), solver=SolverSettings(), device="cpu"))
    assert result.label == int(ds.labels[DEEP])
    rows = np.sort(np.random.default_rng(2).choice(N, 200, replace=False))
    clean, _ = engine.table_chunk(rows, SolverSettings(), None)
    assert clean["predictions"].shape == (200,) and (clean["steps"] > 0).all()
    table = SampleTable("all", np.arange(N), ds.labels, (SolverSettings(),))
    table.apply(rows, table.keys(), clean, None)
    assert len(table) == N and table.computed == 200 and table.summary()["computed"] == 200
    assert ds.cache_bytes <= ds.modalities["a"].data.file.cache.bound
    assert _feature_arrays(ds, N) == [] and _feature_arrays(engine.evaluator, N) == []


def test_the_samples_view_reports_every_row_of_a_big_table(big_file, qtbot):
    from deqstudio.core.solvers.settings import SolverSettings
    from deqstudio.gui.panels.samples import NOT_COMPUTED, SampleBrowser
    from deqstudio.session.sample_table import SampleTable

    ds = read_dataset(big_file, lazy=True)
    browser = SampleBrowser()
    qtbot.addWidget(browser)
    table = SampleTable("all", np.arange(N), ds.labels, (SolverSettings(),))
    browser.set_table(table, ds.class_names, "all")
    assert browser.model.rowCount() == N and browser.proxy.rowCount() == N
    last = browser.model.index(N - 1, 0)
    assert browser.model.data(last) == str(N - 1)
    assert browser.model.data(browser.model.index(N - 1, 2)) == NOT_COMPUTED
    assert _feature_arrays(ds, N) == []


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """An untrained model over the big file's modalities, as a checkpoint (the studio opens files)."""
    import torch

    from deqstudio.core.config import ModalitySpec, ModelConfig
    from deqstudio.core.model import FusionModel
    from deqstudio.io.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = FusionModel(ModelConfig(tuple(ModalitySpec(n, d) for n, d in DIMS.items()), num_classes=10,
                                    hidden=8, encoder_hidden=8)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("model") / "big.pt", model)


@pytest.mark.parametrize("poisoned", [False, True])
def test_the_window_checks_a_big_file_in_the_background_after_the_first_plot(poisoned, big_model, copy_of, qtbot,
                                                                              event_loop_qt, monkeypatch, tmp_path):
    import asyncio

    from deqstudio.gui.main_window import MainWindow
    from deqstudio.session.recent import RecentFiles

    monkeypatch.setattr(dataset_reader, "EAGER_BYTES", 1024**2)  # opened the way a big file is
    path = copy_of("nan.h5" if poisoned else "clean.h5")
    if poisoned:
        with h5py.File(path, "r+") as h5:
            h5["modalities/b"][DEEP, 2] = np.inf
    win = MainWindow(recent=RecentFiles(tmp_path / "recent.json"), remember=False)
    qtbot.addWidget(win)
    win.show()
    messages, order = [], []
    win.session.message.connect(lambda text, is_error: messages.append((text, is_error)))
    win.session.result_changed.connect(lambda r: order.append(win.session.dataset._stats is None))
    try:
        task = asyncio.ensure_future(win.open_files(big_model, path))
        qtbot.waitUntil(task.done, timeout=60000)
        assert task.result() is True and win.session.dataset.lazy
        qtbot.waitUntil(lambda: len(order) > 0, timeout=60000)
        assert order[0] is True  # the first plot came before any statistics
        ds = win.session.dataset
        if poisoned:
            wording = f"in 1 samples (the first: sample {DEEP})"
            qtbot.waitUntil(lambda: any(wording in text for text, _ in messages), timeout=60000)
            assert all(is_error for text, is_error in messages if wording in text)
        else:
            qtbot.waitUntil(lambda: ds._stats is not None, timeout=60000)
            assert dataset_stats.cache_paths(path)[0].is_file() and not messages
    finally:
        win.close()


@pytest.mark.parametrize("junk", [b"", b"not a record", b"PK\x03\x04broken zip", "foreign"])
def test_a_broken_or_foreign_statistics_record_is_ignored(junk, copy_of, tmp_path):
    path = copy_of()
    beside, _ = dataset_stats.cache_paths(path)
    if junk == "foreign":  # a valid record of another dataset's modalities
        np.savez(beside, meta=np.array('{"version": 1, "sha256": "", "size": 1, "mtime_ns": 1, "modalities": []}'))
    else:
        beside.write_bytes(junk)
    ds = read_dataset(path, lazy=True)
    assert not ds.statistics_known
    stats = ds.statistics()
    assert not stats.cached and read_dataset(path, lazy=True).statistics_known  # recomputed, and the record replaced


def test_a_lazy_dataset_pickles_and_reads_after(big_file):
    import pickle

    ds = read_dataset(big_file, lazy=True)
    ids = np.array([DEEP, 1, 99_999])
    before = ds.arrays(["a", "b"], ids)
    back = pickle.loads(pickle.dumps(ds))
    assert back.lazy and back.cache_bytes == 0
    for x, y in zip(before, back.arrays(["a", "b"], ids)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(back.modalities["a"].data[DEEP, 2:5], before[0][0, 2:5])
