"""Checkpoints: round trip, and refusal of every broken or hostile file without running anything."""


import pytest
import torch

from deqstudio.core.config import ModalitySpec, ModelConfig
from deqstudio.core.model import FusionModel
from deqstudio.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

MODS = (ModalitySpec("img", 12, "image", (3, 4)), ModalitySpec("vec", 5))


def _model(fusion="deq-udml"):
    torch.manual_seed(0)
    model = FusionModel(ModelConfig(MODS, num_classes=3, fusion=fusion, hidden=8, encoder_hidden=16)).eval()
    model.set_normalisation([torch.rand(12), torch.rand(5)], [torch.rand(12) + 0.5, torch.rand(5) + 0.5])
    return model


def _inputs():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 12, generator=g), torch.randn(4, 5, generator=g)]


@pytest.mark.parametrize("fusion", ["deq-udml", "deq", "concat", "late"])
def test_round_trip_gives_the_same_outputs(tmp_path, fusion):
    model = _model(fusion)
    path = save_checkpoint(tmp_path / "m.pt", model, metrics={"test_accuracy": 0.9}, dataset={"name": "syn"},
                           dependency={"logit_magnitude": {"img": 1.0, "vec": 2.0}})
    ck = load_checkpoint(path)
    assert ck.config == model.config and ck.metrics["test_accuracy"] == 0.9 and ck.dataset["name"] == "syn"
    with torch.no_grad():
        torch.testing.assert_close(ck.model(_inputs()).logits, model(_inputs()).logits)
    assert len(ck.sha256) == 64


class _Payload:
    def __reduce__(self):
        import builtins
        return (builtins.exec, ("open(__import__('os').environ['DEQ_MARKER'], 'w').write('ran')",))


def test_a_pickled_code_payload_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "payload-ran"
    monkeypatch.setenv("DEQ_MARKER", str(marker))
    path = tmp_path / "evil.pt"
    torch.save({"format": "deqstudio-checkpoint", "version": 1, "config": {}, "state_dict": {}, "x": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def _save_raw(path, payload):
    torch.save(payload, path)
    return path


def test_broken_files_are_refused_with_the_problem_named(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", _model())
    payload = torch.load(good, weights_only=True)
    cases = {}
    (tmp_path / "empty.pt").write_bytes(b"")
    cases["empty.pt"] = "empty"
    (tmp_path / "text.pt").write_text("not a checkpoint")
    cases["text.pt"] = "not a torch zip"
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    cases["cut.pt"] = "truncated or corrupt"
    _save_raw(tmp_path / "list.pt", [1, 2, 3])
    cases["list.pt"] = "holds a list"
    _save_raw(tmp_path / "other.pt", {"model": torch.zeros(3)})
    cases["other.pt"] = "format is None"
    _save_raw(tmp_path / "future.pt", {**payload, "version": 9})
    cases["future.pt"] = "version 9"
    _save_raw(tmp_path / "noweights.pt", {k: v for k, v in payload.items() if k != "state_dict"})
    cases["noweights.pt"] = "missing 'state_dict'"
    sd = dict(payload["state_dict"])
    sd["head.weight"] = torch.zeros(7, 7)
    _save_raw(tmp_path / "shape.pt", {**payload, "state_dict": sd})
    cases["shape.pt"] = r"'head.weight' has shape \(7, 7\)"
    sd = {k: v for k, v in payload["state_dict"].items() if k != "head.bias"}
    _save_raw(tmp_path / "missing.pt", {**payload, "state_dict": sd})
    cases["missing.pt"] = "weights missing for its config: head.bias"
    sd = dict(payload["state_dict"])
    sd["head.bias"] = torch.full_like(sd["head.bias"], float("nan"))
    _save_raw(tmp_path / "nan.pt", {**payload, "state_dict": sd})
    cases["nan.pt"] = "NaN or Inf"
    _save_raw(tmp_path / "badcfg.pt", {**payload, "config": {**payload["config"], "fusion": "attention"}})
    cases["badcfg.pt"] = "invalid model config: unknown fusion"
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / name)


def test_save_is_atomic(tmp_path):
    target = tmp_path / "m.pt"
    target.write_bytes(b"previous")
    model = _model()
    with pytest.raises(TypeError):
        save_checkpoint(target, model, metrics={"bad": object()})
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
