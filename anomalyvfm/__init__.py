"""anomalyvfm: zero- and few-shot industrial visual anomaly detection (AnomalyVFM on DINOv2)."""
from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "AnomalyVFM": "model", "load_default": "model",
    "BackboneMismatchError": "errors", "BackboneNotFoundError": "errors",
    "AnomalyVFMConfig": "config", "AdapterConfig": "config", "DecoderConfig": "config", "MODES": "config",
    "load_backbone": "backbones", "register_backbone_source": "backbones",
    "MemoryBank": "memory", "ProfileState": "profile", "SCORE_RULES": "scoring", "register_score_rule": "scoring",
    "Prediction": "predict", "ImageReadError": "preprocess", "ResultsWriter": "outputs",
    "write_report": "outputs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import the heavy modules (torch, transformers) only when one of their names is used."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'anomalyvfm' has no attribute {name!r}")


if TYPE_CHECKING:
    from .backbones import load_backbone, register_backbone_source
    from .config import MODES, AdapterConfig, AnomalyVFMConfig, DecoderConfig
    from .errors import BackboneMismatchError, BackboneNotFoundError
    from .memory import MemoryBank
    from .model import AnomalyVFM, load_default
    from .outputs import ResultsWriter, write_report
    from .predict import Prediction
    from .preprocess import ImageReadError
    from .profile import ProfileState
    from .scoring import SCORE_RULES, register_score_rule
