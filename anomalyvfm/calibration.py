"""Normal-only calibration: a threshold chosen from good images at a target false-positive rate, and a 0–1
deviation score on which that threshold sits at 0.5."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class Calibration:
    threshold: float  # raw image score at which an image becomes anomalous
    scale: float  # spread of the good images' scores (robust σ; of their logits for space="logit"): one unit
    fpr: float  # false-positive rate the threshold was chosen for
    n_good: int  # raw scores of good images it was fitted on
    n_defective: int = 0  # raw scores of defective images it was fitted on (0: normal-only)
    good_mean: float = 0.0
    good_max: float = 0.0
    n_images: int = 0  # distinct good images behind the scores (views of one image count once)
    resolution: int | None = None  # input side the scores were computed at (None: not recorded, before 0.2)
    space: str = "raw"  # where threshold and scale are compared: "raw" scores, or "logit" for probabilities (then
    # ``scale`` is a spread of logits; near 1, where a profile's thresholds sit, raw differences vanish)

    def deviation(self, raw: float | np.ndarray) -> float | np.ndarray:
        """Raw score → deviation in (0, 1): σ((raw − threshold) / scale), on logits for ``space="logit"``; the
        threshold maps to exactly 0.5."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.space == "logit":
            z = (_logit(raw) - _logit(np.float64(self.threshold))) / self.scale
        else:
            z = (raw - self.threshold) / self.scale
        out = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
        return float(out) if np.ndim(out) == 0 else out

    def sources(self) -> str:
        """What the threshold was fitted on, in words: "32 views of 4 good images" (a profile's augmented views of
        its references) or "16 good images"."""
        if 0 < self.n_images < self.n_good:
            return f"{self.n_good} views of {self.n_images} good images"
        return f"{self.n_good} good images"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        return cls(**data)


EPS = 1e-15  # probabilities are clipped to [EPS, 1 − EPS] before a logit (float64 resolves them)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


MIN_IMAGES = 4  # distinct images from which the spread between images enters the threshold: below, its t-bound is
# too wide to use (t(1, 0.99) = 31.8: with 2 images it flagged nothing at all in benchmarks/calibration_study.py)


def _prediction_bound(values: np.ndarray, fpr: float, spread: float | None = None) -> float:
    """One-sided normal prediction bound mean + t(n−1, 1−fpr)·sd·√(1 + 1/n): a new draw exceeds it with probability
    exactly ``fpr`` when the values are independent normal draws."""
    from scipy.stats import t

    n = values.size
    sd = values.std(ddof=1) if spread is None else spread
    return float(values.mean() + t.ppf(1.0 - fpr, n - 1) * sd * np.sqrt(1.0 + 1.0 / n))


def calibrate(good: Sequence[float], fpr: float = 0.01, defective: Sequence[float] | None = None, *,
              groups: Sequence[int] | None = None, bounded: bool = False) -> Calibration:
    """Fit a calibration on raw scores of good images. The threshold is the largest of these estimates of the
    score that a new good image exceeds with probability ``fpr``:

    - the (1 − fpr) quantile of ``good`` (with fewer than 1/fpr scores, their maximum, which a new draw exceeds with
      probability ≈ 1/(n + 1) — too often);
    - the normal prediction bound over ``good`` (``_prediction_bound``), exact for independent normal scores;
    - with ``groups`` (the image each score comes from, e.g. augmented views of a few good images) and at least
      ``MIN_IMAGES`` images: the same bound over the image means, with the spread between images plus the mean
      spread within one, n = the number of images. Views of one image do not show how much the next image differs.

    ``bounded``: the scores are probabilities in [0, 1] (as every anomalyvfm image score is); the bounds are then
    taken on their logits, where such scores are nearer to normal and a bound cannot leave (0, 1), and so is the
    deviation's scale (``space="logit"``).

    With defective scores too, the threshold is moved up to halfway towards the lowest defective score above it:
    the same recall on those images with a wider margin for good ones."""
    good = np.asarray(good, dtype=np.float64)
    if good.size < 2:
        raise ValueError(f"calibration needs at least 2 good scores, got {good.size}")
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    labels = np.asarray(groups if groups is not None else np.arange(good.size))
    if labels.shape != good.shape:
        raise ValueError(f"groups must give one image per score: {labels.size} for {good.size} scores")
    if bounded and not ((good >= 0) & (good <= 1)).all():
        raise ValueError("bounded=True needs scores in [0, 1]")
    from scipy.special import expit

    to, back = (_logit, expit) if bounded else (lambda v: v, lambda v: v)
    values = to(good)
    bound = _prediction_bound(values, fpr)
    images = np.unique(labels)
    if groups is not None and images.size >= MIN_IMAGES:
        means = np.array([values[labels == g].mean() for g in images])
        within = np.mean([values[labels == g].var(ddof=1) if (labels == g).sum() > 1 else 0.0 for g in images])
        bound = max(bound, _prediction_bound(means, fpr, float(np.sqrt(means.var(ddof=1) + within))))
    threshold = max(float(np.quantile(good, 1.0 - fpr, method="higher")), float(back(bound)))
    bad = np.asarray(defective if defective is not None else [], dtype=np.float64)
    above = bad[bad > threshold]
    if above.size:
        threshold = float((threshold + above.min()) / 2)
    mad = float(np.median(np.abs(values - np.median(values)))) * 1.4826
    scale = max(mad, float(values.std()) * 0.5, 1e-6)
    return Calibration(threshold=threshold, scale=scale, fpr=fpr, n_good=int(good.size), n_defective=int(bad.size),
                       good_mean=float(good.mean()), good_max=float(good.max()), n_images=int(images.size),
                       space="logit" if bounded else "raw")
