"""Methods behind one interface (``Method``): ``anomalyvfm`` (zero-shot) and ``knn`` (AnomalyDINO)."""
from __future__ import annotations

from .base import Method, Scored

__all__ = ["Method", "Scored", "create_method", "METHODS"]
METHODS = ("anomalyvfm", "anomalyvfm-fewshot", "knn", "winclip", "winclipplus")


def create_method(name: str, *, mode: str | None = None, resolution: int | None = None,
                  model: str | None = None, backbone: str = "embedded", clip_model: str | None = None,
                  clip_pretrained: str | None = None) -> Method:
    """Build a harness method by name. ``resolution``/``mode`` set the input side (knn defaults to 448,
    anomalyvfm to the model's mode; WinCLIP runs at its CLIP model's own size). Raises
    ``WeightsUnavailableError`` for CLIP methods whose weights cannot be had."""
    from ..config import MODES

    if name in ("winclip", "winclipplus"):
        from .winclip import WinCLIP, WinCLIPConfig

        cfg = WinCLIPConfig(**{k: v for k, v in (("model", clip_model), ("pretrained", clip_pretrained)) if v})
        return WinCLIP(cfg, few_shot=name == "winclipplus")
    if name == "knn":
        from .knn import KNN, KNNConfig

        res = resolution or (MODES[mode] if mode else 448)
        return KNN(KNNConfig(backbone=backbone, resolution=res))
    if name == "anomalyvfm":
        from ..model import load_default
        from .zeroshot import AnomalyVFMMethod

        m = load_default(model)
        return AnomalyVFMMethod(m, resolution=resolution or MODES[mode or m.config.mode])
    if name == "anomalyvfm-fewshot":
        from ..fewshot import FinetuneConfig
        from ..model import load_default
        from .fewshot import AnomalyVFMFewShot

        m = load_default(model)
        res = resolution or MODES[mode or m.config.mode]
        return AnomalyVFMFewShot(m, FinetuneConfig(resolution=res), resolution=res)
    raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
