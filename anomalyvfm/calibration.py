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
    scale: float  # spread of the good images' raw scores (robust σ): one unit of deviation
    fpr: float  # false-positive rate the threshold was chosen for
    n_good: int  # raw scores of good images it was fitted on
    n_defective: int = 0  # raw scores of defective images it was fitted on (0: normal-only)
    good_mean: float = 0.0
    good_max: float = 0.0

    def deviation(self, raw: float | np.ndarray) -> float | np.ndarray:
        """Raw score → deviation in (0, 1): σ((raw − threshold) / scale); the threshold maps to exactly 0.5."""
        z = (np.asarray(raw, dtype=np.float64) - self.threshold) / self.scale
        out = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
        return float(out) if np.ndim(out) == 0 else out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        return cls(**data)


def calibrate(good: Sequence[float], fpr: float = 0.01, defective: Sequence[float] | None = None, *,
              unseen: bool = False) -> Calibration:
    """Fit a calibration on raw scores of good images (e.g. leave-one-out scores of the k good images and their
    augmentations). The threshold is the (1 − fpr) quantile of the good scores. With fewer than 1/fpr scores that
    quantile is just their maximum, which a new good image exceeds with probability ≈ 1/(n + 1), not fpr; so when
    the scores come from ``unseen`` images (independent draws of the good population, as in ``recalibrate``), the
    threshold is at least the normal one-sided prediction bound mean + t(n−1, 1−fpr)·sd·√(1 + 1/n), whose
    false-positive rate is exactly fpr for normal scores. With defective scores too, the threshold is moved up to
    halfway towards the lowest defective score above it: the same recall on those images with a wider margin for
    good ones."""
    good = np.asarray(good, dtype=np.float64)
    if good.size < 2:
        raise ValueError(f"calibration needs at least 2 good scores, got {good.size}")
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    threshold = float(np.quantile(good, 1.0 - fpr, method="higher"))
    if unseen:
        from scipy.stats import t

        n = good.size
        bound = good.mean() + t.ppf(1.0 - fpr, n - 1) * good.std(ddof=1) * np.sqrt(1.0 + 1.0 / n)
        threshold = max(threshold, float(bound))
    bad = np.asarray(defective if defective is not None else [], dtype=np.float64)
    above = bad[bad > threshold]
    if above.size:
        threshold = float((threshold + above.min()) / 2)
    mad = float(np.median(np.abs(good - np.median(good)))) * 1.4826
    scale = max(mad, float(good.std()) * 0.5, 1e-6)
    return Calibration(threshold=threshold, scale=scale, fpr=fpr, n_good=int(good.size), n_defective=int(bad.size),
                       good_mean=float(good.mean()), good_max=float(good.max()))
