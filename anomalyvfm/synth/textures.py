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


_SUBSTRATES = ((24, 70, 30), (20, 40, 90), (110, 20, 20), (15, 15, 15), (200, 200, 190))  # solder-mask colours
_METALS = ((200, 130, 60), (215, 180, 90), (190, 190, 195))  # copper, gold, tin


def circuit(rng, size, colour):
    """Printed or etched layouts (circuit boards, photomasks, flex circuits): traces routed at 0/45/90 degrees
    ending in pads and vias, rows of component pads; binarised (two levels) or metal on a solder mask. Not
    periodic: a layout is normal without repeating."""
    big = 2 * size  # drawn at twice the size, then reduced, so edges are antialiased
    field = np.zeros((big, big), np.uint8)
    width = max(2, int(big * rng.uniform(0.012, 0.035)))
    pitch = max(width * 2, int(width * rng.uniform(2.5, 4.5)))
    steps = [(1, 0), (0, 1), (-1, 0), (0, -1)] + ([(1, 1), (1, -1), (-1, 1), (-1, -1)] if rng.random() < 0.6 else [])
    for _ in range(int(rng.integers(1, 4)) if rng.random() < 0.6 else 0):  # rows of component pads
        n, horizontal = int(rng.integers(3, 12)), bool(rng.random() < 0.5)
        x0, y0 = (int(v) for v in rng.integers(0, big - pitch * n // 2, 2))
        pad = (int(width * rng.uniform(0.8, 1.6)), int(width * rng.uniform(1.5, 3.0)))
        for i in range(n):
            x, y = (x0 + i * pitch, y0) if horizontal else (x0, y0 + i * pitch)
            w, h = pad if horizontal else pad[::-1]
            cv2.rectangle(field, (x - w, y - h), (x + w, y + h), 255, -1)
            cv2.line(field, (x, y), (x + (0 if horizontal else 4 * pitch), y + (4 * pitch if horizontal else 0)),
                     255, width)
    for _ in range(int(rng.integers(8, 30))):  # traces
        x, y = (int(v) // pitch * pitch for v in rng.integers(0, big, 2))
        points = [(x, y)]
        for _ in range(int(rng.integers(1, 5))):
            dx, dy = steps[int(rng.integers(len(steps)))]
            length = int(rng.uniform(0.05, 0.4) * big) // pitch * pitch + pitch
            x, y = x + dx * length, y + dy * length
            points.append((x, y))
        cv2.polylines(field, [np.array(points, np.int32)], False, 255, width)
        for px, py in (points[0], points[-1]):
            r = int(width * rng.uniform(1.0, 2.0))
            if rng.random() < 0.4:
                cv2.circle(field, (px, py), r, 255, -1)
                cv2.circle(field, (px, py), max(1, r // 2), 0, -1)  # a via: a ring round its drill hole
            elif rng.random() < 0.5:
                cv2.circle(field, (px, py), r, 255, -1)
            else:
                cv2.rectangle(field, (px - r, py - r), (px + r, py + r), 255, -1)
    mask = cv2.resize(field, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    if rng.random() < 0.4 or not colour:  # binarised: two flat levels, light on dark or dark on light
        lo, hi = sorted(rng.uniform(0, 255, 2))
        lo, hi = (0.0, 255.0) if rng.random() < 0.5 or hi - lo < 80 else (lo, hi)
        if rng.random() < 0.5:
            lo, hi = hi, lo
        img = lo + (hi - lo) * mask + rng.normal(0, rng.uniform(0, 4), mask.shape)
        return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    substrate = np.array(_SUBSTRATES[int(rng.integers(len(_SUBSTRATES)))], np.float32)
    metal = np.array(_METALS[int(rng.integers(len(_METALS)))], np.float32)
    grain = 0.1 * (fractal_noise(rng, size, 4, 4)[..., None] - 0.5) * 255
    img = substrate * (1 - mask[..., None]) + metal * mask[..., None] + grain
    return np.clip(img, 0, 255).astype(np.uint8)


def _rotate(rng, img: np.ndarray) -> np.ndarray:
    """Rotate by a random angle, reflecting at the borders so no empty corners appear."""
    size = img.shape[0]
    m = cv2.getRotationMatrix2D((size / 2, size / 2), float(rng.uniform(0, 180)), 1.0)
    return cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT)


TEXTURES: dict[str, Callable[[np.random.Generator, int, bool], np.ndarray]] = {
    "noise": noise_field, "cellular": cellular, "woven": woven, "brushed_metal": brushed_metal,
    "cast_metal": cast_metal, "wood": wood, "stone": stone, "printed": printed, "grid_mesh": grid_mesh,
    "photo": photo, "circuit": circuit,
}
# The generator's default normals. "photo" is opt-in (SynthConfig(textures=tuple(TEXTURES))): on the validation split
# a v2 continuation with photographs scored lower than one without (benchmarks/results/ablations-v3). "circuit"
# is opt-in so that the validation pairs (default families) stay the same draw for every checkpoint compared.
DEFAULT_TEXTURES: tuple[str, ...] = tuple(t for t in TEXTURES if t not in ("photo", "circuit"))
