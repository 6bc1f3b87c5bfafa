import numpy as np
import pytest
import torch

from anomalyvfm.export import OnnxModel, export_onnx
from anomalyvfm.memory import MemoryBank
from anomalyvfm.profile import ProfileState

from conftest import write_image


def _images(tmp_path, n=3):
    return [write_image(tmp_path / "img" / f"{i}.png", size=(50, 70), seed=i) for i in range(n)]


def _randomise_adapters(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)


@pytest.mark.parametrize("test_views, edge_pad", [("single", 0), ("mirror", 0), ("d4", 0), ("shifted-flips", 0),
                                                   ("flips", 1)])
def test_onnx_export_matches_pytorch_on_maps_and_scores(tiny_model, tmp_path, test_views, edge_pad):
    _randomise_adapters(tiny_model)  # so that the merged LoRA changes the backbone
    tiny_model.config.test_views = test_views  # the views' average is traced into the graph
    tiny_model.config.edge_pad = edge_pad  # and so are the mirrored border and the crop
    images = _images(tmp_path)
    expected = tiny_model.predict(images, resolution=56)
    onnx = OnnxModel(export_onnx(tiny_model, tmp_path / "m.onnx", resolution=56))
    got = onnx.predict(images)
    assert onnx.resolution == 56 and list(onnx.outputs) == ["cls", "topk", "fused", "anomaly_map"]
    for a, b in zip(expected, got):
        assert abs(a.score - b.score) < 1e-4 and a.scores.keys() == b.scores.keys()
        assert all(abs(a.scores[k] - b.scores[k]) < 1e-4 for k in a.scores)
        assert np.abs(a.anomaly_map - b.anomaly_map).max() < 1e-3


def test_onnx_export_of_a_self_similarity_rule_computes_it_in_the_graph(tiny_model, tmp_path):
    tiny_model.config.image_score = "cls+self"
    tiny_model.config.normal_stats = {"cls": (0.1, 0.5), "self": (0.4, 0.2)}
    images = _images(tmp_path)
    expected = tiny_model.predict(images, resolution=56)
    onnx = OnnxModel(export_onnx(tiny_model, tmp_path / "s.onnx", resolution=56))
    assert onnx.outputs == ["cls", "topk", "fused", "self", "cls+self", "anomaly_map"]
    got = onnx.predict(images)
    for a, b in zip(expected, got):
        assert all(abs(a.scores[k] - b.scores[k]) < 1e-4 for k in ("self", "cls+self")) and a.rule == "cls+self"


def test_onnx_export_of_a_profile_keeps_memory_fusion_and_calibration(tiny_model, tmp_path):
    memory = MemoryBank(torch.nn.functional.normalize(torch.randn(48, 32), dim=-1),
                        torch.nn.functional.normalize(torch.randn(5, 32), dim=-1))
    tiny_model.config.image_score = "memory"
    tiny_model.profile = ProfileState(memory, fusion_weight=0.5, knn_scale=0.8,
                                      score_stats={"cls": [0.1, 0.7], "knn": [0.4, 0.2]},
                                      calibration={"threshold": 0.3, "scale": 0.05, "fpr": 0.01, "n_good": 8})
    images = _images(tmp_path, 8)
    expected = tiny_model.predict(images, resolution=56)
    onnx = OnnxModel(export_onnx(tiny_model, tmp_path / "p.onnx", resolution=56))
    assert {"model", "knn", "memory"} <= set(onnx.outputs) and onnx.profile.calibration.threshold == 0.3
    for n, batch_size in ((1, 8), (3, 8), (8, 8), (8, 3)):  # the trace must not fix the batch size
        got = onnx.predict(images[:n], batch_size=batch_size)
        for a, b in zip(expected[:n], got):
            assert b.ok, b.error
            assert abs(a.score - b.score) < 1e-4 and a.is_anomalous == b.is_anomalous
            assert abs(a.scores["raw"] - b.scores["raw"]) < 1e-4
            assert np.abs(a.anomaly_map - b.anomaly_map).max() < 1e-3


def test_int8_export_quantizes_the_matmuls_and_stays_close(tiny_model, tmp_path):
    import onnx

    _randomise_adapters(tiny_model)
    images = _images(tmp_path)
    expected = tiny_model.predict(images, resolution=56)
    path = export_onnx(tiny_model, tmp_path / "q.onnx", resolution=56, quantize="int8")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("MatMulInteger") == 2 * 6 + 1 and "DynamicQuantizeLinear" in ops  # q k v o fc1 fc2, head
    onnx_model = OnnxModel(path)
    assert onnx_model.quantization == "int8"
    for a, b in zip(expected, onnx_model.predict(images)):
        assert abs(a.score - b.score) < 0.05 and np.abs(a.anomaly_map - b.anomaly_map).max() < 0.05
    with pytest.raises(ValueError, match="quantize"):
        export_onnx(tiny_model, tmp_path / "f.onnx", resolution=56, quantize="fp4")
    assert not (tmp_path / "f.onnx").exists()


def test_golden_profiles_are_refused_and_bad_files_named(tiny_model, tmp_path):
    tiny_model.profile = ProfileState(MemoryBank(torch.zeros(16, 32), golden=True))
    with pytest.raises(ValueError, match="golden"):
        export_onnx(tiny_model, tmp_path / "g.onnx", resolution=56)
    assert not (tmp_path / "g.onnx").exists()
    (tmp_path / "x.onnx").write_bytes(b"not onnx")
    with pytest.raises(Exception, match="x.onnx"):
        OnnxModel(tmp_path / "x.onnx")


