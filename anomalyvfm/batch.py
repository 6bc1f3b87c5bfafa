"""Batch mode: score a whole batch at once, fusing the single-image model with mutual scoring of the batch
(``anomalyvfm.mutual``), and set the verdict threshold from the batch itself.

Fusion without labels. Each score is standardised within the batch by its median and robust spread (MAD). The
mutual score only helps when the batch shares a common normal pattern: then a normal patch finds close twins in
the other images and the batch's median mutual patch distance (``level``) is low; where every image shows something
different it is high and mutual scores are noise. The mutual weight is ``max_weight`` at a level of ``level_full``
or below, 0 at ``level_zero`` or above, linear between. Both ends come from synthetic lots only
(``benchmarks/batch_lots.py``: 12 lots of one product, level 0.13–0.25; 12 mixed lots, 0.47–0.54), never from
../shared/data. ``agreement`` (AUROC of the mutual scores on the model's top-10% / bottom-half pseudo-labels) is
reported as a diagnostic; it does not separate the two kinds of lot (0.95 vs 0.97).

Verdicts from the batch. Assuming most parts are good, the fused score's robust location and scale describe the good
population; the threshold is the normal (1 − fpr) quantile above the median (z = Φ⁻¹(1 − fpr) in robust units). Each
batch reports that estimated FPR and the fraction it flags, and warns when it has too few images for the assumption
(``min_images``) or flags so many that "most parts are good" is doubtful (``max_flagged``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .mutual import MutualConfig


@dataclass
class BatchConfig:
    mutual: MutualConfig = field(default_factory=MutualConfig)
    fusion: str = "auto"  # "auto" (weighted by the batch's level), "mutual" (max_weight always), "model" (weight 0)
    level_full: float = 0.25  # median mutual patch distance at or below which mutual scores get ``max_weight``
    level_zero: float = 0.47  # ... and at or above which they get no weight
    max_weight: float = 0.5  # weight of the mutual z-score in the fused z-score
    teacher_top: float = 0.1  # fraction of the batch the model's scores mark as likely anomalous (``agreement``)
    fpr: float = 0.01  # target false-positive rate of the batch-calibrated threshold
    min_images: int = 20  # fewer images: the batch's own statistics are too uncertain (warning)
    max_flagged: float = 0.3  # flagging more than this fraction: "most parts are good" is doubtful (warning)

    def __post_init__(self) -> None:
        if isinstance(self.mutual, dict):
            self.mutual = MutualConfig(**self.mutual)
        if self.fusion not in ("auto", "mutual", "model"):
            raise ValueError(f"fusion must be 'auto', 'mutual' or 'model', got {self.fusion!r}")
        if not 0.0 < self.fpr < 0.5:
            raise ValueError(f"fpr must be in (0, 0.5), got {self.fpr}")
        if not self.level_full < self.level_zero:
            raise ValueError("level_full must be below level_zero")


@dataclass
class BatchReport:
    n_images: int
    level: float  # the batch's median mutual patch distance (low: a common normal pattern)
    agreement: float  # AUROC of the mutual scores on the model's pseudo-labels (a diagnostic)
    mutual_weight: float  # weight the mutual z-score got in the fused score
    threshold_z: float  # threshold on the fused robust z-score
    fpr_target: float
    fpr_estimated: float  # under the normal model of the good population (the target, by construction)
    flagged: float  # fraction of the batch above the threshold
    warnings: list[str] = field(default_factory=list)


def robust_z(values: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """(x − median) / (1.4826 · MAD): a z-score that a minority of outliers does not move."""
    values = np.asarray(values, np.float64)
    med = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - med))
    if mad < floor:  # over half the values tie: fall back to the standard deviation
        mad = max(float(values.std()), floor)
    return (values - med) / mad


def agreement(teacher: np.ndarray, student: np.ndarray, top: float = 0.1) -> float:
    """AUROC of ``student`` separating the teacher's top ``top`` fraction from its bottom half (0.5: no agreement)."""
    from .metrics import image_metrics

    order = np.argsort(teacher)
    n = len(order)
    k = max(1, int(round(top * n)))
    low, high = order[: n // 2], order[n - k:]
    if len(low) == 0:
        return 0.5
    labels = [0] * len(low) + [1] * len(high)
    return float(image_metrics(labels, np.concatenate([student[low], student[high]]).tolist())["I-AUROC"])


def mutual_weight(level: float, cfg: BatchConfig) -> float:
    if cfg.fusion == "model":
        return 0.0
    if cfg.fusion == "mutual":
        return cfg.max_weight
    t = (cfg.level_zero - level) / (cfg.level_zero - cfg.level_full)
    return float(np.clip(t, 0.0, 1.0) * cfg.max_weight)


def fuse(model_scores: np.ndarray, mutual_scores: np.ndarray, level: float, cfg: BatchConfig
         ) -> tuple[np.ndarray, float, float]:
    """Fused robust z-scores of a batch, the mutual weight (from the batch's ``level``) and the agreement.
    ``model_scores`` are the single-image model's image scores in (0, 1) (standardised on their logits),
    ``mutual_scores`` distances."""
    from scipy.special import logit

    zm = robust_z(logit(np.clip(model_scores, 1e-6, 1 - 1e-6)))
    zu = robust_z(mutual_scores)
    agree = agreement(zm, zu, cfg.teacher_top)
    w = mutual_weight(level, cfg)
    return robust_z((1 - w) * zm + w * zu), w, agree


def calibrate_batch(z: np.ndarray, cfg: BatchConfig, level: float = float("nan"), agree: float = float("nan"),
                    weight: float = 0.0) -> BatchReport:
    """The verdict threshold on robust z-scores of a batch at ``cfg.fpr``, with what it flags and any warnings."""
    from scipy.stats import norm

    n = len(z)
    threshold = float(norm.ppf(1.0 - cfg.fpr))
    flagged = float(np.mean(z > threshold)) if n else 0.0
    report = BatchReport(n, level, agree, weight, threshold, cfg.fpr, float(norm.sf(threshold)), flagged)
    if n < cfg.min_images:
        report.warnings.append(f"the batch has {n} images: fewer than {cfg.min_images} cannot show how good parts "
                               f"vary, so its verdicts are provisional; score a larger batch or calibrate a profile")
    if flagged > cfg.max_flagged:
        report.warnings.append(f"{100 * flagged:.0f}% of the batch is flagged: the threshold assumes most parts are "
                               f"good, which this batch does not look like; check it by eye or calibrate a profile "
                               f"on known good parts")
    return report
