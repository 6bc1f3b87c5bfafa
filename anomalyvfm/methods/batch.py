"""Batch mode as harness methods: the batch is the category's whole test split, as in MuSc."""
from __future__ import annotations

import numpy as np

from ..batch import BatchConfig
from .base import Method, Scored


class AnomalyVFMBatch(Method):
    """``anomalyvfm-batch``: mutual scoring of the test split fused with the model, verdicts from the split's own
    scores. ``variants`` carry the model's score and the mutual score alone, so one run reports all three."""

    name = "anomalyvfm-batch"
    zero_shot = True

    def __init__(self, model, config: BatchConfig | None = None, resolution: int = 224, batch_size: int = 8,
                 name: str | None = None):
        self.model, self.config = model, config  # None: the checkpoint's own (BatchConfig.for_model)
        self.resolution, self.batch_size = resolution, batch_size
        self.name = name or self.name
        self.report = None

    def score(self, images: dict[str, np.ndarray]) -> dict[str, Scored]:
        from ..batch_predict import predict_batch

        keys = list(images)
        results, self.report = predict_batch(self.model, [images[k] for k in keys], batch_size=self.batch_size,
                                             resolution=self.resolution, config=self.config, errors="raise")
        return {k: Scored(r.scores["z"], r.anomaly_map, {n: r.scores[n] for n in ("model", "mutual")},
                          bool(r.is_anomalous)) for k, r in zip(keys, results)}


class AnomalyVFMFewShotBatch(AnomalyVFMBatch):
    """``anomalyvfm-fewshot-batch``: a profile fine-tuned on the k good images (as ``anomalyvfm-fewshot``) scores the
    test split as one batch, the k good images joining the mutual comparison as known-good members."""

    name = "anomalyvfm-fewshot-batch"
    zero_shot = False

    def __init__(self, base, finetune_config=None, config: BatchConfig | None = None, resolution: int = 224,
                 batch_size: int = 8):
        from ..fewshot import FinetuneConfig

        super().__init__(None, config, resolution, batch_size)
        self.base, self.finetune_config = base, finetune_config or FinetuneConfig(resolution=resolution)
        self.references: list[np.ndarray] = []

    def fit(self, references: dict[str, np.ndarray]) -> None:
        from ..fewshot import finetune

        self.references = list(references.values())
        self.model, self.finetune_report = finetune(self.base, self.references, self.finetune_config, progress=False)

    def score(self, images: dict[str, np.ndarray]) -> dict[str, Scored]:
        from ..batch_predict import predict_batch

        if self.model is None:
            raise RuntimeError("call fit() with the good reference images before score()")
        keys = list(images)
        results, self.report = predict_batch(self.model, [images[k] for k in keys], batch_size=self.batch_size,
                                             resolution=self.resolution, config=self.config, errors="raise",
                                             references=self.references)
        return {k: Scored(r.scores["z"], r.anomaly_map, {n: r.scores[n] for n in ("model", "mutual")},
                          bool(r.is_anomalous)) for k, r in zip(keys, results)}
