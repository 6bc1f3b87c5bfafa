"""timm's DINOv2 ViTs as an alternative weight provider, converted into a Hugging Face ``Dinov2Model``."""
from __future__ import annotations

import torch
from torch import nn

from .errors import BackboneNotFoundError


def _hf_config(vit: nn.Module):
    from transformers import Dinov2Config

    dim = vit.embed_dim
    block = vit.blocks[0]
    return Dinov2Config(
        hidden_size=dim,
        num_hidden_layers=len(vit.blocks),
        num_attention_heads=block.attn.num_heads,
        mlp_ratio=block.mlp.fc1.out_features // dim,
        patch_size=vit.patch_embed.patch_size[0],
        image_size=vit.patch_embed.img_size[0],
        layer_norm_eps=vit.norm.eps,
        use_mask_token=False,
    )


def timm_to_hf(vit: nn.Module) -> nn.Module:
    """Copy a timm ``VisionTransformer`` with DINOv2 layout (fused qkv, layer scale, class-token position) into a
    ``Dinov2Model``. Register tokens and SwiGLU variants are refused."""
    from transformers import Dinov2Model

    if getattr(vit, "num_reg_tokens", 0) or getattr(vit, "no_embed_class", False):
        raise ValueError("timm DINOv2 with registers is not supported; use the Hugging Face *-with-registers-* id")
    src = vit.state_dict()
    dim = vit.embed_dim
    state = {
        "embeddings.cls_token": src["cls_token"],
        "embeddings.position_embeddings": src["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": src["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": src["patch_embed.proj.bias"],
        "layernorm.weight": src["norm.weight"],
        "layernorm.bias": src["norm.bias"],
    }
    for i in range(len(vit.blocks)):
        b, h = f"blocks.{i}.", f"encoder.layer.{i}."
        for part in ("weight", "bias"):
            q, k, v = src[b + f"attn.qkv.{part}"].split(dim)
            state.update({h + f"attention.q_proj.{part}": q, h + f"attention.k_proj.{part}": k,
                          h + f"attention.v_proj.{part}": v,
                          h + f"attention.o_proj.{part}": src[b + f"attn.proj.{part}"]})
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                state[h + f"{name}.{part}"] = src[b + f"{name}.{part}"]
        state[h + "layer_scale1.lambda1"] = src[b + "ls1.gamma"]
        state[h + "layer_scale2.lambda1"] = src[b + "ls2.gamma"]
    model = Dinov2Model(_hf_config(vit))
    model.load_state_dict(state, strict=True)
    return model


def load_timm_dinov2(name: str, *, pretrained: bool = True) -> nn.Module:
    import timm

    if "dinov2" not in name:
        raise ValueError(f"timm model {name!r} is not a DINOv2 ViT (expected e.g. vit_small_patch14_dinov2.lvd142m)")
    try:
        overlay = {}
        if pretrained:  # the safetensors file only, fetched by us: timm never unpickles a checkpoint here
            from huggingface_hub import hf_hub_download

            overlay = {"file": hf_hub_download(f"timm/{name}", "model.safetensors")}
        vit = timm.create_model(name, pretrained=pretrained, num_classes=0, pretrained_cfg_overlay=overlay or None)
    except (OSError, RuntimeError) as e:
        raise BackboneNotFoundError(f"cannot load timm backbone {name!r} offline; download it where there is network and pass "
                      "the Hugging Face folder instead") from e
    with torch.no_grad():
        return timm_to_hf(vit)
