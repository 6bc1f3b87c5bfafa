"""Stage 3 of few-shot fitting: a threshold from the good images alone (augmented views of each, scored against
the memory without that image), and re-calibration later from images the profile has not seen."""
from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Sequence

import numpy as np

from ..calibration import MIN_IMAGES, Calibration, calibrate
from ..config import resolution_for
from ..model import AnomalyVFM
from ..preprocess import ImageInput
from ..profile import ProfileState
from .config import FinetuneConfig
from .views import augment, forward_all


def view_scores(model: AnomalyVFM, images: list[np.ndarray], state: ProfileState, cfg: FinetuneConfig,
                res: int) -> tuple[list[float], list[int]]:
    """Raw scores (by ``model.config.image_score``) of ``cfg.augmentations`` views of each good image (the image
    and its augmentations), each scored against the memory without that image, and the image of each score."""
    rng = np.random.default_rng([cfg.seed, 2])
    raw, groups = [], []
    for i, image in enumerate(images):
        views = np.stack([image] + [augment(rng, image) for _ in range(cfg.augmentations - 1)])
        loo = replace(state, memory=state.memory.leave_one_out(i)) if state.memory is not None else state
        scores, _ = model.scores(forward_all(model, views, cfg.batch_size, model.device, scored=True), res, loo)
        raw += scores[model.config.image_score].tolist()
        groups += [i] * len(views)
    return raw, groups


def fit_calibration(model: AnomalyVFM, images: list[np.ndarray], state: ProfileState, cfg: FinetuneConfig,
                    res: int, defective: list[np.ndarray]) -> Calibration:
    """The threshold at ``cfg.fpr`` from the good views (moved up towards the real defective images' scores, if
    any); warns when too few good images stand behind it."""
    raw, groups = view_scores(model, images, state, cfg, res)
    raw_bad = None
    if defective:
        out = forward_all(model, np.stack(defective), cfg.batch_size, model.device, scored=True)
        scores, _ = model.scores(out, res, state)
        raw_bad = scores[model.config.image_score].tolist()
    cal = replace(calibrate(raw, cfg.fpr, raw_bad, groups=groups, bounded=True), resolution=res)
    if cal.n_images < MIN_IMAGES and not defective:
        warnings.warn(f"the threshold comes from {cal.n_images} good image(s): views of so few images do not show how "
                      f"much the next good image differs: on real data, for a 1% target, such thresholds flagged 10% (2 "
                      f"images) to 15% (1 image) of good test images (BENCHMARKS.md, 'Calibration'). Give {MIN_IMAGES} "
                      f"or more, or re-choose it from good images of the line: anomalyvfm calibrate PROFILE --good DIR",
                      stacklevel=4)
    return cal


def recalibrate(model: AnomalyVFM, good: Sequence[ImageInput], fpr: float = 0.01,
                defective: Sequence[ImageInput] | None = None, batch_size: int = 8) -> Calibration:
    """Re-choose a model's threshold from images it has not seen (good, and optionally defective): they are scored
    as they are (no leave-one-out), so pass images that are not in its memory. As independent draws of the good
    population they give a normal prediction bound (see ``calibrate``). The model's profile gets the new
    calibration (a plain checkpoint gets a profile holding only it) and its threshold is set to 0.5."""
    state = replace(model.profile, calibration=None) if model.profile is not None else ProfileState()
    model.profile = state
    rule = model.config.image_score

    res = resolution_for(None, None, model.config.mode)

    def raw(images):
        return [p.scores[rule] for p in model.predict(list(images), batch_size=batch_size, resolution=res,
                                                      errors="raise")]

    cal = replace(calibrate(raw(good), fpr, raw(defective) if defective else None, bounded=True), resolution=res)
    model.profile = replace(state, calibration=cal)
    model.config.threshold, model.config.threshold_origin = 0.5, "calibrated"
    return cal
