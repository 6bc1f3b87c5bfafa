import subprocess
import sys

import numpy as np
import pytest
import torch

from anomalyvfm import AnomalyVFM, AnomalyVFMConfig, BackboneMismatchError, DecoderConfig
from anomalyvfm.checkpoint import ADAPTER_NAME, HEADS_NAME


def _x(n=2, res=56):
    return torch.randn(n, 3, res, res, generator=torch.Generator().manual_seed(1))


def test_forward_shapes_upsample_the_patch_grid(tiny_model):
    out = tiny_model(_x(res=56))
    assert out.mask_logits.shape == out.confidence_logits.shape == (2, 1, 8, 8)  # 4x4 patches, 2x upsampled
    assert out.image_logits.shape == (2,)


def test_multi_layer_fusion_and_larger_upsampling(tiny_backbone_dir):
    cfg = AnomalyVFMConfig(backbone=str(tiny_backbone_dir), decoder=DecoderConfig(layers=(0, -1), upsample=4))
    model = AnomalyVFM(cfg).eval()
    assert model.decoder.stem[0][0].in_channels == 64
    assert model(_x()).mask_logits.shape == (2, 1, 16, 16)


@pytest.mark.parametrize("kind", ["cls", "topk", "fused"])
def test_image_scores_are_probabilities_by_the_chosen_rule(tiny_model, kind):
    tiny_model.config.image_score = kind
    out = tiny_model(_x())
    scores, maps = tiny_model.scores(out, 56)
    score = scores[kind]
    assert maps.shape == (2, 56, 56) and ((0 <= score) & (score <= 1)).all() and score.dtype == torch.float64
    cls = torch.sigmoid(out.image_logits.double())
    topk = maps.flatten(1).topk(10).values.mean(1).double()
    expected = {"cls": cls, "topk": topk, "fused": (cls + topk) / 2}[kind]
    assert torch.allclose(score, expected)


def test_merged_adapters_give_the_same_outputs(tiny_model):
    with torch.no_grad():
        for name, p in tiny_model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # make the adapters non-trivial
        x = _x()
        unmerged = tiny_model(x).mask_logits
        tiny_model.prepare_for_inference()
        merged = tiny_model(x).mask_logits
        tiny_model.train()
        restored = tiny_model(x).mask_logits
    assert torch.allclose(unmerged, merged, atol=1e-4) and torch.allclose(unmerged, restored, atol=1e-4)


def test_save_holds_only_trained_weights_in_safetensors(tiny_model, tmp_path):
    from safetensors.torch import load_file

    folder = tiny_model.save_pretrained(tmp_path / "ckpt")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["adapter_config.json", ADAPTER_NAME, "config.json", HEADS_NAME]
    adapters = load_file(folder / ADAPTER_NAME)
    assert adapters and all("lora_" in k for k in adapters)
    heads = load_file(folder / HEADS_NAME)
    assert all(k.startswith(("decoder.", "image_head.")) for k in heads)


def test_round_trip_in_a_fresh_process_gives_identical_outputs(tiny_model, tmp_path):
    with torch.no_grad():
        for name, p in tiny_model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    folder = tiny_model.save_pretrained(tmp_path / "ckpt")
    x = _x()
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.no_grad():
        expected = tiny_model(x).mask_logits.numpy()
    script = (f"import numpy as np, torch; from anomalyvfm import AnomalyVFM;"
              f"m = AnomalyVFM.from_pretrained({str(folder)!r});"
              f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}));"
              f"np.save({str(tmp_path / 'y.npy')!r}, m(x).mask_logits.detach().numpy())")
    subprocess.run([sys.executable, "-c", script], check=True)
    assert np.allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)


def test_update_config_changes_a_saved_checkpoint_and_refuses_what_the_config_would(tiny_checkpoint):
    from anomalyvfm.checkpoint import CONFIG_NAME, update_config, weights_sha256

    sha, before = weights_sha256(tiny_checkpoint), (tiny_checkpoint / CONFIG_NAME).read_bytes()
    update_config(tiny_checkpoint, map_smoothing=5, batch_fusion={"max_weight": 0.5})
    loaded = AnomalyVFM.from_pretrained(tiny_checkpoint)
    assert loaded.config.map_smoothing == 5 and loaded.config.batch_fusion == {"max_weight": 0.5}
    assert weights_sha256(tiny_checkpoint) == sha
    written = (tiny_checkpoint / CONFIG_NAME).read_bytes()
    for bad in ({"map_smoothing": 4}, {"no_such_field": 1}):
        with pytest.raises(ValueError):
            update_config(tiny_checkpoint, **bad)
        assert (tiny_checkpoint / CONFIG_NAME).read_bytes() == written != before  # nothing half-written


