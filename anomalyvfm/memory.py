"""Memory banks of L2-normalised patch features and the one nearest-neighbour search the package uses
(AnomalyDINO's cosine distance): the kNN baseline, a profile's good-image memory with its known defects, and the
golden reference's position-wise neighbourhood all go through ``MemoryBank.distances``."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


def nearest_distance(feats: torch.Tensor, memory: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Cosine distance (N,) of each row of ``feats`` (N, D) to its nearest row of ``memory`` (M, D); both
    L2-normalised. The memory is searched in chunks so that N × M never has to fit at once."""
    memory = memory.to(feats.device, feats.dtype)
    best = torch.full((feats.shape[0],), -1.0, device=feats.device, dtype=feats.dtype)
    for start in range(0, memory.shape[0], chunk):
        best = torch.maximum(best, (feats @ memory[start:start + chunk].T).max(dim=1).values)
    return 1.0 - best


def neighbourhood_distance(tokens: torch.Tensor, reference: torch.Tensor, side: int, radius: int = 1) -> torch.Tensor:
    """Cosine distance (B, side²) of each patch of ``tokens`` (B, side², D) to the most similar patch of
    ``reference`` (side², D) within ``radius`` patches of the same position; all L2-normalised."""
    d = reference.shape[-1]
    grid = reference.to(tokens.device, tokens.dtype).T.reshape(1, d, side, side)
    k = 2 * radius + 1
    neighbours = F.unfold(grid, k, padding=radius).view(d, k * k, side * side)  # zero-padded border: similarity 0
    sims = torch.einsum("bnd,dkn->bkn", tokens, neighbours)
    return 1.0 - sims.max(dim=1).values


@dataclass
class MemoryBank:
    """Patch features of good images (and optionally of known defects) to compare new patches with."""

    good: torch.Tensor  # (M, D) L2-normalised patch features of good images
    defects: torch.Tensor | None = None  # (P, D) patch features of known real defects
    golden: bool = False  # ``good`` is one aligned reference image's patch grid, compared position by position
    sizes: tuple[int, ...] | None = None  # rows of ``good`` per image, in order (what ``leave_one_out`` removes)

    @classmethod
    def from_images(cls, per_image: list[torch.Tensor], golden: bool = False) -> "MemoryBank":
        return cls(torch.cat(per_image), golden=golden, sizes=tuple(int(m.shape[0]) for m in per_image))

    def leave_one_out(self, i: int) -> "MemoryBank":
        """The bank without image i's rows (with a single image, the bank itself: nothing else is known)."""
        if self.sizes is None or len(self.sizes) < 2:
            return self
        start = sum(self.sizes[:i])
        keep = torch.cat([self.good[:start], self.good[start + self.sizes[i]:]])
        return replace(self, good=keep, sizes=self.sizes[:i] + self.sizes[i + 1:])

    def distances(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) cosine distance of each patch of ``tokens`` (B, N, D) to its nearest good patch (golden: within
        one patch of the same position). A patch nearer to a known defect than to any good one gains that
        difference: known defects stand out more, unseen ones are scored as before."""
        if self.golden:
            side = math.isqrt(int(tokens.shape[1]))
            if self.good.shape[0] != side * side:
                ref = math.isqrt(int(self.good.shape[0]))
                raise ValueError(f"the golden reference has a {ref}x{ref} patch grid but the input gives "
                                 f"{side}x{side}: predict at the profile's resolution")
            dist = neighbourhood_distance(tokens, self.good, side)
        else:
            flat = tokens.reshape(-1, tokens.shape[-1])  # one search for the whole batch: no per-image loop, so an
            dist = nearest_distance(flat, self.good).view(tokens.shape[:2])  # ONNX trace keeps its batch dynamic
        if self.defects is not None:
            bad = nearest_distance(tokens.reshape(-1, tokens.shape[-1]), self.defects).view(tokens.shape[:2])
            dist = dist + (dist - bad).clamp(min=0.0)
        return dist

    def distance_map(self, tokens: torch.Tensor, resolution: int) -> torch.Tensor:
        """(B, R, R) ``distances`` on the square patch grid, bilinearly resized to ``resolution``."""
        side = math.isqrt(int(tokens.shape[1]))
        dist = self.distances(tokens).view(-1, 1, side, side)
        return F.interpolate(dist, size=(resolution, resolution), mode="bilinear", align_corners=False)[:, 0]