def test_export_and_predict_commands_run_the_onnx_backend(tiny_checkpoint, tmp_path):
    from anomalyvfm.cli import main

    path = tmp_path / "m.onnx"
    assert main(["export", str(tiny_checkpoint), "--onnx", str(path), "--resolution", "56", "--quantize", "int8"]) == 0
    assert OnnxModel(path).quantization == "int8" and OnnxModel(path).resolution == 56
    images = _images(tmp_path, 2)
    assert main(["predict", *map(str, images), "--backend", "onnx", "--model", str(path), "--out",
                 str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out" / "heatmaps").glob("*.png"))) == 2


def _fake_validation(monkeypatch, status: int, text: str = "") -> list:
    """Replace the HTTP session of huggingface_hub's card validation (network off): returns the request bodies."""
    import httpx2 as httpx  # the HTTP client huggingface_hub uses
    from huggingface_hub import repocard

    bodies = []

    class Session:
        def post(self, url, json, headers):
            bodies.append((url, json))
            return httpx.Response(status, text=text, request=httpx.Request("POST", url))

    monkeypatch.setattr(repocard, "get_session", lambda: Session())
    return bodies


def test_push_to_hub_sends_exactly_the_checkpoint_files(tiny_model, monkeypatch):
    from huggingface_hub import HfApi

    validated = _fake_validation(monkeypatch, 200)
    calls = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("repo", (repo_id, kw)))

    def create_commit(self, repo_id, operations, **kw):
        calls["files"] = {op.path_in_repo: open(op.path_or_fileobj, "rb").read()[:4] for op in operations}
        calls["commit"] = kw
        return "https://huggingface.co/user/tiny/commit/0"

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    url = tiny_model.push_to_hub("user/tiny", private=True, card="---\nlibrary_name: anomalyvfm\n---\n# tiny")
    assert url.endswith("/commit/0") and calls["repo"] == ("user/tiny", {"private": True, "exist_ok": True,
                                                                        "repo_type": "model"})
    assert sorted(calls["files"]) == ["README.md", "adapter_config.json", "adapter_model.safetensors", "config.json",
                                      "heads.safetensors"]
    assert calls["files"]["README.md"] == b"---\nl"[:4]
    url, body = validated[0]  # the card went through the Hub's metadata validation first
    assert url.endswith("/api/validate-yaml") and body["repoType"] == "model" and "library_name: anomalyvfm" in body[
        "content"]


def test_push_goes_on_when_the_card_validator_is_unreachable(tiny_model, monkeypatch):
    """The HTTP client's connection error (not an OSError) means "offline": the upload itself decides."""
    import httpx2 as httpx
    from huggingface_hub import HfApi, repocard

    class Offline:
        def post(self, url, json, headers):
            raise httpx.ConnectError("no route to the Hub", request=httpx.Request("POST", url))

    monkeypatch.setattr(repocard, "get_session", lambda: Offline())
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: None)
    sent = []
    monkeypatch.setattr(HfApi, "create_commit", lambda self, repo_id, operations, **kw: sent.extend(operations) or
                        "https://huggingface.co/user/tiny/commit/1")
    assert tiny_model.push_to_hub("user/tiny", card="---\nlibrary_name: anomalyvfm\n---\n# tiny").endswith("/1")
    assert "README.md" in {op.path_in_repo for op in sent}


def test_push_command_says_in_one_line_that_the_hub_is_unreachable(tiny_checkpoint, monkeypatch, capsys):
    """The upload's connection error (httpx's, not an OSError) becomes the command's one-line error, exit 2."""
    import httpx2 as httpx
    from huggingface_hub import HfApi

    from anomalyvfm.cli import main

    def unreachable(self, repo_id, **kw):
        raise httpx.ConnectError("Name or service not known", request=httpx.Request("POST", "https://hub"))

    monkeypatch.setattr(HfApi, "create_repo", unreachable)
    assert main(["push", str(tiny_checkpoint), "--repo", "user/tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not connect" in err[0] and "no network" in err[0], err


def test_push_refuses_a_card_the_hub_rejects_before_uploading(tiny_model, monkeypatch):
    from huggingface_hub import HfApi

    _fake_validation(monkeypatch, 400, "\"license\" must be one of [...]")
    monkeypatch.setattr(HfApi, "create_repo", lambda *a, **k: pytest.fail("nothing may be created"))
    monkeypatch.setattr(HfApi, "create_commit", lambda *a, **k: pytest.fail("nothing may be uploaded"))
    with pytest.raises(ValueError, match="license"):
        tiny_model.push_to_hub("user/tiny", card="---\nlicense: not-a-licence\n---\n# tiny")


def test_onnx_export_of_an_ensemble_matches_pytorch(tiny_model, tmp_path):
    """Every member's passes are traced into the graph."""
    from anomalyvfm import AnomalyVFM
    from training.ensemble import ensemble

    first = tiny_model.save_pretrained(tmp_path / "a")
    _randomise_adapters(tiny_model)
    model = AnomalyVFM.from_pretrained(ensemble([first, tiny_model.save_pretrained(tmp_path / "b")],
                                                tmp_path / "ens", test_views="mirror"))
    images = _images(tmp_path)
    expected = model.predict(images, resolution=56)
    got = OnnxModel(export_onnx(model, tmp_path / "e.onnx", resolution=56)).predict(images)
    single = AnomalyVFM.from_pretrained(first).predict(images, resolution=56)
    assert any(abs(a.score - s.score) > 1e-4 for a, s in zip(expected, single))  # the member counts
    for a, b in zip(expected, got):
        assert abs(a.score - b.score) < 1e-4 and np.abs(a.anomaly_map - b.anomaly_map).max() < 1e-3
