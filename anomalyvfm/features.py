"""The feature-extractor interface every backbone is used through: CLS and patch tokens of chosen layers.

A backbone is a Hugging Face DINOv2 (``Dinov2Model`` / ``Dinov2WithRegistersModel``), possibly wrapped by peft;
``anomalyvfm.backbones`` resolves a spec to one. Everything that reads tokens (the model's decoder and memory,
the kNN and mutual-scoring methods) goes through ``extract``, so a new backbone family needs only these few facts.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

@dataclass
class Features:
    cls: torch.Tensor  # (B, D) final-norm CLS token
    last: torch.Tensor  # (B, N, D) final-norm patch tokens of the last layer
    layers: list[torch.Tensor]  # (B, N, D) per requested layer, patch tokens normed by the final layer norm


def base_model(backbone: nn.Module) -> nn.Module:
    """The DINOv2 inside a peft wrapper (or the backbone itself)."""
    return backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone


def patch_size(backbone: nn.Module) -> int:
    return int(base_model(backbone).config.patch_size)


def hidden_size(backbone: nn.Module) -> int:
    return int(base_model(backbone).config.hidden_size)


def num_layers(backbone: nn.Module) -> int:
    return int(base_model(backbone).config.num_hidden_layers)


def num_prefix_tokens(backbone: nn.Module) -> int:
    """Tokens before the patch tokens: the CLS token plus any register tokens."""
    return 1 + int(getattr(base_model(backbone).config, "num_register_tokens", 0) or 0)


def extract(backbone: nn.Module, pixel_values: torch.Tensor, layers: tuple[int, ...] = (-1,)) -> Features:
    """CLS and patch tokens of ``layers`` (0-indexed transformer blocks; negative = from the end). ``(-1,)`` reads
    the last hidden state directly, without asking the backbone for every layer's output."""
    hidden = layers != (-1,)
    out = backbone(pixel_values=pixel_values, output_hidden_states=hidden)
    prefix = num_prefix_tokens(backbone)
    if hidden:
        norm = base_model(backbone).layernorm
        tokens = [norm(out.hidden_states[1:][i])[:, prefix:] for i in layers]
    else:
        tokens = [out.last_hidden_state[:, prefix:]]
    return Features(out.last_hidden_state[:, 0], out.last_hidden_state[:, prefix:], tokens)


def normalized_patches(features: Features) -> torch.Tensor:
    """(B, N, D) L2-normalised last-layer patch tokens: what the kNN memories compare."""
    return F.normalize(features.last, dim=-1)
