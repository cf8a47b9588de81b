"""DEQ packages (issue 17): models exported at test time with scripts/export_deq_package.py open and solve to the
same equilibrium and probabilities as their eager float64 originals, through the adapter, the command line and
the window."""

import copy
import itertools
import json

import numpy as np
import pytest
import torch

import package_models as pm
from deqstudio.cli import main
from deqstudio.core.adapter import ModelAdapter
from deqstudio.core.solvers import SolverSettings, solve
from deqstudio.io.dataset import read_dataset
from deqstudio.io.models import open_model

TIGHT = SolverSettings(max_iter=300, tol=1e-7)  # float32 reaches it; the float64 references are exact
LABELS = ("native", "tuple", "attention")
REFERENCES = {"native": pm.native_reference, "tuple": pm.tuple_reference, "attention": pm.attention_reference}


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _reference(label, model, inputs):
    return REFERENCES[label](model, inputs)


@pytest.fixture(scope="module")
def dataset(small_files):
    return read_dataset(small_files[1])


@pytest.mark.parametrize("label", LABELS)
def test_a_package_solves_to_its_eager_equilibrium(label, packages, dataset):
    path, model = packages[label]
    opened = open_model(path)
    adapter = opened.adapter
    assert opened.path == path and len(opened.sha256) == 64 and adapter.source.kind == "package"
    assert isinstance(adapter, ModelAdapter) and adapter.feature_scales == (None,) * len(adapter.modalities)
    ids = dataset.split("test")[:6]
    inputs = dataset.arrays(adapter.modality_names, ids)
    run = adapter(inputs, TIGHT, playback=True)
    z_ref, p_ref = _reference(label, model, inputs)
    assert run.trace.converged.all()
    np.testing.assert_allclose(run.z_star, z_ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(run.probabilities, p_ref, atol=1e-4, rtol=0)
    assert run.trace.block_rel.shape[2] == len(adapter.blocks) and run.trace.block_names == adapter.block_names
    k = run.trace.best_step
    np.testing.assert_allclose(run.trace.extras["probabilities"][np.arange(len(ids)), k], run.probabilities, atol=1e-6)


def test_a_2d_block_is_flattened_with_its_shape_recorded(packages):
    adapter = open_model(packages["attention"][0]).adapter
    assert [(b.name, b.size, b.shape) for b in adapter.blocks] == [("attention", 36, (6, 6)), ("fused", 8, None)]
    assert adapter.fused_block == "fused"


def test_the_native_package_gives_what_the_native_model_gives(packages, dataset, small_files):
    from deqstudio.io.checkpoint import load_checkpoint

    native = load_checkpoint(small_files[0]).adapter
    package = open_model(packages["native"][0]).adapter
    assert package.capabilities == native.capabilities
    ids = dataset.split("test")[:5]
    inputs = dataset.arrays(native.modality_names, ids)
    a, b = package(inputs, TIGHT, playback=True), native(inputs, TIGHT, playback=True)
    for key in ("sigma_hat", "weights", "pe", "energy", "probabilities"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), atol=1e-4, rtol=0, err_msg=key)
    for key in ("gates", "gate_share", "probabilities"):  # the first steps, before the two solves part ways
        np.testing.assert_allclose(a.trace.extras[key][:, :3], b.trace.extras[key][:, :3], atol=1e-4, err_msg=key)


