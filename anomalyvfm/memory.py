"""Nearest-neighbour search in a memory of L2-normalised patch features (AnomalyDINO's distance)."""
from __future__ import annotations

import torch


def nearest_distance(feats: torch.Tensor, memory: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Cosine distance (N,) of each row of ``feats`` (N, D) to its nearest row of ``memory`` (M, D); both
    L2-normalised. The memory is searched in chunks so that N × M never has to fit at once."""
    memory = memory.to(feats.device, feats.dtype)
    best = torch.full((feats.shape[0],), -1.0, device=feats.device, dtype=feats.dtype)
    for start in range(0, memory.shape[0], chunk):
        best = torch.maximum(best, (feats @ memory[start:start + chunk].T).max(dim=1).values)
    return 1.0 - best
