"""Batch mode: score a whole batch at once, fusing the single-image model with mutual scoring of the batch
(``anomalyvfm.mutual``), and set the verdict threshold from the batch itself.

Fusion without labels. Each score is standardised within the batch by its median and robust spread (MAD). The
model's scores then act as a teacher: its top ``teacher_top`` fraction of images are taken as likely anomalous and
its bottom half as likely good, and ``agreement`` is the AUROC of the mutual scores on those pseudo-labels. Where the
batch has a common normal pattern, mutual scoring finds the same outliers the model finds (agreement well above
0.5); where every image shows something different (each PCB board a different region), mutual scores are noise
and agreement stays near 0.5. The mutual weight grows linearly from 0 at ``agreement_floor`` to ``max_weight`` at
``agreement_full``; at weight 0 the verdict is the model's alone. These settings were chosen on synthetic batches
(``benchmarks/batch_fusion.py``), never on ../shared/data.

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
    fusion: str = "auto"  # "auto" (agreement-weighted), "mutual" (weight max_weight always) or "model" (weight 0)
    teacher_top: float = 0.1  # fraction of the batch the model's scores mark as likely anomalous (pseudo-labels)
    agreement_floor: float = 0.6  # agreement at or below which mutual scores get no weight
    agreement_full: float = 0.8  # agreement from which they get ``max_weight``
    max_weight: float = 0.5  # weight of the mutual z-score in the fused z-score
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
        if not self.agreement_floor < self.agreement_full:
            raise ValueError("agreement_floor must be below agreement_full")


@dataclass
class BatchReport:
    n_images: int
    agreement: float  # AUROC of the mutual scores on the model's pseudo-labels
    mutual_weight: float  # weight the mutual z-score got in the fused score
    threshold_z: float  # threshold on the fused robust z-score
    fpr_target: float
    fpr_estimated: float  # under the normal model of the good population (the target, unless clipped)
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


def mutual_weight(agree: float, cfg: BatchConfig) -> float:
    if cfg.fusion == "model":
        return 0.0
    if cfg.fusion == "mutual":
        return cfg.max_weight
    t = (agree - cfg.agreement_floor) / (cfg.agreement_full - cfg.agreement_floor)
    return float(np.clip(t, 0.0, 1.0) * cfg.max_weight)


def fuse(model_scores: np.ndarray, mutual_scores: np.ndarray, cfg: BatchConfig) -> tuple[np.ndarray, float, float]:
    """Fused robust z-scores of a batch, the mutual weight and the agreement behind it. ``model_scores`` are the
    single-image model's image scores in (0, 1) (standardised on their logits), ``mutual_scores`` distances."""
    from scipy.special import logit

    zm = robust_z(logit(np.clip(model_scores, 1e-6, 1 - 1e-6)))
    zu = robust_z(mutual_scores)
    agree = agreement(zm, zu, cfg.teacher_top)
    w = mutual_weight(agree, cfg)
    return robust_z((1 - w) * zm + w * zu), w, agree


def calibrate_batch(z: np.ndarray, cfg: BatchConfig, agree: float = float("nan"), weight: float = 0.0
                    ) -> BatchReport:
    """The verdict threshold on robust z-scores of a batch at ``cfg.fpr``, with what it flags and any warnings."""
    from scipy.stats import norm

    n = len(z)
    threshold = float(norm.ppf(1.0 - cfg.fpr))
    flagged = float(np.mean(z > threshold)) if n else 0.0
    report = BatchReport(n, agree, weight, threshold, cfg.fpr, float(norm.sf(threshold)), flagged)
    if n < cfg.min_images:
        report.warnings.append(f"the batch has {n} images: fewer than {cfg.min_images} cannot show how good parts "
                               f"vary, so its verdicts are provisional; score a larger batch or calibrate a profile")
    if flagged > cfg.max_flagged:
        report.warnings.append(f"{100 * flagged:.0f}% of the batch is flagged: the threshold assumes most parts are "
                               f"good, which this batch does not look like; check it by eye or calibrate a profile "
                               f"on known good parts")
    return report
