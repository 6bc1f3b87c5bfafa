"""Self-similarity scoring of one image: is a patch unlike the rest of its own image?

Industrial images repeat themselves: a texture, a cell's grid of fingers, a board's traces. A defect is rare within
its image, so a patch's distance to its nearest patches *of the same image* scores it without any good reference
or batch (the single-image counterpart of ``anomalyvfm.mutual``, which compares a patch with other images). Per
layer and neighbourhood degree the tokens are aggregated as MuSc does (``mutual.aggregate``: layer norm over the
grid, r×r average, L2 norm); a patch's score is the mean Euclidean distance to its ``nearest`` fraction of closest
patches outside its own (2·``exclude`` + 1)² neighbourhood; scores are averaged over layers and degrees.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from .config import SelfSimilarityConfig
from .mutual import aggregate

__all__ = ["SelfSimilarityConfig", "self_distances", "self_map"]


@lru_cache(maxsize=8)
def _excluded(side: int, exclude: int) -> torch.Tensor:
    """(P, P) True where two patches of a side × side grid lie within ``exclude`` of each other (Chebyshev); built
    once per grid size, not on every batch. Read-only: callers must not modify it."""
    i, j = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    i, j = i.flatten(), j.flatten()
    return torch.maximum((i[:, None] - i[None]).abs(), (j[:, None] - j[None]).abs()) <= exclude


def self_distances(z: torch.Tensor, side: int, nearest: float, exclude: int = 0) -> torch.Tensor:
    """(B, side², D) L2-normalised patch features of square grids -> (B, side²): per patch, the mean distance to its
    ``nearest`` fraction of closest other patches of the same image."""
    p = side * side
    sim = (z @ z.transpose(1, 2)).masked_fill(_excluded(side, exclude).to(z.device), -2.0)
    dist = (2.0 - 2.0 * sim.float()).clamp_min(0.0).sqrt()
    return dist.topk(max(1, int(nearest * p)), dim=2, largest=False).values.mean(2)


def self_map(layer_tokens: list[torch.Tensor], cfg: SelfSimilarityConfig, side: int | None = None) -> torch.Tensor:
    """Patch tokens of ``cfg.layers`` (one (B, side², D) tensor each) -> (B, side, side) self-similarity scores.
    ``side``: the grid's side (default: √P; pass it where the shape is traced, as in ONNX export)."""
    side = math.isqrt(layer_tokens[0].shape[1]) if side is None else side
    total = sum(self_distances(aggregate(t, r, side), side, cfg.nearest, cfg.exclude)
                for t in layer_tokens for r in cfg.radii)
    return (total / (len(layer_tokens) * len(cfg.radii))).view(-1, side, side)
