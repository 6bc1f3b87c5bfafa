"""Things chosen by name come from one registry each: adding an entry is enough for every place that lists them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anomalyvfm import scoring
from anomalyvfm.benchmark import BenchmarkConfig, run_benchmark
from anomalyvfm.cli import build_parser, main
from anomalyvfm.data import LAYOUTS, Category, Sample, register_layout, scan
from anomalyvfm.methods import METHODS, create_method
from anomalyvfm.methods.zeroshot import AnomalyVFMMethod
from conftest import fake_mvtec, write_image


@pytest.fixture
def peak_rule():
    """A new image-score rule, ``peak``: the map's maximum. Removed again after the test."""
    @scoring.register_score_rule("peak", help="the map's highest pixel")
    def peak(inputs):
        return inputs.maps.flatten(1).amax(1)

    yield "peak"
    scoring.SCORE_RULES.pop("peak")


def test_a_registered_rule_reaches_predict_export_and_the_benchmark(peak_rule, tiny_model, tmp_path):
    from anomalyvfm.export import OnnxModel, export_onnx

    images = [write_image(tmp_path / f"{i}.png", size=(56, 56), seed=i) for i in range(2)]
    [first, _] = tiny_model.predict(images, resolution=56)
    assert first.scores["peak"] == pytest.approx(float(first.anomaly_map.max()), abs=1e-5)
    tiny_model.config.image_score = "peak"  # config validation accepts it, and the verdict uses it
    assert tiny_model.predict(images[:1], resolution=56)[0].score == pytest.approx(first.scores["peak"])
    onnx = OnnxModel(export_onnx(tiny_model, tmp_path / "m.onnx", resolution=56))
    assert "peak" in onnx.outputs
    assert onnx.predict(images[:1])[0].scores["peak"] == pytest.approx(first.scores["peak"], abs=1e-4)
    fake_mvtec(tmp_path / "data" / "toyset", "a")
    [part] = run_benchmark(BenchmarkConfig(data=str(tmp_path / "data"), out=str(tmp_path / "out"),
                                           methods=("anomalyvfm",)), lambda name: AnomalyVFMMethod(tiny_model, 56))
    assert "I-AUROC[peak]" in part["row"]


def test_a_rule_name_cannot_be_taken_twice_and_unknown_rules_are_refused():
    from anomalyvfm import AnomalyVFMConfig

    with pytest.raises(ValueError, match="already registered"):
        scoring.register_score_rule("cls")(lambda x: x)
    with pytest.raises(ValueError, match="median"):
        AnomalyVFMConfig(image_score="median")


def test_the_output_order_is_the_table_order():
    rules = scoring.SCORE_RULES.items()
    assert scoring.output_names() == [r for r, rule in rules if not (rule.needs_memory or rule.needs_self)]
    assert scoring.output_names(memory=True, self_scores=True) == [*scoring.SCORE_RULES, scoring.MODEL_RULE]
    assert scoring.output_names(self_scores=True) == [r for r, rule in rules if not rule.needs_memory]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_is_offered_by_the_cli_with_its_help(name):
    help_text = "".join(build_parser()._subparsers._group_actions[0].choices["benchmark"].format_help().split())
    assert f"{name}(" in help_text and "".join(METHODS[name].help.split()) in help_text


def test_an_unknown_method_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--data", str(tmp_path), "--methods", "anomalyvfm,nope"])
    assert "nope" in capsys.readouterr().err
    with pytest.raises(ValueError, match="available: anomalyvfm"):
        create_method("nope")


def test_a_registered_layout_is_found_by_scan(tmp_path):
    @register_layout("okng", lambda f: (f / "OK").is_dir() and (f / "NG").is_dir(), "OK/ and NG/ folders")
    def read_okng(folder):
        cat = Category(folder.parent.name, folder.name, "okng")
        cat.test = [Sample(p, int(p.parent.name == "NG")) for p in sorted(folder.glob("*/*.png"))]
        return [cat]

    try:
        root = tmp_path / "lineA" / "part"
        write_image(root / "OK" / "a.png")
        write_image(root / "NG" / "b.png")
        [cat] = scan(tmp_path)
        assert cat.key == "lineA/part" and cat.counts()["test_defective"] == 1
    finally:
        LAYOUTS.pop("okng")


def test_a_registered_backbone_source_resolves_its_specs(tmp_path):
    from anomalyvfm.backbones import _SOURCES, load_backbone, register_backbone_source
    from conftest import tiny_dinov2

    @register_backbone_source("tiny", lambda spec: spec.startswith("tiny:"), help="test backbones")
    def tiny(spec, pretrained):
        return tiny_dinov2(hidden_size=int(spec.split(":")[1]))

    try:
        assert [s.name for s in _SOURCES][-1] == "huggingface"  # the catch-all stays last
        assert load_backbone("tiny:64").config.hidden_size == 64
    finally:
        _SOURCES[:] = [s for s in _SOURCES if s.name != "tiny"]


