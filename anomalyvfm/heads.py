"""The convolutional decoder (mask and confidence logits per pixel) and the image head on the CLS token."""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import DecoderConfig


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(8, cout), nn.GELU())


class Decoder(nn.Module):
    """Patch grid (B, C, h, w) -> mask and confidence logits (B, 1, h·u, w·u), u = ``cfg.upsample``."""

    def __init__(self, in_channels: int, cfg: DecoderConfig):
        super().__init__()
        width = cfg.channels
        self.stem = nn.Sequential(_conv_block(in_channels, width), _conv_block(width, width))
        stages = []
        for _ in range(int(math.log2(cfg.upsample))):
            out = max(width // 2, 32)
            stages.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                        _conv_block(width, out)))
            width = out
        self.up = nn.Sequential(*stages)
        self.mask = nn.Conv2d(width, 1, 1)
        self.confidence = nn.Conv2d(width, 1, 1)

    def forward(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.up(self.stem(grid))
        return self.mask(x), self.confidence(x)


class ImageHead(nn.Module):
    """CLS token (B, C) -> image anomaly logit (B,)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, cls_token: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(cls_token)).squeeze(-1)
