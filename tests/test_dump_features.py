"""scripts/dump_features.py, run as a user runs it beside their own code: it records what the fusion module
receives (the solver never runs), writes DEQ Studio's schema without importing DEQ Studio, and the whole path —
dump, import, solve — gives the reference probabilities."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from deqstudio.cli import main
from deqstudio.core.solvers.settings import SolverSettings
from deqstudio.io.checkpoint import load_checkpoint
from deqstudio.io.dataset import read_dataset
from official_files import reference_fused, reference_probabilities, user_model_state

ROOT = Path(__file__).resolve().parents[1]
SETUP = '''
import sys
import torch
import torch.nn.functional as F
from torch import nn

class Branch(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.conv1, self.conv2 = nn.Linear(d, d), nn.Linear(d, d)
        self.gn1, self.gn2, self.gn3 = nn.GroupNorm(4, d), nn.GroupNorm(4, d), nn.GroupNorm(4, d)

class Fused(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.gate, self.fuse, self.gn3 = nn.Linear(d, d), nn.Linear(d, d), nn.GroupNorm(4, d)

class Layer(nn.Module):
    def __init__(self, d, n):
        super().__init__()
        self.branches = nn.ModuleList([*(Branch(d) for _ in range(n)), Fused(d)])

class DEQFusion(nn.Module):  # the official module's layout; its solver must never run here
    def __init__(self, d, n):
        super().__init__()
        self.func_ = Layer(d, n)
        self.weights = nn.ParameterList([nn.Parameter(torch.ones(1)) for _ in range(n)])
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, features):
        raise RuntimeError("the fusion ran: the dump must stop before the solver")

class UserModel(nn.Module):
    def __init__(self, dims, d, classes):
        super().__init__()
        self.encoders = nn.ModuleList(nn.Linear(k, d) for k in dims)
        self.fusion = DEQFusion(d, len(dims))
        self.classifier = nn.Linear(d, classes)

    def forward(self, xs):
        return self.classifier(self.fusion([F.relu(e(x)) for e, x in zip(self.encoders, xs)]))

def build():
    data = torch.load(DATA)
    model = UserModel(DIMS, D, CLASSES)
    model.load_state_dict(torch.load(STATE))
    batches = lambda rows: [([x[rows][i:i + 7] for x in data["x"]], data["y"][rows][i:i + 7])
                            for i in range(0, len(rows), 7)]
    return {"model": model, "splits": {"train": batches(range(0, 24)), "test": batches(range(24, 36))},
            "forward": lambda model, batch: model(batch[0]), "labels": lambda batch: batch[1],
            "modalities": ["a", "b"], "class_names": ["c0", "c1", "c2"]}
'''


def test_dump_import_and_solve(tmp_path, capsys):
    gen = torch.Generator().manual_seed(21)
    dims, d, classes = (35, 36), 32, 3
    state = user_model_state(2, d, classes, gen, in_dims=dims)
    x = [torch.randn(36, k, generator=gen) for k in dims]
    y = torch.arange(36) % classes
    torch.save(state, tmp_path / "state.pt")
    torch.save({"x": x, "y": y}, tmp_path / "data.pt")
    setup = tmp_path / "my_setup.py"
    setup.write_text(f"DIMS, D, CLASSES = {dims}, {d}, {classes}\nSTATE = {str(tmp_path / 'state.pt')!r}\n"
                     f"DATA = {str(tmp_path / 'data.pt')!r}\n" + SETUP)
    out = tmp_path / "features.h5"
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["dump_features.py", "--setup", {str(setup)!r}, "--out", {str(out)!r}]
        try:
            runpy.run_path({str(ROOT / "scripts" / "dump_features.py")!r}, run_name="__main__")
        except SystemExit as exc:
            assert not exc.code, exc.code
        assert not [m for m in sys.modules if m.split(".")[0] == "deqstudio"], "the script imported deqstudio"
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train" in proc.stdout and "val" in proc.stdout

    ds = read_dataset(out)  # DEQ Studio's reader accepts it
    assert ds.modality_names == ("a", "b") and ds.class_names == ("c0", "c1", "c2")
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [22, 2, 12]  # val drawn from train
    feats = [torch.relu(xi @ state[f"encoders.{i}.weight"].T + state[f"encoders.{i}.bias"]) for i, xi in enumerate(x)]
    for name, f in zip(ds.modality_names, feats):
        np.testing.assert_allclose(ds.modalities[name].data, f.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ds.labels, y.numpy())

    torch.save(state, tmp_path / "official.pt")
    assert main(["import", "deqfusion", str(tmp_path / "official.pt"), "--features", str(out), "--out",
                 str(tmp_path / "imported.pt")]) == 0
    capsys.readouterr()
    ck = load_checkpoint(tmp_path / "imported.pt")
    run = ck.adapter([ds.modalities[n].data for n in ds.modality_names], SolverSettings(tol=1e-6, max_iter=300))
    z = reference_fused(state, "fusion.", feats, mixing=True, relu_after_norm=False)
    ref = reference_probabilities(z @ state["classifier.weight"].double().T + state["classifier.bias"].double(), False)
    assert np.abs(run.probabilities - ref.numpy()).max() < 2e-3