def test_loading_on_a_different_backbone_is_refused(tiny_checkpoint):
    from conftest import tiny_dinov2

    other = tiny_dinov2()
    with torch.no_grad():
        other.layernorm.weight.add_(1.0)
    with pytest.raises(BackboneMismatchError, match="fingerprint"):
        AnomalyVFM.from_pretrained(tiny_checkpoint, backbone=other)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="median"):
        AnomalyVFMConfig(image_score="median")
    with pytest.raises(ValueError, match="3"):
        DecoderConfig(upsample=3)
    with pytest.raises(ValueError, match="odd"):
        AnomalyVFMConfig(map_smoothing=4)


def test_map_smoothing_averages_the_decoder_grid_before_upsampling():
    """The published 5x5 mean filter: a lone hot cell is spread over its window, a flat map stays flat."""
    from anomalyvfm.config import AnomalyVFMConfig
    from anomalyvfm.model import ModelOutput
    from anomalyvfm.scoring import score_outputs

    def maps(logits, smoothing):
        out = ModelOutput(logits, logits, torch.zeros(1), None, torch.zeros(1))
        return score_outputs(out, 64, AnomalyVFMConfig(image_score="topk", top_k=1, map_smoothing=smoothing))[1]

    logits = torch.full((1, 1, 16, 16), -4.0)
    logits[0, 0, 8, 8] = 4.0
    raw, smooth = maps(logits, 0), maps(logits, 5)
    low, high = torch.sigmoid(torch.tensor(-4.0)), torch.sigmoid(torch.tensor(4.0))
    assert torch.isclose(smooth.max(), (24 * low + high) / 25, atol=1e-3)  # one hot cell among 25
    assert raw.max() > 0.8 and smooth.max() < 0.1
    flat_map = maps(torch.full((1, 1, 16, 16), 1.0), 5)
    assert torch.allclose(flat_map, torch.sigmoid(torch.tensor(1.0)))  # borders are not darkened by padding


