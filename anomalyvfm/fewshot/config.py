"""Settings and report of a few-shot fine-tune."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FinetuneConfig:
    steps: int = 30  # most optimiser steps (early stopping may end sooner)
    batch_size: int = 8  # half augmented good images, half the same with a synthetic defect
    lr: float = 1e-4
    weight_decay: float = 1e-4
    alpha: float = 0.1  # confidence regulariser of the pixel loss
    image_weight: float = 1.0
    eval_every: int = 10  # steps between held-out evaluations
    patience: int = 2  # held-out evaluations without improvement before stopping
    holdout: int = 16  # synthetic held-out pairs (early stopping, fusion weight)
    mode: str | None = None  # fast | accurate; default: the base model's
    resolution: int | None = None
    seed: int = 0
    memory: bool = True  # keep the good images' adapted patch features and fuse their kNN map
    golden: bool = False  # fixed-position parts: the first good image is a golden reference every image is aligned
    # to; its patches are compared position by position (± one patch) instead of with the whole memory
    fusion_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # map fusion candidates, chosen by pixel AUROC
    # on the held-out pairs
    image_score: str | None = "memory"  # rule of the profile's image score; None = the best on the held-out pairs.
    # "memory" by default: the held-out pairs carry synthetic defects like those the image head was trained on, so
    # they overrate the head and underrate the memory, which is what sees a real product's own defects
    fpr: float = 0.01  # target false-positive rate of the calibrated threshold
    real_fraction: float = 0.5  # with real defective images given: share of training pairs that use one
    defect_memory: bool = True  # with real defective images given: keep their defect patches as a positive memory
    augmentations: int = 8  # augmented views per good image for calibration
    synth: dict = field(default_factory=dict)  # SynthConfig fields for the defects made on the good images


@dataclass
class FinetuneReport:
    steps: int = 0
    best_step: int = 0
    holdout_loss: list[float] = field(default_factory=list)
    fusion_weight: float = 0.0
    held_out: dict[str, float] = field(default_factory=dict)
    calibration: dict | None = None
    seconds: float = 0.0
