import pytest

from anomalyvfm import AdapterConfig, AnomalyVFM, AnomalyVFMConfig
from anomalyvfm.lora import apply_lora, count_wrapped_per_layer
from conftest import tiny_dinov2


def test_every_layer_gets_query_value_and_output_adapters():
    model = apply_lora(tiny_dinov2(num_hidden_layers=3), AdapterConfig())
    assert count_wrapped_per_layer(model, 3) == [3, 3, 3]


def test_custom_targets_and_dora():
    model = apply_lora(tiny_dinov2(), AdapterConfig(targets=("query", "key", "fc1", "fc2"), use_dora=True))
    assert count_wrapped_per_layer(model, 2) == [4, 4]
    assert any("lora_magnitude_vector" in n for n, _ in model.named_parameters())


def test_only_adapters_decoder_and_head_train(tiny_model):
    trainable = [n for n, _ in tiny_model.trainable_parameters()]
    assert trainable
    assert all("lora_" in n or n.startswith(("decoder.", "image_head.")) for n in trainable)
    assert any("lora_" in n for n in trainable)
    assert any(n.startswith("decoder.") for n in trainable) and any(n.startswith("image_head.") for n in trainable)


def test_bad_adapter_config_names_the_value():
    with pytest.raises(ValueError, match="bogus"):
        AdapterConfig(targets=("bogus",))
    with pytest.raises(ValueError, match="0"):
        AdapterConfig(rank=0)


@pytest.mark.integration
def test_embedded_backbone_has_adapters_in_all_twelve_layers():
    model = AnomalyVFM(AnomalyVFMConfig())
    assert count_wrapped_per_layer(model.backbone, 12) == [3] * 12


# transformers up to 5.17 names a layer's projections attention.attention.{query,key,value} and
# attention.output.dense; 5.24 names them attention.{q,k,v,o}_proj. Checkpoints must load under either.
_OLDER = {".attention.q_proj.": ".attention.attention.query.", ".attention.k_proj.": ".attention.attention.key.",
          ".attention.v_proj.": ".attention.attention.value.", ".attention.o_proj.": ".attention.output.dense."}


def _older_names(key: str) -> str:
    for new, old in _OLDER.items():
        key = key.replace(new, old)
    return key


def _trained_adapters(model):
    import torch

    with torch.no_grad():  # LoRA's B starts at zero: give every adapter weights whose loss would show
        for name, p in model.backbone.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    return model


def test_adapters_saved_under_the_older_projection_names_load_the_same(tiny_model, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from anomalyvfm.checkpoint import ADAPTER_NAME, update_config, weights_sha256

    folder = _trained_adapters(tiny_model).save_pretrained(tmp_path / "ckpt")
    stored = load_file(folder / ADAPTER_NAME)
    assert stored and all(".attention.attention." not in k and ".output.dense." not in k for k in stored)
    save_file({_older_names(k): v for k, v in stored.items()}, folder / ADAPTER_NAME)
    assert set(load_file(folder / ADAPTER_NAME)) != set(stored)
    update_config(folder, weights_sha256=weights_sha256(folder))
    x = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        expected, found = tiny_model(x).mask_logits, AnomalyVFM.from_pretrained(folder).eval()(x).mask_logits
    assert torch.allclose(expected, found, atol=1e-6)


def test_adapters_that_do_not_fit_are_refused_naming_the_file(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    from anomalyvfm.checkpoint import ADAPTER_NAME, update_config, weights_sha256

    folder = tiny_model.save_pretrained(tmp_path / "ckpt")
    stored = load_file(folder / ADAPTER_NAME)
    save_file(dict(list(stored.items())[1:]), folder / ADAPTER_NAME)  # one adapter tensor lost
    update_config(folder, weights_sha256=weights_sha256(folder))
    with pytest.raises(ValueError, match="adapters do not fit"):
        AnomalyVFM.from_pretrained(folder)


def test_the_backbone_fingerprint_does_not_depend_on_the_projection_names():
    import torch
    from torch import nn

    from anomalyvfm.backbones import weights_fingerprint

    class Named(nn.Module):
        def __init__(self, tensors):
            super().__init__()
            self.tensors = tensors

        def state_dict(self, *args, **kwargs):
            return self.tensors

    tensors = {"encoder.layer.0.attention.q_proj.weight": torch.ones(2), "encoder.layer.0.mlp.fc1.weight": torch.zeros(3)}
    older = {_older_names(k): v for k, v in tensors.items()}
    assert set(older) != set(tensors)
    assert weights_fingerprint(Named(older)) == weights_fingerprint(Named(tensors))
