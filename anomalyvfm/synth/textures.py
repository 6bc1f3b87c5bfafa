"""Procedural texture families for normal images: each a function (rng, size, colour) -> uint8 RGB."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .noise import colourise, fractal_noise, normalise


def noise_field(rng, size, colour):
    return colourise(rng, fractal_noise(rng, size, octaves=int(rng.integers(3, 7)), base=int(rng.choice([2, 4, 8]))),
                     colour)


def cellular(rng, size, colour):
    """Voronoi cells: distance to the nearest of random seeds, optionally with cell-wise shading."""
    n = int(rng.integers(20, 200))
    pts = rng.random((n, 2)) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = np.full((size, size), np.inf, np.float32)
    idx = np.zeros((size, size), np.int32)
    for i, (py, px) in enumerate(pts):
        di = (yy - py) ** 2 + (xx - px) ** 2
        closer = di < d
        d[closer], idx[closer] = di[closer], i
    field = normalise(np.sqrt(d))
    if rng.random() < 0.5:
        field = 0.5 * field + 0.5 * rng.random(n).astype(np.float32)[idx]
    return colourise(rng, field, colour)


def woven(rng, size, colour):
    """Over-under threads of a fabric with slight irregularity."""
    period = int(rng.integers(6, 24))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    jitter = fractal_noise(rng, size, 3, 4) * rng.uniform(0, 3)
    warp = 0.5 + 0.5 * np.sin(2 * np.pi * (xx + jitter) / period)
    weft = 0.5 + 0.5 * np.sin(2 * np.pi * (yy + jitter) / period)
    checker = ((xx // period + yy // period) % 2).astype(np.float32)
    field = checker * warp + (1 - checker) * weft
    field = 0.8 * field + 0.2 * fractal_noise(rng, size, 6, 16)
    return _rotate(rng, colourise(rng, field, colour))


def brushed_metal(rng, size, colour):
    """Fine parallel streaks: noise blurred strongly along one direction."""
    base = rng.random((size, size)).astype(np.float32)
    k = int(rng.integers(15, 61))
    streaks = cv2.blur(base, (k, 1))
    field = normalise(0.7 * streaks + 0.3 * fractal_noise(rng, size, 3, 2))
    return _rotate(rng, colourise(rng, field, colour and rng.random() < 0.3))


def cast_metal(rng, size, colour):
    """Grainy cast/sand-blasted surface with soft large-scale variation."""
    grain = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), rng.uniform(0.6, 1.5))
    field = normalise(0.6 * normalise(grain) + 0.4 * fractal_noise(rng, size, 3, 2))
    return colourise(rng, field, colour and rng.random() < 0.3)


def wood(rng, size, colour):
    """Growth rings distorted by noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy, cx = rng.uniform(-1, 2, 2)
    r = np.sqrt((yy - cy) ** 2 * rng.uniform(0.05, 1) + (xx - cx) ** 2)
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (r * rng.uniform(8, 30) + 2 * fractal_noise(rng, size, 4, 2)))
    field = 0.75 * rings + 0.25 * cv2.blur(rng.random((size, size)).astype(np.float32), (1, 25))
    return colourise(rng, normalise(field), colour)


def stone(rng, size, colour):
    """Granular stone: speckles of several sizes over a mottled base."""
    field = 0.5 * fractal_noise(rng, size, 5, 4)
    for s in (0.8, 2.0, 4.0):
        speck = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), s)
        field += rng.uniform(0.1, 0.5) * (normalise(speck) > rng.uniform(0.6, 0.8))
    return colourise(rng, normalise(field), colour)


def printed(rng, size, colour):
    """Regular printed pattern: dots, stripes or characters-like marks on a flat background."""
    img = np.zeros((size, size), np.uint8)
    period = int(rng.integers(12, 48))
    kind = rng.integers(3)
    for y in range(period // 2, size, period):
        for x in range(period // 2, size, period):
            if kind == 0:
                cv2.circle(img, (x, y), max(2, period // 4), 255, -1, cv2.LINE_AA)
            elif kind == 1:
                cv2.putText(img, chr(int(rng.integers(65, 91))), (x - period // 4, y + period // 4),
                            cv2.FONT_HERSHEY_SIMPLEX, period / 40, 255, 1, cv2.LINE_AA)
            else:
                cv2.rectangle(img, (x - period // 4, y - period // 8), (x + period // 4, y + period // 8), 255, -1)
    img = 0.85 * img.astype(np.float32) / 255.0 + 0.15 * fractal_noise(rng, size, 4, 4)
    return _rotate(rng, colourise(rng, normalise(img), colour))


def grid_mesh(rng, size, colour):
    """Grids, meshes and perforated sheets."""
    period = int(rng.integers(8, 40))
    width = max(1, int(period * rng.uniform(0.1, 0.4)))
    yy, xx = np.mgrid[0:size, 0:size]
    if rng.random() < 0.5:
        field = ((yy % period < width) | (xx % period < width)).astype(np.float32)
    else:
        field = ((((yy % period) - period / 2) ** 2 + ((xx % period) - period / 2) ** 2) < (period / 3) ** 2)
        field = field.astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), 0.7) * 0.85 + 0.15 * fractal_noise(rng, size, 4, 4)
    return _rotate(rng, colourise(rng, normalise(field), colour))


PHOTOS = Path(__file__).with_name("photos")  # CC0 / public-domain photographs (see photos/SOURCES.md)


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    files = sorted(PHOTOS.glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"no photographs in {PHOTOS}: the package data is missing (reinstall anomalyvfm)")
    return tuple(cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in files)


def photo(rng, size, colour):
    """A random crop of a real photograph (a quarter to all of its shorter side), flipped or turned by quarter turns;
    grey unless ``colour``. Natural clutter that is normal, so salient structure alone is not a defect."""
    photos = _photos()
    img = photos[int(rng.integers(len(photos)))]
    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(0.25, 1.0))
    y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    crop = cv2.resize(img[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
    crop = np.rot90(crop, int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if not colour:
        crop = np.repeat(cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    return np.ascontiguousarray(crop)


def _rotate(rng, img: np.ndarray) -> np.ndarray:
    """Rotate by a random angle, reflecting at the borders so no empty corners appear."""
    size = img.shape[0]
    m = cv2.getRotationMatrix2D((size / 2, size / 2), float(rng.uniform(0, 180)), 1.0)
    return cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT)


TEXTURES: dict[str, Callable[[np.random.Generator, int, bool], np.ndarray]] = {
    "noise": noise_field, "cellular": cellular, "woven": woven, "brushed_metal": brushed_metal,
    "cast_metal": cast_metal, "wood": wood, "stone": stone, "printed": printed, "grid_mesh": grid_mesh,
    "photo": photo,
}
# The generator's default normals. "photo" is opt-in (SynthConfig(textures=tuple(TEXTURES))): on the validation split
# a v2 continuation with photographs scored lower than one without (benchmarks/results/ablations-v3).
DEFAULT_TEXTURES: tuple[str, ...] = tuple(t for t in TEXTURES if t != "photo")
