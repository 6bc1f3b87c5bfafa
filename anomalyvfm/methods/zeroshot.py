"""The AnomalyVFM model as a harness method: zero-shot, from a checkpoint."""
from __future__ import annotations

import numpy as np

from .base import Method, Scored


class AnomalyVFMMethod(Method):
    name = "anomalyvfm"
    zero_shot = True

    def __init__(self, model=None, resolution: int = 224, batch_size: int = 8):
        from ..model import load_default

        self.model = model if model is not None else load_default()
        self.resolution = resolution
        self.batch_size = batch_size

    def score(self, images: dict[str, np.ndarray]) -> dict[str, Scored]:
        keys = list(images)
        results = self.model.predict([images[k] for k in keys], batch_size=self.batch_size,
                                     resolution=self.resolution, errors="raise")
        return {k: Scored(r.score, r.anomaly_map, r.scores, bool(r.is_anomalous))  # at the stored threshold
                for k, r in zip(keys, results)}
