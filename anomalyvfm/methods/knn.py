"""AnomalyDINO (Damm et al., WACV 2025): DINOv2 patch features, cosine nearest neighbour against the k good
references, image score = mean of the top 1% patch distances; optional foreground masking and rotation
augmentation of the references."""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..backbones import load_backbone
from ..config import IMAGENET_MEAN, IMAGENET_STD
from ..features import extract, patch_size
from ..memory import MemoryBank
from ..preprocess import normalize, resize_square
from .base import Method, Scored


@dataclass
class KNNConfig:
    backbone: str = "embedded"  # backbone spec, see anomalyvfm.backbones
    resolution: int = 448  # square input side (AnomalyDINO's default 448)
    top_percent: float = 1.0  # image score = mean of the top q% patch distances
    rotations: bool = False  # add the references rotated by 90°, 180°, 270° to the memory
    masking: bool = False  # ignore background patches (first principal component of the reference features)
    sigma: float = 4.0  # Gaussian smoothing of the full-size map, in pixels
    batch_size: int = 8


class KNN(Method):
    name = "knn"

    def __init__(self, config: KNNConfig | None = None, backbone: torch.nn.Module | None = None):
        self.config = config = config or KNNConfig()
        self.resolution = config.resolution
        self.backbone = (backbone if backbone is not None else load_backbone(config.backbone)).eval()
        self.grid = config.resolution // patch_size(self.backbone)
        self._cache: dict[tuple[str, int], torch.Tensor] = {}
        self._cost: dict[tuple[str, int], float] = {}  # seconds each cached feature map took to compute
        self.memory: MemoryBank | None = None
        self.pc: torch.Tensor | None = None  # (mean, direction) of the foreground principal component

    @torch.inference_mode()
    def features(self, images: dict[str, np.ndarray], rotation: int = 0) -> dict[str, torch.Tensor]:
        """L2-normalised last-layer patch tokens (grid², D) per image, cached by (id, rotation)."""
        todo = [k for k in images if (k, rotation) not in self._cache]
        self.reused_seconds = sum(self._cost[(k, rotation)] for k in images if (k, rotation) in self._cache)
        res = self.config.resolution
        for start in range(0, len(todo), self.config.batch_size):
            tic = time.perf_counter()
            keys = todo[start:start + self.config.batch_size]
            crops = [resize_square(images[k], res) for k in keys]
            crops = [np.ascontiguousarray(np.rot90(c, rotation)) for c in crops]
            x = normalize(np.stack(crops), IMAGENET_MEAN, IMAGENET_STD).to(next(self.backbone.parameters()).device)
            for k, t in zip(keys, F.normalize(extract(self.backbone, x).last, dim=-1).cpu()):
                self._cache[(k, rotation)] = t.clone()
                self._cost[(k, rotation)] = (time.perf_counter() - tic) / len(keys)
        return {k: self._cache[(k, rotation)] for k in images}

    def clear_cache(self) -> None:
        self._cache.clear()
        self._cost.clear()

    def fit(self, references: dict[str, np.ndarray]) -> None:
        if not references:
            raise ValueError("knn needs at least one good reference image (k >= 1)")
        rotations = (0, 1, 2, 3) if self.config.rotations else (0,)
        feats = [f for r in rotations for f in self.features(references, r).values()]
        if self.config.masking:
            self.pc = _principal_component(torch.stack(feats[: len(references)]), self.grid)
            feats = [f[self._foreground(f)] for f in feats]
        self.memory = MemoryBank(torch.cat(feats))

    def _foreground(self, feats: torch.Tensor) -> torch.Tensor:
        mean, direction = self.pc
        mask = ((feats - mean) @ direction > 0).reshape(self.grid, self.grid).numpy().astype(np.uint8)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
        return torch.from_numpy(mask.ravel().astype(bool))

    @torch.inference_mode()
    def distances(self, feats: torch.Tensor) -> torch.Tensor:
        """Cosine distance of each patch (N, D) to its nearest neighbour in the memory."""
        return self.memory.distances(feats[None])[0]

    def score(self, images: dict[str, np.ndarray]) -> dict[str, Scored]:
        if self.memory is None:
            raise RuntimeError("call fit() with the reference images before score()")
        out = {}
        for key, feats in self.features(images).items():
            dist = self.distances(feats)
            if self.config.masking:
                dist = dist * self._foreground(feats)
            k = max(1, int(round(dist.numel() * self.config.top_percent / 100)))
            score = float(dist.topk(k).values.mean())
            h, w = images[key].shape[:2]
            amap = cv2.resize(dist.reshape(self.grid, self.grid).numpy(), (w, h), interpolation=cv2.INTER_LINEAR)
            if self.config.sigma > 0:
                amap = cv2.GaussianBlur(amap, (0, 0), self.config.sigma)
            out[key] = Scored(score, amap.astype(np.float32))
        return out


def _principal_component(feats: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and first principal direction of the reference patches, signed so that the central patches (where
    the object usually is) project positive."""
    flat = feats.reshape(-1, feats.shape[-1])
    mean = flat.mean(0)
    _, _, v = torch.pca_lowrank(flat - mean, q=1, center=False)
    direction = v[:, 0]
    centre = feats.reshape(feats.shape[0], grid, grid, -1)[:, grid // 4: 3 * grid // 4, grid // 4: 3 * grid // 4]
    if ((centre.reshape(-1, feats.shape[-1]) - mean) @ direction).mean() < 0:
        direction = -direction
    return mean, direction
