"""anomalyvfm: zero- and few-shot industrial visual anomaly detection (AnomalyVFM on DINOv2)."""
from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "AnomalyVFM": "model", "load_default": "model", "BackboneMismatchError": "model",
    "AnomalyVFMConfig": "config", "AdapterConfig": "config", "DecoderConfig": "config", "MODES": "config",
    "load_backbone": "backbones", "BackboneNotFoundError": "backbones",
    "Prediction": "predict", "ImageReadError": "preprocess",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import the heavy modules (torch, transformers) only when one of their names is used."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'anomalyvfm' has no attribute {name!r}")


if TYPE_CHECKING:
    from .backbones import BackboneNotFoundError, load_backbone
    from .config import MODES, AdapterConfig, AnomalyVFMConfig, DecoderConfig
    from .model import AnomalyVFM, BackboneMismatchError, load_default
    from .predict import Prediction
    from .preprocess import ImageReadError
