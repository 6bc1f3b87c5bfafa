"""AnomalyVFM few-shot as a harness method: fine-tune on the k references, fuse their memory, calibrate."""
from __future__ import annotations

import numpy as np

from ..fewshot import FinetuneConfig, finetune
from .base import Method, Scored


class AnomalyVFMFewShot(Method):
    """Scores are the calibrated profile's; ``variants`` carry I-AUROC of the fine-tuned model alone (``model``)
    and of each image-score rule, and ``verdict`` the calibrated threshold's decision."""

    name = "anomalyvfm-fewshot"

    def __init__(self, base, config: FinetuneConfig | None = None, resolution: int = 224, batch_size: int = 8):
        self.base = base
        self.config = config or FinetuneConfig(resolution=resolution)
        self.resolution = resolution
        self.batch_size = batch_size
        self.model = None
        self.report = None

    def fit(self, references: dict[str, np.ndarray]) -> None:
        self.model, self.report = finetune(self.base, list(references.values()), self.config, progress=False)

    def score(self, images: dict[str, np.ndarray]) -> dict[str, Scored]:
        if self.model is None:
            raise RuntimeError("call fit() with the good reference images before score()")
        keys = list(images)
        results = self.model.predict([images[k] for k in keys], batch_size=self.batch_size,
                                     resolution=self.resolution, errors="raise")
        return {k: Scored(r.score, r.anomaly_map, r.scores, bool(r.is_anomalous)) for k, r in zip(keys, results)}