@pytest.mark.parametrize("label", LABELS)
def test_the_command_line_solves_a_package_like_its_eager_model(label, packages, small_files, capsys):
    from deqstudio.core.corruptions import Corruption
    from deqstudio.diagnostics.evaluation import Evaluator

    path, model = packages[label]
    data = small_files[1]
    ds = read_dataset(data)
    sample = int(ds.split("test")[0])
    code, out, err = _run(capsys, "solve", "--checkpoint", path, "--dataset", data, "--sample", sample, "--json",
                          "--tol", "1e-7", "--max-iter", "300", "--corrupt", "picture=gaussian:2@3")
    assert code == 0, err
    result = json.loads(out)
    assert result["converged"] and result["clean"]["converged"]
    adapter = open_model(path).adapter
    evaluator = Evaluator(adapter, ds)
    clean = evaluator.inputs(np.array([sample]))
    corrupted = evaluator.inputs(np.array([sample]), {"picture": Corruption("gaussian", 2.0, 3)})
    (z_clean, p_clean), (z_bad, p_bad) = _reference(label, model, clean), _reference(label, model, corrupted)
    for probs, ref in ((result["clean"]["probabilities"], p_clean), (result["probabilities"], p_bad)):
        np.testing.assert_allclose([probs[c] for c in ds.class_names], ref[0], atol=1e-4, rtol=0)
    # the equilibrium: each block's shift between the corrupted and the clean z*, as the references have it
    edges = np.cumsum([0] + [b.size for b in adapter.blocks])
    shift = [np.linalg.norm(z_bad[0, a:b] - z_clean[0, a:b]) for a, b in itertools.pairwise(edges)]
    np.testing.assert_allclose([result["equilibrium_shift"][b] for b in adapter.block_names], shift, atol=1e-4)


def test_inspect_shows_the_contract(packages, capsys):
    code, out, _ = _run(capsys, "inspect", packages["attention"][0])
    assert code == 0
    assert "state blocks: attention(6x6), fused(8) fused" in out
    assert "program f" in out and "Jacobian-vector products: finite differences" in out and "onnxruntime" in out
    code, out, _ = _run(capsys, "inspect", packages["tuple"][0], "--json")
    info = json.loads(out)
    assert code == 0 and info["type"] == "package" and info["format"] == "deqstudio-package"
    assert info["features"] == [{"name": "x_vec", "size": 12}, {"name": "x_pic", "size": 12}]
    assert info["programs"]["f"]["inputs"] == ["z", "x_vec", "x_pic"] and info["jvp"] == "finite differences"


def test_sweep_and_report_open_a_package(packages, small_files, capsys, tmp_path):
    from deqstudio.session.traces import read_trace_hdf5

    path, model = packages["attention"]
    data = small_files[1]
    code, out, err = _run(capsys, "sweep", "--checkpoint", packages["tuple"][0], "--dataset", data,
                          "--modality", "strong", "--json")
    assert code == 0, err
    assert json.loads(out)["modalities"]["strong"]["accuracy"][0] is not None
    code, out, err = _run(capsys, "report", "--checkpoint", path, "--dataset", data, "--out", tmp_path / "r",
                          "--tol", "1e-7", "--max-iter", "300")
    assert code == 0, err
    trace = read_trace_hdf5(tmp_path / "r" / "trace.h5")
    ds = read_dataset(data)
    sample = int(trace["attrs"]["sample"])
    z_ref, _ = pm.attention_reference(model, ds.arrays(list(pm.SIZES), np.array([sample])))
    np.testing.assert_allclose(trace["clean"]["z_star"], z_ref[0], atol=1e-4)
    provenance = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert provenance["checkpoint"]["source"] == "package"


def test_the_window_opens_packages_and_solves_them_like_their_eager_models(window, qtbot, packages, small_files,
                                                                           tmp_path):
    import asyncio

    from deqstudio.io.session_file import read_session

    ds = read_dataset(small_files[1])
    session = window.session
    session.set_solver(TIGHT)
    for label in LABELS:
        path, model = packages[label]
        opening = asyncio.ensure_future(window.open_files(path, None))
        qtbot.waitUntil(lambda opening=opening, path=path: opening.done() and session.result is not None
                        and not window.runner.busy and session.checkpoint.path == path, timeout=60000)
        assert opening.result() is True and window.last_error in (None, "")
        result = session.result
        assert result.request.solver == TIGHT and result.clean.converged
        z_ref, p_ref = _reference(label, model, ds.arrays(list(pm.SIZES), np.array([result.request.sample])))
        np.testing.assert_allclose(result.clean.z_star, z_ref[0], atol=1e-4, rtol=0)
        np.testing.assert_allclose(result.clean.final_probabilities, p_ref[0], atol=1e-4, rtol=0)
        assert session.info.block_names == tuple(b.name for b in open_model(path).adapter.blocks)
        assert path.name in window.windowTitle()
        saved = session.save(tmp_path / f"{label}.json")  # a session remembers the package, folder or zip
        assert read_session(saved).checkpoint == path.resolve()


