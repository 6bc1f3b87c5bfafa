"""Mask refinement the AnomalyVFM way: keep only the masked pixels where the backbone sees a difference between
the good and the defective image; a defect the backbone cannot see is not asked of the model."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def refine_masks(features, good: torch.Tensor, bad: torch.Tensor, masks: torch.Tensor,
                 threshold: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """``features(x) -> (B, C, h, w)`` patch features; ``good``/``bad`` normalised images (B, 3, H, W); ``masks``
    (B, 1, H, W) in [0, 1]. Returns the refined masks and a bool (B,) telling which pairs still have a defect.
    A pixel stays when the cosine distance between the good and bad features at its patch exceeds ``threshold``."""
    fg, fb = features(good), features(bad)
    distance = 1.0 - F.cosine_similarity(fg, fb, dim=1, eps=1e-6).unsqueeze(1)
    distance = F.interpolate(distance, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    refined = masks * (distance > threshold)
    return refined, refined.flatten(1).amax(1) > 0
