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
