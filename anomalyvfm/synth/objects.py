"""Procedural object scenes for normal images: shaded parts with edges, holes, threads and printed marks on
varied backgrounds, poses and lighting. Each returns the image and the object's foreground mask."""
from __future__ import annotations

import cv2
import numpy as np

from .noise import fractal_noise
from .textures import TEXTURES


def _background(rng, size: int) -> np.ndarray:
    name = rng.choice(["noise", "cast_metal", "woven", "stone"]) if rng.random() < 0.6 else None
    if name is None:
        return np.full((size, size, 3), rng.uniform(0, 255, 3), np.uint8)
    return TEXTURES[name](rng, size, rng.random() < 0.5)


def _shading(rng, size: int, mask: np.ndarray) -> np.ndarray:
    """Directional light on a rounded surface: brightness from the distance to the edge and a light gradient."""
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    height = np.sqrt(dist / (dist.max() + 1e-6))
    gy, gx = np.gradient(height)
    angle = rng.uniform(0, 2 * np.pi)
    light = 0.6 + 0.4 * np.clip(-(gx * np.cos(angle) + gy * np.sin(angle)) * size / 8, -1, 1)
    return (light * (0.8 + 0.2 * height)).astype(np.float32)


def _part_mask(rng, size: int, centre: tuple[int, int] | None = None, radius: int | None = None) -> np.ndarray:
    """A part outline at a random pose: disc, rounded rectangle, polygon, screw-like cylinder, gear, hexagon nut,
    L-bracket or a plate with tabs."""
    mask = np.zeros((size, size), np.uint8)
    c = centre or (int(size / 2 + rng.uniform(-0.1, 0.1) * size), int(size / 2 + rng.uniform(-0.1, 0.1) * size))
    r = radius or int(size * rng.uniform(0.22, 0.4))
    kind = rng.integers(8)
    if kind == 0:
        cv2.circle(mask, c, r, 1, -1, cv2.LINE_AA)
    elif kind == 1:
        w, h = int(r * rng.uniform(0.9, 1.3)), int(r * rng.uniform(0.5, 1.0))
        box = cv2.boxPoints(((c[0], c[1]), (2 * w, 2 * h), float(rng.uniform(0, 180)))).astype(np.int32)
        cv2.fillPoly(mask, [box], 1, cv2.LINE_AA)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)))
    elif kind == 2:
        n = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        pts = np.stack([c[0] + r * np.cos(angles), c[1] + r * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(mask, [cv2.convexHull(pts)], 1, cv2.LINE_AA)
    elif kind == 3:
        w = int(r * rng.uniform(0.25, 0.45))
        box = cv2.boxPoints(((c[0], c[1]), (2 * w, 2 * r), float(rng.uniform(0, 180)))).astype(np.int32)
        cv2.fillPoly(mask, [box], 1, cv2.LINE_AA)
    elif kind in (4, 5):  # gear (teeth on a disc) or hexagon nut
        n = int(rng.integers(8, 20)) if kind == 4 else 6
        phase = rng.uniform(0, 2 * np.pi)
        angles = phase + np.linspace(0, 2 * np.pi, 4 * n if kind == 4 else n, endpoint=False)
        radii = r * (np.where((np.arange(len(angles)) // 2) % 2 == 0, 1.0, 0.82) if kind == 4 else 1.0)
        pts = np.stack([c[0] + radii * np.cos(angles), c[1] + radii * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1, cv2.LINE_AA)
    else:  # L-bracket or a plate with tabs: unions of rotated boxes
        angle = float(rng.uniform(0, 180))
        rot = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), angle, 1.0)
        w = int(r * rng.uniform(0.25, 0.4))
        boxes = [(c[0] - r, c[1] - w, c[0] + r, c[1] + w), (c[0] - r, c[1] - r, c[0] - r + 2 * w, c[1] + w)] \
            if kind == 6 else [(c[0] - r, c[1] - r // 2, c[0] + r, c[1] + r // 2),
                               (c[0] - w // 2, c[1] - r, c[0] + w // 2, c[1] + r)]
        for x0, y0, x1, y1 in boxes:
            cv2.rectangle(mask, (x0, y0), (x1, y1), 1, -1)
        mask = cv2.warpAffine(mask, rot, (size, size), flags=cv2.INTER_NEAREST)
    if not mask.any():  # a thin outline can vanish at a small radius: a plain disc instead
        cv2.circle(mask, c, r, 1, -1)
    return mask


def part(rng: np.random.Generator, size: int, colour: bool, mask: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """A shaded part on a background, with optional holes, threads and a printed mark (``mask``: its outline,
    default one random part)."""
    img = _background(rng, size).astype(np.float32)
    single = mask is None
    mask = _part_mask(rng, size) if single else mask
    surface = TEXTURES[rng.choice(["cast_metal", "brushed_metal", "noise"])](rng, size, colour).astype(np.float32)
    tint = rng.uniform(0.4, 1.2)
    ys, xs = np.nonzero(mask)
    cy, cx = int(ys.mean()), int(xs.mean())
    if single and rng.random() < 0.5:  # a hole (or a ring)
        hole = max(3, int(np.sqrt(mask.sum() / np.pi) * rng.uniform(0.15, 0.45)))
        cv2.circle(mask, (cx, cy), hole, 0, -1, cv2.LINE_AA)
    if rng.random() < 0.3:  # thread: periodic ridges across the part
        yy, xx = np.mgrid[0:size, 0:size]
        angle = rng.uniform(0, np.pi)
        ridges = 0.85 + 0.15 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / rng.uniform(4, 10))
        surface *= ridges[..., None]
    body = surface * tint * _shading(rng, size, mask)[..., None]
    if single and rng.random() < 0.4:  # a printed or engraved mark
        text = "".join(chr(int(rng.integers(48, 58))) for _ in range(int(rng.integers(2, 5))))
        ink = np.zeros((size, size), np.uint8)
        cv2.putText(ink, text, (cx - size // 10, cy + size // 30), cv2.FONT_HERSHEY_SIMPLEX, size / 400, 255,
                    max(1, size // 200), cv2.LINE_AA)
        alpha = (ink.astype(np.float32) / 255.0)[..., None]
        body = (1 - alpha) * body + alpha * rng.uniform(0, 255, 3).astype(np.float32)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)[..., None]
    shadow = cv2.GaussianBlur(np.roll(mask, (size // 40, size // 40), (0, 1)).astype(np.float32), (0, 0), size / 60)
    img *= (1 - 0.35 * shadow)[..., None]
    img = soft * body + (1 - soft) * img
    light = 0.85 + 0.3 * fractal_noise(rng, size, 2, 2)  # uneven illumination
    return np.clip(img * light[..., None], 0, 255).astype(np.uint8), mask.astype(bool)


def scene(rng: np.random.Generator, size: int, colour: bool) -> tuple[np.ndarray, np.ndarray]:
    """Several copies of one small part on a tray: a row, a grid or a loose ring of 2–9 components (the normals
    that logical anomalies — a missing, extra, moved or turned component — need)."""
    n_side = int(rng.integers(2, 4))
    layout = rng.integers(3)
    step = size / (n_side + 0.6)
    if layout == 0:  # grid
        centres = [(int((i + 0.8) * step), int((j + 0.8) * step)) for i in range(n_side) for j in range(n_side)]
    elif layout == 1:  # a row
        n = int(rng.integers(2, 6))
        step = size / (n + 0.6)
        centres = [(int((i + 0.8) * step), size // 2) for i in range(n)]
    else:  # a ring
        n = int(rng.integers(3, 8))
        angles = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, n, endpoint=False)
        centres = [(int(size / 2 + 0.32 * size * np.cos(a)), int(size / 2 + 0.32 * size * np.sin(a))) for a in angles]
        step = 2 * np.pi * 0.32 * size / n
    radius = max(4, int(step * rng.uniform(0.25, 0.4)))
    template = _part_mask(np.random.default_rng(rng.integers(2 ** 32)), size, (size // 2, size // 2), radius)
    mask = np.zeros((size, size), np.uint8)
    for cx, cy in centres:
        shifted = np.roll(template, (cy - size // 2, cx - size // 2), axis=(0, 1))
        mask |= shifted
    return part(rng, size, colour, mask)