def test_jacobian_vector_products_by_finite_differences_and_by_a_jvp_program(packages, dataset, tmp_path):
    from deqstudio.diagnostics.evaluation import Evaluator

    model = packages["tuple"][1]
    example = {n: torch.as_tensor(x) for n, x in zip(pm.SIZES, dataset.arrays(list(pm.SIZES), dataset.split("train")[:4]))}
    pm.exporter().export_package(tmp_path / "with_jvp", quiet=True, **pm.tuple_spec(model, example, with_jvp=True))
    ids = dataset.split("test")[:3]
    m = copy.deepcopy(model).double()
    x = m.inject(*[torch.as_tensor(v, dtype=torch.float64) for v in dataset.arrays(list(pm.SIZES), ids)])
    w = m.w1.in_features
    for path, method in ((packages["tuple"][0], "finite differences"), (tmp_path / "with_jvp", "jvp program")):
        adapter = open_model(path).adapter
        problem = Evaluator(adapter, dataset).fixed_point_problem(ids)
        z, trace = solve(problem.f, problem.z0, tol=1e-6, max_iter=100)
        assert trace.converged.all() and problem.f.jvp_method == adapter.jvp_method == method
        v = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
        jv = problem.f.jvp(z, v)
        _, exact = torch.autograd.functional.jvp(lambda s: torch.cat(m.f(s[:, :w], s[:, w:], *x), dim=1),
                                                 z.double(), v.double())
        assert float((jv.double() - exact).norm() / exact.norm()) < 1e-2, method
        assert problem.head(z).shape == (len(ids), 4)


def test_onnxruntime_runs_on_cuda_only_with_its_cuda_provider(packages, monkeypatch):
    import onnxruntime

    from deqstudio.io.package.adapter import providers_for

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="no CUDA provider"):
        providers_for("cuda")
    adapter = open_model(packages["tuple"][0]).adapter
    with pytest.raises(RuntimeError):
        adapter.to("cuda")
    assert adapter.device == "cpu"  # what failed to move stays where it ran
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers_for("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]


def test_the_readme_worked_example_exports_a_package_that_solves(tmp_path, capsys):
    """The README's torchdeq example, as written there: exported by the script's command line, then solved."""
    pytest.importorskip("torchdeq")
    readme = (pm.ROOT / "README.md").read_text()
    section = readme[readme.index("**Exporting: a worked example.**"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    (tmp_path / "my_spec.py").write_text(code[:code.index("```")])
    assert pm.exporter().main([str(tmp_path / "my_spec.py"), "--out", str(tmp_path / "my_deq.zip")]) == 0
    printed = capsys.readouterr().out
    assert "largest difference over every program" in printed and "wrote" in printed
    code, out, err = _run(capsys, "solve", "--checkpoint", tmp_path / "my_deq.zip", "--corrupt", "fou=gaussian:3",
                          "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["converged"] and list(result["block_rel_residual"]) == ["z1", "z2"]


def test_equilibrium_analyses_of_a_package_use_finite_differences_and_match_its_native_model(packages, small_files,
                                                                                            capsys):
    """A package's map cannot be differentiated by autograd: the analyses take central differences and find what
    autograd finds on the model it was exported from (same sample, same solver settings)."""
    data = small_files[1]
    sample = int(read_dataset(data).split("test")[0])
    reports = {}
    for label, path in (("native", str(small_files[0])), ("package", packages["native"][0])):
        code, out, err = _run(capsys, "solve", "--checkpoint", path, "--dataset", data, "--sample", sample, "--json",
                              "--tol", "1e-6", "--max-iter", "300", "--corrupt", "weak=gaussian:2")
        assert code == 0, err
        reports[label] = json.loads(out)["equilibrium"]
    native, package = reports["native"], reports["package"]
    assert native["derivatives"] == "autograd" and package["derivatives"] == "finite-difference"
    assert package["spectral_radius"] == pytest.approx(native["spectral_radius"], abs=2e-2)
    for m, share in native["sensitivity_share"].items():
        assert package["sensitivity_share"][m] == pytest.approx(share, abs=2e-2), m
    assert package["inits"]["agree"] == native["inits"]["agree"]
