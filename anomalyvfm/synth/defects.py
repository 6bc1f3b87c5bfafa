"""Defect families with exact masks. Each takes (rng, image, foreground, donor) and returns the defect's source
pattern P (uint8 RGB, full size), its mask M in [0, 1] and whether it is a geometric change (applied directly).
Blending follows A = (1−M)⊙I + (1−δ)(M⊙I) + δ(M⊙P) with a random opacity δ."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .noise import perlin_mask


def _random_point(rng, fg: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(fg)
    if len(ys) == 0:
        return int(rng.integers(fg.shape[0])), int(rng.integers(fg.shape[1]))
    i = int(rng.integers(len(ys)))
    return int(ys[i]), int(xs[i])


def _shade(image: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    return np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def scratch(rng, image, fg, donor):
    """Thin curved (optionally branching) scratches or cracks, darker or brighter than the surface."""
    size = image.shape[0]
    mask = np.zeros(image.shape[:2], np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        y, x = _random_point(rng, fg)
        angle = rng.uniform(0, 2 * np.pi)
        pts = [(x, y)]
        for _ in range(int(rng.integers(4, 14))):
            angle += rng.normal(0, 0.35)
            step = rng.uniform(0.01, 0.05) * size
            x, y = x + step * np.cos(angle), y + step * np.sin(angle)
            pts.append((x, y))
            if rng.random() < 0.12:  # a branch
                bx, by = x + 0.05 * size * np.cos(angle + 1), y + 0.05 * size * np.sin(angle + 1)
                cv2.line(mask, (int(x), int(y)), (int(bx), int(by)), 1, 1, cv2.LINE_AA)
        cv2.polylines(mask, [np.array(pts, np.int32)], False, 1, int(rng.integers(1, max(2, size // 100) + 1)),
                      cv2.LINE_AA)
    factor = rng.choice([rng.uniform(0.2, 0.7), rng.uniform(1.3, 2.0)])
    return _shade(image, factor), mask.astype(np.float32)


def pit(rng, image, fg, donor):
    """Pits and holes: small dark discs with a bright rim."""
    size = image.shape[0]
    mask = np.zeros(image.shape[:2], np.float32)
    for _ in range(int(rng.integers(1, 5))):
        y, x = _random_point(rng, fg)
        cv2.circle(mask, (x, y), int(rng.uniform(0.008, 0.04) * size), 1.0, -1, cv2.LINE_AA)
    dark = _shade(image, rng.uniform(0.1, 0.6))
    return dark, mask


def stain(rng, image, fg, donor):
    """Stains and contamination: a soft blob of another colour."""
    mask = perlin_mask(rng, image.shape[0], (0.005, 0.08)) * fg
    colour = rng.uniform(0, 255, 3)
    tint = np.clip(image * rng.uniform(0.3, 0.8) + colour * rng.uniform(0.2, 0.7), 0, 255).astype(np.uint8)
    return tint, cv2.GaussianBlur(mask, (0, 0), 1.5) * (mask > 0)


def missing_material(rng, image, fg, donor):
    """Missing material (background or a dark void shows through) or extra material (a lump)."""
    mask = perlin_mask(rng, image.shape[0], (0.003, 0.04)) * fg
    if rng.random() < 0.5:
        return np.full_like(image, rng.uniform(0, 60)), mask
    return _shade(cv2.GaussianBlur(image, (0, 0), 3), rng.uniform(1.1, 1.5)), mask


def deformation(rng, image, fg, donor):
    """A local warp (dent or bulge): pixels displaced radially inside a disc."""
    size = image.shape[0]
    y0, x0 = _random_point(rng, fg)
    r = rng.uniform(0.04, 0.12) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - y0, xx - x0
    d = np.sqrt(dx ** 2 + dy ** 2)
    weight = np.clip(1 - d / r, 0, 1) ** 2
    strength = rng.uniform(0.3, 0.7) * rng.choice([-1, 1])
    shift = (weight * strength).astype(np.float32)
    warped = cv2.remap(image, xx + dx * shift, yy + dy * shift, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT)
    return warped, (weight > 0.05).astype(np.float32)


def appearance(rng, image, fg, donor):
    """Colour, gloss or blur change in a region: often low-contrast."""
    mask = perlin_mask(rng, image.shape[0], (0.01, 0.1)) * fg
    kind = rng.integers(3)
    if kind == 0:
        changed = _shade(image, rng.uniform(0.75, 1.3, 3))
    elif kind == 1:
        changed = np.clip(image.astype(np.float32) * 0.7 + 255 * 0.3 * rng.uniform(0.3, 1), 0, 255).astype(np.uint8)
    else:
        changed = cv2.GaussianBlur(image, (0, 0), rng.uniform(2, 5))
    return changed, mask


def texture_swap(rng, image, fg, donor):
    """DRAEM-style: a Perlin-shaped region filled with a texture from another family."""
    return donor, perlin_mask(rng, image.shape[0], (0.01, 0.12)) * fg


def cut_paste(rng, image, fg, donor):
    """A scar: a patch of the same image cut from elsewhere, rotated and pasted in a Perlin/rectangular shape."""
    size = image.shape[0]
    ph, pw = (int(rng.uniform(0.05, 0.2) * size) for _ in range(2))
    sy, sx = int(rng.integers(0, size - ph)), int(rng.integers(0, size - pw))
    patch = image[sy:sy + ph, sx:sx + pw]
    patch = np.rot90(patch, int(rng.integers(1, 4))).copy()
    y, x = _random_point(rng, fg)
    y, x = min(max(0, y - patch.shape[0] // 2), size - patch.shape[0]), min(max(0, x - patch.shape[1] // 2),
                                                                            size - patch.shape[1])
    source = image.copy()
    source[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    mask = np.zeros((size, size), np.float32)
    mask[y:y + patch.shape[0], x:x + patch.shape[1]] = 1.0
    return source, mask


DEFECTS: dict[str, Callable] = {
    "scratch": scratch, "pit": pit, "stain": stain, "missing_material": missing_material,
    "deformation": deformation, "appearance": appearance, "texture_swap": texture_swap, "cut_paste": cut_paste,
}


def blend(image: np.ndarray, source: np.ndarray, mask: np.ndarray, opacity: float) -> np.ndarray:
    """A = (1−M)⊙I + (1−δ)(M⊙I) + δ(M⊙P)."""
    m = mask[..., None].astype(np.float32)
    out = (1 - m) * image + (1 - opacity) * m * image + opacity * m * source
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