def test_a_folder_written_by_version_0_1_0_loads_with_its_state(tiny_model, tmp_path):
    """0.1.0 kept the fitted state inside config.json; such folders load into a ProfileState."""
    from safetensors.torch import save_file

    from anomalyvfm import AnomalyVFM

    folder = tiny_model.save_pretrained(tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    calibration = {"threshold": 0.4, "scale": 0.1, "fpr": 0.01, "n_good": 8}
    config.update(fusion_weight=0.25, knn_scale=0.5, calibration=calibration,
                  score_stats={"cls": [0.0, 1.0], "knn": [0.2, 0.1]}, memory_mode="knn", image_score="memory")
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"memory": torch.nn.functional.normalize(torch.randn(16, 32), dim=-1)}, folder / "memory.safetensors")
    model = AnomalyVFM.from_pretrained(folder)
    state = model.profile
    assert state.fusion_weight == 0.25 and state.knn_scale == 0.5 and state.calibration.threshold == 0.4
    assert state.memory.good.shape == (16, 32) and not state.golden
    image = np.arange(56 * 56 * 3, dtype=np.uint8).reshape(56, 56, 3)
    assert set(model.predict([image], resolution=56)[0].scores) >= {"memory", "raw"}
    model.save_pretrained(folder)  # re-saved in the current format: the state moves out of config.json
    assert "fusion_weight" not in json.loads((folder / "config.json").read_text())
    assert json.loads((folder / "state.json").read_text())["fusion_weight"] == 0.25


def test_saving_a_plain_model_over_a_profile_removes_the_profile_files(tiny_model, tmp_path):
    from anomalyvfm.memory import MemoryBank
    from anomalyvfm.profile import ProfileState

    tiny_model.profile = ProfileState(MemoryBank(torch.zeros(16, 32), golden=True),
                                      reference=np.zeros((8, 8, 3), np.uint8))
    folder = tiny_model.save_pretrained(tmp_path / "m")
    assert (folder / "reference.png").is_file() and (folder / "memory.safetensors").is_file()
    tiny_model.profile = None
    tiny_model.save_pretrained(folder)
    assert not any((folder / n).exists() for n in ("reference.png", "memory.safetensors", "state.json"))


def test_the_python_api_writes_the_same_results_folder_as_the_cli(tiny_checkpoint, tmp_path):
    from anomalyvfm import AnomalyVFM

    images = [str(write_image(tmp_path / "in" / f"{i}.png", seed=i)) for i in range(3)]
    AnomalyVFM.from_pretrained(tiny_checkpoint).predict(images, out=tmp_path / "api")
    assert main(["predict", *images, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "cli")]) == 0
    runs = [json.loads((tmp_path / d / "run.json").read_text()) for d in ("api", "cli")]
    assert runs[0]["weights_sha256"] == runs[1]["weights_sha256"] and runs[0]["resolution"] == runs[1]["resolution"]
    for name in ("results.csv", "results.jsonl"):  # identical but for the run each row points to
        api, cli = ((tmp_path / d / name).read_text().replace(r["run_id"], "RUN") for d, r in zip(("api", "cli"), runs))
        assert api == cli
    for sub in ("heatmaps", "overlays", "thumbnails"):
        assert sorted(p.name for p in (tmp_path / "api" / sub).iterdir()) == ["0.png", "1.png", "2.png"]


def test_output_names_never_collide():
    from anomalyvfm.outputs import ResultsWriter

    writer = ResultsWriter("unused")
    stems = [writer._stem(n) for n in ("c/A/a.jpg", "c/B/a.jpg", "c/a_2.jpg", "d/a.png")]
    assert len(set(stems)) == 4


def test_predict_with_out_and_keep_images_together(tiny_model, tmp_path):
    """With ``out`` the writer draws each input, then the results let it go unless ``keep_images=True``: a long run
    through the Python API must not hold every input image in memory."""
    image = write_image(tmp_path / "a.png", seed=3)
    for keep in (False, True):
        [result] = tiny_model.predict([image], resolution=56, out=tmp_path / str(keep), keep_images=keep)
        assert result.ok and (tmp_path / str(keep) / "overlays" / "a.png").is_file()
        assert (result.image is not None) == keep
    assert all(r.image is None for r in tiny_model.predict([image] * 2, resolution=56, out=tmp_path / "default"))


@pytest.mark.parametrize("name", ["anomalyvfm", "anomalyvfm-fewshot", "anomalyvfm-batch", "anomalyvfm-fewshot-batch",
                                  "musc"])
def test_every_checkpoint_method_is_built_by_name(name, tiny_checkpoint):
    from anomalyvfm.methods import Method

    method = create_method(name, model=str(tiny_checkpoint), resolution=56)
    assert isinstance(method, Method) and method.name == name and method.resolution == 56
