"""Noise primitives shared by textures, objects and defect shapes (numpy + OpenCV, seeded by a Generator)."""
from __future__ import annotations

import cv2
import numpy as np


def fractal_noise(rng: np.random.Generator, size: int, octaves: int = 5, base: int = 4,
                  persistence: float = 0.5) -> np.ndarray:
    """Smooth value noise summed over octaves (Perlin-like), float32 in [0, 1], shape (size, size)."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base * 2 ** o
        if cells > size:
            break
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        out += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
    out /= total
    return normalise(out)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round to the nearest grey level and clip to [0, 255]."""
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo + 1e-8)).astype(np.float32)


def perlin_mask(rng: np.random.Generator, size: int, coverage: tuple[float, float] = (0.01, 0.15)) -> np.ndarray:
    """A blob-shaped binary region from thresholded fractal noise (DRAEM-style), covering about ``coverage``."""
    noise = fractal_noise(rng, size, octaves=int(rng.integers(2, 5)), base=int(rng.choice([2, 4, 8])))
    target = rng.uniform(*coverage)
    mask = noise > np.quantile(noise, 1.0 - target)
    n, labels = cv2.connectedComponents(mask.astype(np.uint8))
    if n > 2:  # keep one or two connected blobs so the defect is localised
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.argsort(sizes)[::-1][: int(rng.integers(1, 3))] + 1
        mask = np.isin(labels, keep)
    return mask.astype(np.float32)


def colourise(rng: np.random.Generator, grey: np.ndarray, colour: bool) -> np.ndarray:
    """Map a [0, 1] field to uint8 RGB: between two random colours, or a grey ramp with random contrast."""
    if colour:
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    else:
        lo, hi = sorted(rng.uniform(0, 255, 2))
        if hi - lo < 40:
            lo, hi = max(0.0, lo - 30), min(255.0, hi + 30)
        a, b = np.full(3, lo), np.full(3, hi)
    rgb = a[None, None] + grey[..., None] * (b - a)[None, None]
    return np.clip(rgb, 0, 255).astype(np.uint8)
