"""Batch mode: score a whole batch at once, fusing the single-image model with mutual scoring of the batch
(``anomalyvfm.mutual``), and set the verdict threshold from the batch itself.

Fusion without labels. Each score is standardised within the batch by its median and robust spread (MAD). The
mutual score only helps when the batch shares a common normal pattern: then a normal patch finds close twins in
the other images and the batch's median mutual patch distance (``level``) is low; where every image shows something
different it is high and mutual scores are noise. The mutual weight is ``max_weight`` at a level of ``level_full``
or below, 0 at ``level_zero`` or above, linear between. None of the three comes from a reported test set:
``level_zero`` is the lowest level of 12 synthetic mixed lots (0.500, ``benchmarks/batch_lots.py``; 12 one-product
lots lie at 0.162–0.293), ``level_full`` the level of the declared validation category (magnetic_tile, 0.433: a real
one-product batch sits above the synthetic ones) and ``max_weight`` the best of 0.5–1.0 on that category
(``benchmarks/batch_fusion.py``: 0.7), all three measured with checkpoint v2 (and again with v6, the same three): these are the class defaults. The
level depends on the backbone's tokens, so each checkpoint stores its own three in ``config.batch_fusion``
(``benchmarks/batch_fusion.py --write``) and ``BatchConfig.for_model`` applies them. ``agreement`` (AUROC of
the mutual scores on the model's top-10% / bottom-half pseudo-labels) is reported as a diagnostic; it does not
separate the two kinds of lot.

Verdicts from the batch. The good population is estimated from the fused scores themselves, two ways:

- a two-component Gaussian mixture, used when the batch clearly holds two populations: BIC favours two components by
  more than 10 (Kass & Raftery's "very strong" evidence) and their separation, Ashman's D, exceeds 2 (the textbook
  bound for a clean split). The lower component is the good parts, the upper one's weight estimates the batch's
  anomalous fraction. This still works when defects are common (a lot with a bad run);
- otherwise the robust location and scale (median, MAD): a minority of defects does not move them.

The threshold is the good population's normal (1 − fpr) quantile. Each batch reports that target FPR (a target, not a
measurement), the fraction it flags and the estimated anomalous fraction, and warns when it has too few images for
these statistics (``min_images``) or when so much of it looks anomalous (``max_flagged``) that "most parts are good"
is doubtful.
Neither constant was tuned on data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .mutual import MutualConfig


@dataclass
class BatchConfig:
    mutual: MutualConfig = field(default_factory=MutualConfig)
    fusion: str = "auto"  # "auto" (weighted by the batch's level), "mutual" (max_weight always), "model" (weight 0)
    level_full: float = 0.43  # median mutual patch distance at or below which mutual scores get ``max_weight``
    level_zero: float = 0.50  # ... and at or above which they get no weight
    max_weight: float = 0.7  # weight of the mutual z-score in the fused z-score
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

    @classmethod
    def for_model(cls, model, **overrides) -> "BatchConfig":
        """The defaults with the fusion constants measured for ``model``'s checkpoint (``config.batch_fusion``)."""
        return cls(**{**model.config.batch_fusion, **overrides})


@dataclass
class BatchReport:
    n_images: int
    level: float  # the batch's median mutual patch distance (low: a common normal pattern)
    agreement: float  # AUROC of the mutual scores on the model's pseudo-labels (a diagnostic)
    mutual_weight: float  # weight the mutual z-score got in the fused score
    threshold_z: float  # threshold on the fused robust z-score
    fpr_target: float  # the threshold's false-positive rate under the normal model of the good population
    flagged: float  # fraction of the batch above the threshold
    population: str = "robust"  # how the good population was estimated: "robust" (median/MAD) or "mixture"
    anomalous_estimated: float = float("nan")  # the mixture's upper-component weight (nan for "robust")
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


def good_population(z: np.ndarray, min_bic_gain: float = 10.0, min_separation: float = 2.0, seed: int = 0
                    ) -> tuple[float, float, str, float]:
    """(location, scale, method, anomalous fraction) of the good parts among scores ``z`` (see the module
    docstring): a two-component mixture's lower component when the batch clearly splits in two, else median/MAD."""
    z = np.asarray(z, np.float64)
    med = float(np.median(z))
    mad = max(1.4826 * float(np.median(np.abs(z - med))), 1e-6)
    if len(z) >= 10 and np.ptp(z) > 0:
        from sklearn.mixture import GaussianMixture

        x = z[:, None]
        one = GaussianMixture(1, random_state=seed).fit(x)
        two = GaussianMixture(2, random_state=seed, n_init=3).fit(x)
        means, sds = two.means_[:, 0], np.sqrt(two.covariances_[:, 0, 0])
        separation = abs(means[1] - means[0]) * np.sqrt(2.0 / (sds[0] ** 2 + sds[1] ** 2))
        if one.bic(x) - two.bic(x) > min_bic_gain and separation > min_separation:
            lo = int(np.argmin(means))
            return float(means[lo]), float(max(sds[lo], 1e-6)), "mixture", float(two.weights_[1 - lo])
    return med, mad, "robust", float("nan")


def calibrate_batch(z: np.ndarray, cfg: BatchConfig, level: float = float("nan"), agree: float = float("nan"),
                    weight: float = 0.0) -> BatchReport:
    """The verdict threshold on scores ``z`` of a batch at ``cfg.fpr``, with what it flags and any warnings."""
    from scipy.stats import norm

    z = np.asarray(z, np.float64)
    n = len(z)
    loc, scale, method, anomalous = good_population(z) if n else (0.0, 1.0, "robust", float("nan"))
    quantile = float(norm.ppf(1.0 - cfg.fpr))
    threshold = loc + quantile * scale
    flagged = float(np.mean(z > threshold)) if n else 0.0
    report = BatchReport(n, level, agree, weight, threshold, cfg.fpr, flagged, method, anomalous)
    if n < cfg.min_images:
        report.warnings.append(f"the batch has {n} images: fewer than {cfg.min_images} cannot show how good parts "
                               f"vary, so its verdicts are provisional; score a larger batch or calibrate a profile")
    share = max(flagged, 0.0 if np.isnan(anomalous) else anomalous)
    if share > cfg.max_flagged:
        what = f"{100 * flagged:.0f}% of the batch is flagged" if flagged >= share else \
            f"{100 * anomalous:.0f}% of the batch looks anomalous (a two-population mixture)"
        report.warnings.append(f"{what}: the threshold assumes most parts are good, which this batch does not look "
                               f"like; check it by eye or calibrate a profile on known good parts")
    return report
