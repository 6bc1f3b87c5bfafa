"""The convolutional decoder (mask and confidence logits per pixel) and the image head on the CLS token (and,
optionally, statistics of the decoder's own map)."""
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


MAP_STATS = 4  # max, top-1% mean, mean and std of the mask logits


def map_statistics(mask_logits: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) mask logits -> (B, 4) pooled statistics, detached (the image loss does not reshape the map),
    scaled by 1/10 to sit near the normalised CLS features."""
    flat = mask_logits.detach().flatten(1)
    top = flat.topk(max(1, flat.shape[1] // 100), dim=1).values.mean(1)
    return torch.stack([flat.amax(1), top, flat.mean(1), flat.std(1)], dim=1) / 10.0


class ImageHead(nn.Module):
    """CLS token (B, C) [+ map statistics (B, 4)] -> image anomaly logit (B,)."""

    def __init__(self, hidden: int, map_stats: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.map_stats = map_stats
        self.fc = nn.Linear(hidden + (MAP_STATS if map_stats else 0), 1)

    def forward(self, cls_token: torch.Tensor, mask_logits: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(cls_token)
        if self.map_stats:
            x = torch.cat([x, map_statistics(mask_logits)], dim=1)
        return self.fc(x).squeeze(-1)
