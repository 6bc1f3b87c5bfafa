"""Imaging conditions: what a camera does to a good part and its defective twin alike.

Each condition is a function ``(rng, shape) -> apply`` that draws its parameters once and returns a function
applying the same change to any uint8 RGB image of that shape, so a pair stays a pair: the only difference
between the two images is still the defect. Real good parts differ from clean procedural ones by uneven light,
sensor noise, defocus and compression; a model that never saw those learns to flag them."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .noise import fractal_noise, to_uint8

Apply = Callable[[np.ndarray], np.ndarray]


def uneven_light(rng: np.random.Generator, shape: tuple[int, ...]) -> Apply:
    """A smooth multiplicative light field: a linear ramp, a vignette or a soft blob, 0.6-1.4 of the light."""
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = int(rng.integers(3))
    if kind == 0:
        angle = rng.uniform(0, 2 * np.pi)
        field = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5)) * 2
    elif kind == 1:
        field = -((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * 4 + 0.5
    else:
        field = fractal_noise(rng, max(h, w), octaves=2, base=2)[:h, :w] * 2 - 1
    field = 1 + rng.uniform(0.1, 0.4) * field.astype(np.float32)
    return lambda image: to_uint8(image * field[..., None])


def exposure(rng: np.random.Generator, shape: tuple[int, ...]) -> Apply:
    """Gain, offset and gamma of the whole image."""
    gamma, gain, offset = rng.uniform(0.7, 1.4), rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    table = to_uint8(255 * (np.arange(256) / 255.0) ** gamma * gain + offset)
    return lambda image: table[image]


def sensor_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> Apply:
    """Gaussian pixel noise, one realisation for both images of the pair."""
    noise = rng.normal(0, rng.uniform(2, 8), shape[:2]).astype(np.float32)[..., None]
    return lambda image: to_uint8(image + noise)


def defocus(rng: np.random.Generator, shape: tuple[int, ...]) -> Apply:
    """A Gaussian blur of 0.5-1.5 px."""
    sigma = rng.uniform(0.5, 1.5)
    return lambda image: cv2.GaussianBlur(image, (0, 0), sigma)


def compression(rng: np.random.Generator, shape: tuple[int, ...]) -> Apply:
    """A JPEG round trip at quality 30-90."""
    quality = int(rng.integers(30, 91))

    def apply(image: np.ndarray) -> np.ndarray:
        _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED).reshape(image.shape)

    return apply


CONDITIONS: dict[str, Callable[[np.random.Generator, tuple[int, ...]], Apply]] = {
    "uneven_light": uneven_light, "exposure": exposure, "sensor_noise": sensor_noise, "defocus": defocus,
    "compression": compression,
}


def imaging(rng: np.random.Generator, shape: tuple[int, ...], names: tuple[str, ...] = tuple(CONDITIONS),
            most: int = 3) -> tuple[Apply, list[str]]:
    """One to ``most`` conditions drawn from ``names`` (in table order), as one function, and their names."""
    chosen = sorted(rng.choice(len(names), size=int(rng.integers(1, min(most, len(names)) + 1)), replace=False))
    steps = [(names[i], CONDITIONS[names[i]](rng, shape)) for i in chosen]

    def apply(image: np.ndarray) -> np.ndarray:
        for _, step in steps:
            image = step(image)
        return image

    return apply, [name for name, _ in steps]
