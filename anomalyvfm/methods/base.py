"""One interface for every method in the harness: fit on k good images (or none), then score images."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass
class Scored:
    score: float  # image anomaly score (higher = more anomalous)
    anomaly_map: np.ndarray  # float32 (H, W), the image's own size
    variants: dict[str, float] | None = None  # the image score under alternative rules, evaluated alongside
    verdict: bool | None = None  # anomalous at the method's own calibrated threshold, where it has one


class Method(ABC):
    """``fit`` receives k good reference images (uint8 RGB) keyed by a stable id (the file path), so that a method
    can cache per-image work across shots and seeds; ``score`` returns one ``Scored`` per image."""

    name: str = "method"
    reused_seconds: float = 0.0  # time the last score() saved by reusing cached work (counted in img/s anyway)
    zero_shot: bool = False  # True: fit is a no-op and the harness runs it once, with k = 0
    resolution: int = 224

    def fit(self, references: dict[str, np.ndarray]) -> None:  # noqa: B027 - zero-shot methods need nothing
        """Learn from good reference images; zero-shot methods ignore them."""

    @abstractmethod
    def score(self, images: dict[str, np.ndarray]) -> dict[str, Scored]:
        """Score images; keys are kept."""

    def set_category(self, name: str) -> None:  # noqa: B027 - only prompt-based methods use it
        """Told the category name before each category (WinCLIP puts it in its prompts)."""

    def clear_cache(self) -> None:  # noqa: B027 - methods without caches need nothing
        """Drop any per-image cache (the harness calls it between categories)."""