@pytest.mark.parametrize("name", ["mirror", "flips", "turns", "diagonals", "d4"])
def test_test_views_score_an_image_and_its_symmetric_views_alike(tiny_model, name):
    """Under a set of test views an image and any of its views in that set get the same scores and maps turned the
    same way; in a single pass they do not (a random model has no symmetry), so the test fails if the average or a
    map's way back were wrong."""
    from anomalyvfm.tta import TEST_VIEWS, apply_view

    torch.manual_seed(1)
    x = torch.randn(2, 3, 56, 56)
    assert TEST_VIEWS[name][0] == TEST_VIEWS["single"][0]  # the first view is the image: its memory tokens are kept
    plain = tiny_model.infer(x, 56)
    tiny_model.config.test_views = name
    scores, maps = tiny_model.infer(x, 56)
    assert not torch.allclose(scores["cls"], plain[0]["cls"], atol=1e-6)
    for view in TEST_VIEWS[name][1:]:
        tiny_model.config.test_views = "single"
        seen = tiny_model.infer(apply_view(x, view), 56)
        assert not torch.allclose(plain[0]["cls"], seen[0]["cls"], atol=1e-6)
        tiny_model.config.test_views = name
        view_scores, view_maps = tiny_model.infer(apply_view(x, view), 56)
        for rule in scores:
            torch.testing.assert_close(scores[rule], view_scores[rule], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(apply_view(maps, view), view_maps, atol=1e-6, rtol=1e-5)


def test_a_checkpoint_saved_with_flip_average_loads_as_the_mirror_set():
    from anomalyvfm.config import AnomalyVFMConfig

    assert AnomalyVFMConfig.from_dict({"flip_average": True}).test_views == "mirror"
    assert AnomalyVFMConfig.from_dict({"flip_average": False}).test_views == "single"
    assert AnomalyVFMConfig.from_dict({"flip_average": True, "test_views": "d4"}).test_views == "d4"
    with pytest.raises(ValueError, match="test_views"):
        AnomalyVFMConfig(test_views="rot")


def test_a_run_records_its_test_views(tiny_model, tmp_path):
    import json

    image = np.random.default_rng(0).integers(0, 255, (56, 56, 3), dtype=np.uint8)
    for flip in (False, True):
        tiny_model.config.test_views = "mirror" if flip else "single"
        single = tiny_model.predict([image], resolution=56, out=tmp_path / str(flip))[0].score
        recorded = json.loads((tmp_path / str(flip) / "run.json").read_text())["test_views"]
        assert recorded == tiny_model.config.test_views
        if flip:  # and the recorded setting is the one that scored
            assert single != plain_score
        plain_score = single


def test_shifted_views_move_the_content_by_map_cells_and_come_back():
    """A shifted view moves the content by whole map cells (``cell`` pixels each) before its mirror and turn, and
    ``undo_view`` puts a map computed on it back in place: exact away from the edge the shift uncovers."""
    from anomalyvfm.tta import TEST_VIEWS, View, apply_view, undo_view

    x = torch.arange(2 * 3 * 56 * 56, dtype=torch.float32).reshape(2, 3, 56, 56)
    down = apply_view(x, View(shift=(1, 0)), cell=7)
    torch.testing.assert_close(down[..., 7:, :], x[..., :-7, :])  # seven pixels down, none sideways
    torch.testing.assert_close(down[..., :7, :], x[..., 1:8, :].flip(-2))  # the uncovered edge is mirrored in
    grid = torch.randn(2, 1, 8, 8)  # a map at cell resolution: cell = 1
    for view in TEST_VIEWS["shifted-flips"]:
        back = undo_view(apply_view(grid, view), view)
        rows, cols = view.shift
        torch.testing.assert_close(back[..., :8 - rows, :8 - cols], grid[..., :8 - rows, :8 - cols])
    assert len({v.shift for v in TEST_VIEWS["shifted-flips"]}) == 4  # each view at its own half-patch phase


def test_shifted_views_feed_the_model_content_shifted_by_half_a_patch(tiny_model):
    """The model's shifted views move the input by patch_size // upsample pixels (one cell of its map), so their
    average is not the plain flips' average, and a patch size that the upsampling does not divide is refused."""
    from anomalyvfm.tta import TEST_VIEWS, apply_view, undo_view

    torch.manual_seed(2)
    x = torch.randn(2, 3, 56, 56)
    tiny_model.config.test_views = "shifted-flips"
    out = tiny_model.outputs(x)
    cell = tiny_model.patch_size // tiny_model.config.decoder.upsample
    tiny_model.config.test_views = "single"
    parts = [tiny_model(apply_view(x, v, cell)) for v in TEST_VIEWS["shifted-flips"]]
    expected = torch.stack([undo_view(p.mask_logits, v) for p, v in zip(parts, TEST_VIEWS["shifted-flips"])]).mean(0)
    torch.testing.assert_close(out.mask_logits, expected)
    torch.testing.assert_close(out.image_logits, torch.stack([p.image_logits for p in parts]).mean(0))
    tiny_model.config.test_views = "flips"
    assert not torch.allclose(tiny_model.outputs(x).image_logits, out.image_logits, atol=1e-6)
    tiny_model.config.decoder.upsample, tiny_model.config.test_views = 64, "shifted-flips"
    with pytest.raises(ValueError, match="multiple of decoder.upsample"):
        tiny_model.outputs(x)


def test_edge_pad_mirrors_a_border_in_and_crops_every_output_back(tiny_backbone_dir):
    """With ``edge_pad`` the backbone sees the input with a mirrored border of that many patches; the maps and
    tokens are the padded pass's, cropped back to the input's own cells; the image head reads the cropped map."""
    from anomalyvfm import AnomalyVFM, AnomalyVFMConfig
    from anomalyvfm.features import extract

    torch.manual_seed(0)
    model = AnomalyVFM(AnomalyVFMConfig(backbone=str(tiny_backbone_dir), top_k=10,
                                        decoder={"image_head": "cls+map"})).eval()
    torch.manual_seed(3)
    x = torch.randn(2, 3, 56, 56)
    seen = []
    hook = model.backbone.register_forward_pre_hook(lambda m, a, k: seen.append(k["pixel_values"].shape[-1]),
                                                    with_kwargs=True)
    with torch.no_grad():
        plain = model(x)
        model.config.edge_pad = 1
        padded = model.outputs(x)
        whole = model(torch.nn.functional.pad(x, (14,) * 4, mode="reflect"))  # the padded input, nothing cropped
    hook.remove()
    assert seen == [56, 84, 84]  # one patch (14 px) of border on each side
    cut = model.config.decoder.upsample
    assert padded.mask_logits.shape == plain.mask_logits.shape and padded.patch_tokens.shape == plain.patch_tokens.shape
    torch.testing.assert_close(padded.mask_logits, whole.mask_logits[..., cut:-cut, cut:-cut])
    torch.testing.assert_close(padded.confidence_logits, whole.confidence_logits[..., cut:-cut, cut:-cut])
    inner = whole.patch_tokens.reshape(2, 6, 6, -1)[:, 1:5, 1:5].reshape(2, 16, -1)
    torch.testing.assert_close(padded.patch_tokens, inner)
    with torch.no_grad():  # the head reads the padded pass's CLS token and the cropped map's statistics
        cls = extract(model.backbone, torch.nn.functional.pad(x, (14,) * 4, mode="reflect")).cls
        torch.testing.assert_close(padded.image_logits, model.image_head(cls, padded.mask_logits))
    assert not torch.allclose(padded.image_logits, whole.image_logits)
    assert not torch.allclose(padded.mask_logits, plain.mask_logits)
    with pytest.raises(ValueError, match="edge_pad"):
        AnomalyVFMConfig(edge_pad=-1)
