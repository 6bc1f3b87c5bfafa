"""A product profile's fitted state: what few-shot fitting learned, kept apart from the architecture config.

The config (``AnomalyVFMConfig``) says what the model is; a ``ProfileState`` says what it learned about one product:
its memory bank, the weight of the memory's map in the fused map, the statistics that standardise the image
scores, and the calibration. Scoring takes it as an argument (``anomalyvfm.scoring.score_outputs``)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .calibration import Calibration
from .memory import MemoryBank

# config.json keys of checkpoints written before the state moved out of the config (anomalyvfm 0.1.0)
LEGACY_KEYS = ("fusion_weight", "knn_scale", "calibration", "score_stats", "memory_mode")


@dataclass
class ProfileState:
    memory: MemoryBank | None = None  # good-image patches (and known defects); None = the model's map alone
    reference: np.ndarray | None = None  # golden-reference mode: the uint8 RGB image every input is aligned to
    fusion_weight: float = 0.0  # weight w of the memory's kNN map: map = (1 − w)·model map + w·kNN map
    knn_scale: float = 1.0  # kNN cosine distance that maps to 1 before fusion
    score_stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # "cls"/"knn": (mean, std) of the
    # good views' image logit and kNN score, which standardise them for the "memory" rule
    calibration: Calibration | None = None  # raw score -> 0–1 deviation with the threshold at 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ValueError(f"fusion_weight must be in [0, 1], got {self.fusion_weight}")
        if self.knn_scale <= 0:
            raise ValueError(f"knn_scale must be > 0, got {self.knn_scale}")
        self.score_stats = {k: (float(v[0]), float(v[1])) for k, v in (self.score_stats or {}).items()}
        if isinstance(self.calibration, dict):
            self.calibration = Calibration.from_dict(self.calibration)

    @property
    def golden(self) -> bool:
        return self.memory is not None and self.memory.golden

    def to_json(self) -> dict:
        """The scalar fields (tensors and the reference image are stored beside it by ``anomalyvfm.checkpoint``)."""
        return {"fusion_weight": self.fusion_weight, "knn_scale": self.knn_scale,
                "score_stats": {k: list(v) for k, v in self.score_stats.items()},
                "calibration": self.calibration.to_dict() if self.calibration else None,
                "memory_mode": "golden" if self.golden else "knn"}

    @classmethod
    def from_json(cls, data: dict, memory: MemoryBank | None = None,
                  reference: np.ndarray | None = None) -> "ProfileState":
        data = dict(data)
        golden = data.pop("memory_mode", "knn") == "golden"
        if memory is not None and golden:
            memory.golden = True
        return cls(memory=memory, reference=reference, **data)
