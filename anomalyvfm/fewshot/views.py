"""Training and calibration views made from a few good images: augmentations that keep a good image good,
(good, defective) pairs with synthetic or given real defects, and batched forward passes over many views."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..model import AnomalyVFM, ModelOutput
from ..preprocess import ImageInput, load, normalize, resize_square
from ..synth import SynthConfig
from ..synth.generator import defect_on


def augment(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray | None = None):
    """A view of a good image that is still good: flips, a small shift-and-zoom, brightness/contrast jitter. With a
    ``mask``, returns (view, mask moved the same way)."""
    import cv2

    out, m = image, mask
    for axis in (1, 0):
        if rng.random() < 0.5:
            out = np.flip(out, axis)
            m = None if m is None else np.flip(m, axis)
    size = out.shape[0]
    scale = rng.uniform(1.0, 1.12)
    dx, dy = rng.uniform(-0.04, 0.04, 2) * size
    matrix = np.array([[scale, 0, (1 - scale) * size / 2 + dx], [0, scale, (1 - scale) * size / 2 + dy]], np.float32)
    out = cv2.warpAffine(np.ascontiguousarray(out), matrix, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    gain, bias = rng.uniform(0.9, 1.1), rng.uniform(-10, 10)
    out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    if mask is None:
        return out
    return out, cv2.warpAffine(np.ascontiguousarray(m), matrix, (size, size), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT)


def make_pairs(rng: np.random.Generator, images: list[np.ndarray], n: int, synth: SynthConfig,
           sources: list[int] | None = None, real: list[tuple[np.ndarray, np.ndarray | None]] | None = None,
           real_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], np.ndarray]:
    """n (good view, defective view) pairs, interleaved: images (2n, R, R, 3), masks (2n, R, R), labels (2n,),
    the good image each pair came from, and whether each row's mask is known (a real defect without a mask: no)."""
    views, masks, labels, origin, known = [], [], [], [], []
    for j in range(n):
        i = sources[j] if sources is not None else int(rng.integers(len(images)))
        good = augment(rng, images[i])
        if real and rng.random() < real_fraction:
            image, mask = real[int(rng.integers(len(real)))]
            bad, bad_mask = augment(rng, image, mask if mask is not None else np.zeros(image.shape[:2], np.uint8))
            pair = {"bad": bad, "mask": bad_mask}
            known += [True, mask is not None]
        else:
            pair = defect_on(rng, good, synth)
            known += [True, True]
        views += [good, pair["bad"]]
        masks += [np.zeros(good.shape[:2], np.uint8), pair["mask"]]
        labels += [0.0, 1.0]
        origin += [i, i]
    return np.stack(views), np.stack(masks), np.array(labels, np.float32), origin, np.array(known)


def to_tensors(model: AnomalyVFM, views: np.ndarray, masks: np.ndarray, labels: np.ndarray, device):
    """Normalised pixels, masks in [0, 1] (B, 1, R, R) and labels, on ``device``."""
    x = normalize(views, model.config.mean, model.config.std).to(device)
    m = torch.from_numpy(masks).float().div_(255.0).unsqueeze(1).to(device)
    return x, m, torch.from_numpy(labels).to(device)


@torch.no_grad()
def forward_all(model: AnomalyVFM, views: np.ndarray, batch_size: int, device, *,
                scored: bool = False) -> ModelOutput:
    """Model outputs for many views, in batches, concatenated. ``scored``: as prediction scores them
    (``AnomalyVFM.outputs``: averaged over ``config.test_views``), for scores and thresholds that must match
    ``predict``'s; else the plain forward pass (enough for memory tokens)."""
    run = model.outputs if scored else model
    return ModelOutput.concat([run(normalize(views[s:s + batch_size], model.config.mean, model.config.std).to(device))
                               for s in range(0, len(views), batch_size)])


def read_good(images: Sequence[ImageInput], resolution: int) -> list[np.ndarray]:
    """The good images resized to the training square (``ImageReadError`` names a file that can't be read)."""
    return [resize_square(load(item), resolution) for item in images]


def read_defective(items, resolution: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(image, mask or None) pairs resized to the training square; masks with nearest-neighbour."""
    import cv2

    out = []
    for image, mask in items:
        rgb = resize_square(load(image), resolution)
        m = None
        if mask is not None:
            m = load(mask)[..., 0]
            m = (cv2.resize(m, (resolution, resolution), interpolation=cv2.INTER_NEAREST) > 127).astype(np.uint8) * 255
        out.append((rgb, m))
    return out


