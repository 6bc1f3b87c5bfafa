"""Image and pixel metrics: AUROC, AP, F1-max and AUPRO up to a false-positive rate (0.3 by default).

All of them come from one descending sort of the scores: the cumulative true/false positives at each distinct
threshold give ROC, precision/recall, and (with per-region pixel weights) the PRO curve. AUROC and AP follow
scikit-learn's definitions exactly (trapezoidal ROC area; AP = Σ (Rₙ − Rₙ₋₁) Pₙ)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

NAN = float("nan")


@dataclass
class _Curve:
    tps: np.ndarray  # true positives at each distinct threshold, descending thresholds
    fps: np.ndarray
    order: np.ndarray  # the sort order of the scores
    last: np.ndarray  # index (into the sorted arrays) of the last element of each distinct-score group


def _curve(labels: np.ndarray, scores: np.ndarray) -> _Curve:
    # Ties are grouped below, so the order inside a group of equal scores does not matter: no stable sort needed.
    order = np.argsort(scores)[::-1]
    s = scores[order]
    y = labels[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last]
    return _Curve(tps, (last + 1) - tps, order, last)


def _auroc(c: _Curve) -> float:
    if c.tps[-1] == 0 or c.fps[-1] == 0:
        return NAN
    tpr = np.r_[0.0, c.tps / c.tps[-1]]
    fpr = np.r_[0.0, c.fps / c.fps[-1]]
    return float(np.trapezoid(tpr, fpr))


def _precision_recall(c: _Curve) -> tuple[np.ndarray, np.ndarray]:
    precision = c.tps / (c.tps + c.fps)
    recall = c.tps / c.tps[-1] if c.tps[-1] > 0 else np.zeros_like(c.tps)
    return precision, recall


def _ap(c: _Curve) -> float:
    if c.tps[-1] == 0:
        return NAN
    precision, recall = _precision_recall(c)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _f1max(c: _Curve) -> float:
    if c.tps[-1] == 0:
        return NAN
    precision, recall = _precision_recall(c)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    return float(f1.max())


def image_metrics(labels, scores) -> dict[str, float]:
    """I-AUROC, I-AP, I-F1max (0..1) of image scores against 0/1 labels."""
    c = _curve(np.asarray(labels), np.asarray(scores, dtype=np.float64))
    return {"I-AUROC": _auroc(c), "I-AP": _ap(c), "I-F1max": _f1max(c)}


def _region_weights(masks: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Per pixel: 1/|region| inside a connected defect region (8-connectivity), 0 outside; and the region count."""
    weights, regions = [], 0
    for mask in masks:
        n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        sizes = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
        inverse = np.zeros(n)
        inverse[1:] = 1.0 / np.maximum(sizes[1:], 1)
        weights.append(inverse[labels].ravel())
        regions += n - 1
    return np.concatenate(weights), regions


def _aupro(c: _Curve, weights: np.ndarray, regions: int, max_fpr: float) -> float:
    if regions == 0 or c.fps[-1] == 0:
        return NAN
    pro = np.r_[0.0, np.cumsum(weights[c.order])[c.last] / regions]
    fpr = np.r_[0.0, c.fps / c.fps[-1]]
    cut = np.searchsorted(fpr, max_fpr, side="right")  # first point beyond the limit
    xs, ys = fpr[:cut], pro[:cut]
    if cut < fpr.size and xs[-1] < max_fpr:
        x0, x1, y0, y1 = fpr[cut - 1], fpr[cut], pro[cut - 1], pro[cut]
        xs, ys = np.r_[xs, max_fpr], np.r_[ys, y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)]
    return float(np.trapezoid(ys, xs) / max_fpr)


def resize_pair(mask: np.ndarray, amap: np.ndarray, max_side: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Bring the map to the mask's size (the ground-truth resolution), or both to at most ``max_side``."""
    h, w = mask.shape
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
        mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    if amap.shape != (h, w):
        amap = cv2.resize(amap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return mask.astype(bool), amap


def pixel_metrics(masks: list[np.ndarray], maps: list[np.ndarray], max_fpr: float = 0.3,
                  max_side: int | None = None) -> dict[str, float]:
    """P-AUROC, P-AP, P-F1max and AUPRO@max_fpr (normalised to 0..1) over all pixels of all images.
    Maps are compared at each mask's own resolution unless ``max_side`` asks for a reduced one."""
    pairs = [resize_pair(m, a, max_side) for m, a in zip(masks, maps)]
    labels = np.concatenate([m.ravel() for m, _ in pairs])
    scores = np.concatenate([a.ravel() for _, a in pairs])
    c = _curve(labels, scores)
    weights, regions = _region_weights([m for m, _ in pairs])
    return {"P-AUROC": _auroc(c), "P-AP": _ap(c), "P-F1max": _f1max(c),
            f"AUPRO@{max_fpr:g}": _aupro(c, weights, regions, max_fpr)}
