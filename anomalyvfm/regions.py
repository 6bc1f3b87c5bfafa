"""Anomalous regions of a map: the binary mask a verdict stands on, and its connected components.

The mask is the map above the pixel threshold. A flagged image whose map peaks under that threshold would get an
empty mask, a verdict with nowhere to look; so for a flagged image the threshold is lowered to ``relative`` × the
map's peak where that is lower (half the peak by default, the usual full width at half maximum), which always keeps
the region around the peak. A normal image keeps the plain threshold.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RELATIVE = 0.5  # a flagged image's mask holds at least the pixels above this fraction of its map's peak


@dataclass
class Region:
    """One connected component of the mask (8-connectivity); boxes are (x0, y0, x1, y1), end exclusive."""

    box: tuple[int, int, int, int]
    area: int  # pixels
    area_pct: float  # % of the image
    peak: float  # highest map value inside
    mean: float  # mean map value inside

    def to_dict(self) -> dict:
        d = asdict(self)
        d["box"] = list(self.box)
        return d


def mask_threshold(anomaly_map: np.ndarray, pixel_threshold: float, flagged: bool,
                   relative: float = RELATIVE) -> float:
    """The map value above which a pixel is in the mask (see the module docstring)."""
    if not flagged or anomaly_map.size == 0:
        return float(pixel_threshold)
    peak = float(np.nanmax(anomaly_map))
    return float(min(pixel_threshold, relative * peak)) if peak > 0 else float(pixel_threshold)


def verdict_mask(anomaly_map: np.ndarray, pixel_threshold: float, flagged: bool,
                 relative: float = RELATIVE) -> np.ndarray:
    """Boolean mask of ``anomaly_map``: never empty for a flagged image with a positive peak."""
    t = mask_threshold(anomaly_map, pixel_threshold, flagged, relative)
    mask = anomaly_map > t
    if flagged and not mask.any() and anomaly_map.size:  # a flat map: its peak pixel(s)
        mask = anomaly_map >= np.nanmax(anomaly_map)
    return mask


def find_regions(mask: np.ndarray, anomaly_map: np.ndarray, limit: int | None = None) -> list[Region]:
    """Connected components of ``mask``, strongest (highest peak) first, then largest, each with its box, area and
    peak / mean map value. Strongest first because the first region listed is where a person looks: on magnetic_tile
    (the validation category) it overlapped the defect in 85.9% of flagged defective images, the largest in 67.9%
    (BENCHMARKS.md, "Do flagged images' regions point at the defect?")."""
    import cv2

    if mask is None or not mask.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    total = float(mask.size)
    regions = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        values = anomaly_map[y:y + h, x:x + w][labels[y:y + h, x:x + w] == i]
        regions.append(Region((x, y, x + w, y + h), area, round(100.0 * area / total, 3),
                              round(float(values.max()), 6), round(float(values.mean()), 6)))
    regions.sort(key=lambda r: (-r.peak, -r.area))
    return regions[:limit] if limit else regions
