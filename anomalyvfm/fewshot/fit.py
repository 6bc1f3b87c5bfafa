"""Stage 2 of few-shot fitting: the good images' adapted patch features as a memory bank, and what goes with it
(kNN scale, score statistics, fusion weight, image-score rule), chosen on the held-out synthetic pairs, each pair
scored against the memory without the image it was made from."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..memory import MemoryBank, nearest_distance
from ..metrics import image_metrics, pixel_metrics
from ..model import AnomalyVFM
from ..profile import ProfileState
from ..scoring import MODEL_RULE, topk_mean
from .config import FinetuneConfig
from .views import forward_all


@dataclass
class MemoryFit:
    state: ProfileState  # memory, fusion weight, kNN scale and score statistics (no calibration yet)
    image_score: str  # the rule the profile decides by
    held_out: dict[str, float]  # held-out pixel AUROC per fusion weight and image AUROC per rule


def _good_patches(model: AnomalyVFM, images: list[np.ndarray], golden: bool, batch_size: int,
                  device) -> MemoryBank:
    """Golden: the reference image's patch grid. Otherwise per good image its patch tokens and those of its
    horizontal and vertical flips, (3·h·w, D) each."""
    if golden:
        return MemoryBank.from_images([forward_all(model, np.stack(images[:1]), batch_size, device).patch_tokens[0]],
                                      golden=True)
    views = np.stack([v for im in images for v in (im, im[:, ::-1], im[::-1])])
    tokens = forward_all(model, np.ascontiguousarray(views), batch_size, device).patch_tokens
    return MemoryBank.from_images([tokens[3 * i:3 * i + 3].reshape(-1, tokens.shape[-1]) for i in range(len(images))])


STAT_FLOORS = {"cls": 0.5, "knn": 0.05}  # least spread of each part, so that a few alike views cannot blow it up


def view_statistics(logits: torch.Tensor, knn_score: torch.Tensor) -> dict[str, tuple[float, float]]:
    """(mean, std) of the good views' image-head logits ("cls") and kNN scores ("knn"), each std at least its
    ``STAT_FLOORS``: what the ``memory`` rule standardises the two parts by."""
    return {name: (float(v.mean()), max(float(v.std()), STAT_FLOORS[name]))
            for name, v in (("cls", logits), ("knn", knn_score))}


def fit_memory(model: AnomalyVFM, images: list[np.ndarray], held, cfg: FinetuneConfig, res: int) -> MemoryFit:
    """Build the memory bank; choose ``knn_scale`` and ``score_stats`` from the held-out good views, the fusion
    weight by pixel AUROC on the held-out pairs, and the image-score rule (``cfg.image_score``, or the best on the
    held-out pairs)."""
    device = model.device
    bank = _good_patches(model, images, cfg.golden, cfg.batch_size, device)
    views, masks, labels, origin, _ = held
    if len(images) == 1 or cfg.golden:
        origin = [0] * len(origin)
    out = forward_all(model, views, cfg.batch_size, device, scored=True)
    knn = torch.cat([bank.leave_one_out(origin[j]).distance_map(out.patch_tokens[j:j + 1], res)
                     for j in range(len(views))])
    good = labels == 0
    scale = max(2.0 * float(knn[good].flatten(1).quantile(0.99, dim=1).mean()), 1e-3)
    knn = knn / scale
    knn_score = topk_mean(knn, model.config.top_k)
    stats = view_statistics(out.image_logits[good], knn_score[good])
    maps = torch.sigmoid(torch.nn.functional.interpolate(out.mask_logits, size=(res, res), mode="bilinear",
                                                         align_corners=False)[:, 0])
    truth = [m > 127 for m in masks]
    pixel = {w: pixel_metrics(truth, list(((1 - w) * maps + w * knn.clamp(0, 1)).numpy()), 0.3, max_side=64)["P-AUROC"]
             for w in cfg.fusion_weights}
    weight = float(max(pixel, key=pixel.get))  # ties: the smaller w
    state = ProfileState(memory=bank, fusion_weight=weight, knn_scale=scale, score_stats=stats)
    rules: dict[str, list[float]] = {}
    for j in range(len(views)):
        loo = replace(state, memory=bank.leave_one_out(origin[j]))
        for rule, value in model.scores(out.select(j), res, loo)[0].items():
            rules.setdefault(rule, []).append(float(value))
    y = labels.astype(int).tolist()
    held_auroc = {r: image_metrics(y, v)["I-AUROC"] for r, v in rules.items() if r != MODEL_RULE}
    held_out = {f"P-AUROC@{w:g}": round(float(v), 4) for w, v in pixel.items()}
    held_out.update({f"I-AUROC[{r}]": round(float(v), 4) for r, v in held_auroc.items()})
    return MemoryFit(state, cfg.image_score or max(held_auroc, key=held_auroc.get), held_out)


def defect_patches(model: AnomalyVFM, real: list[tuple[np.ndarray, np.ndarray | None]], good: MemoryBank,
                   batch_size: int) -> torch.Tensor:
    """Patch tokens of the known defects: where a mask covers at least a quarter of a patch, or, for an image
    without a mask, its 2% of patches farthest from the good memory (at least one)."""
    tokens = forward_all(model, np.stack([image for image, _ in real]), batch_size, model.device).patch_tokens
    side = math.isqrt(tokens.shape[1])
    picked = []
    for (_, mask), t in zip(real, tokens):
        if mask is not None:
            cover = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(mask).float()[None, None] / 255, side)
            keep = cover.flatten() >= 0.25
        else:
            dist = nearest_distance(t, good.good)
            keep = torch.zeros_like(dist, dtype=torch.bool)
            keep[dist.topk(max(1, round(0.02 * len(dist)))).indices] = True
        picked.append(t[keep.to(t.device)])
    return torch.cat(picked)
