import numpy as np
import pytest
import torch

from anomalyvfm.methods.winclip import (TEMPLATES, WinCLIP, WinCLIPConfig, WeightsUnavailableError,
                                        harmonic_aggregation, load_clip, prompt_ensemble, window_masks)


def tiny_clip():
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = open_clip.CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8,
                                                                  image_size=40),
                           text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=1))
    return model.eval(), open_clip.get_tokenizer("ViT-B-16")


@pytest.fixture
def winclip():
    model, tokenizer = tiny_clip()
    method = WinCLIP(WinCLIPConfig(), clip_model=model, tokenizer=tokenizer)
    method.set_category("metal_nut")
    return method


def _image(seed, size=(50, 70)):
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), np.uint8)


def test_prompt_ensemble_counts_and_content():
    normal, anomalous = prompt_ensemble("bottle")
    assert len(TEMPLATES) == len(set(TEMPLATES)) == 21
    assert len(normal) == 7 * 21 and len(anomalous) == 4 * 21
    assert "a photo of a flawless bottle for visual inspection." in normal
    assert "a cropped photo of the bottle without damage." in normal
    assert "a photo of the bottle with defect for anomaly detection." in anomalous
    assert "a close-up photo of a damaged bottle." in anomalous
    assert not set(normal) & set(anomalous)


def test_window_extraction_on_a_small_grid():
    assert window_masks(3, 2).tolist() == [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    assert window_masks(5, 3).shape == (9, 9)


def test_harmonic_aggregation_by_hand():
    scores = torch.tensor([[0.5, 1.0, 0.25, 1.0]])
    out = harmonic_aggregation(scores, window_masks(3, 2), 3)[0]
    assert out[0, 0] == pytest.approx(0.5)  # only window 0
    assert out[0, 1] == pytest.approx(2 / (2 + 1))  # windows 0 and 1
    assert out[1, 1] == pytest.approx(4 / (2 + 1 + 4 + 1))  # all four


def test_zero_shot_scores_are_probabilities_and_maps_full_size(winclip):
    assert winclip.grid == 5 and winclip.class_name == "metal nut"
    scored = winclip.score({"a": _image(0), "b": _image(1, (40, 40))})
    for key, shape in (("a", (50, 70)), ("b", (40, 40))):
        assert 0.0 <= scored[key].score <= 1.0
        assert scored[key].anomaly_map.shape == shape
        assert ((scored[key].anomaly_map >= 0) & (scored[key].anomaly_map <= 1)).all()


def test_window_embedding_of_the_whole_grid_equals_the_image_embedding():
    model, tokenizer = tiny_clip()
    method = WinCLIP(WinCLIPConfig(scales=(5,)), clip_model=model, tokenizer=tokenizer)  # one window = all patches
    image = _image(3, (40, 40))
    emb, _, windows = method.encode([image])
    assert torch.allclose(windows[0][0, 0], emb[0], atol=1e-5)


def test_winclipplus_with_the_test_image_as_reference_gives_a_near_zero_map():
    model, tokenizer = tiny_clip()
    method = WinCLIP(WinCLIPConfig(), clip_model=model, tokenizer=tokenizer, few_shot=True)
    image, other = _image(0), _image(5)
    method.fit({"ref": image})
    assert method.association_map([image]).abs().max() < 1e-5
    assert method.association_map([other]).max() > 1e-3
    scored = method.score({"x": image})
    assert 0.0 <= scored["x"].score <= 1.0 and method.name == "winclipplus"


def test_missing_weights_say_how_to_provide_them():
    with pytest.raises(WeightsUnavailableError, match="checkpoint file path"):
        load_clip("ViT-B-16-plus-240", "laion400m_e31")


def test_harness_skips_winclip_without_weights_and_finishes_the_rest(tmp_path, tiny_model):
    from anomalyvfm.benchmark import BenchmarkConfig, run_benchmark
    from anomalyvfm.methods import create_method
    from anomalyvfm.methods.zeroshot import AnomalyVFMMethod
    from conftest import fake_mvtec

    fake_mvtec(tmp_path / "data" / "toyset", "a")
    cfg = BenchmarkConfig(data=str(tmp_path / "data"), out=str(tmp_path / "out"),
                          methods=("winclip", "anomalyvfm"))

    def factory(name):
        return AnomalyVFMMethod(tiny_model, resolution=56) if name == "anomalyvfm" else create_method(name)

    parts = run_benchmark(cfg, factory)
    assert [p["row"]["method"] for p in parts] == ["anomalyvfm"]
    assert any(w.startswith("winclip: skipped: weights unavailable") for w in cfg.warnings)


def test_a_benchmark_that_measures_nothing_fails_and_says_why_once(tmp_path, capsys, monkeypatch):
    """Every method skipped (CLIP weights not to be had offline): exit 1, not 0 with an empty table; the weights
    lookup's own retry log (about ten lines per file) is not shown, only the one skip warning, on stderr (it was on
    stdout, inside the summary table a user redirects to a file)."""
    import logging

    import open_clip

    from anomalyvfm.cli import main
    from conftest import fake_mvtec

    def offline(*args, **kwargs):
        logging.getLogger("huggingface_hub").warning("Retrying in 1s [Retry 1/5].")
        raise RuntimeError("Failed to download weights")

    monkeypatch.setattr(open_clip, "create_model", offline)
    fake_mvtec(tmp_path / "data" / "toyset", "a")
    assert main(["benchmark", "--data", str(tmp_path / "data"), "--methods", "winclip", "--out",
                 str(tmp_path / "out")]) == 1
    out, err = capsys.readouterr()
    assert "Retrying" not in out + err and "warning" not in out
    assert err.count("warning: winclip: skipped: weights unavailable") == 1
