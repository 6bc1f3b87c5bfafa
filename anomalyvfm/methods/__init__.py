"""Harness methods behind one interface (``Method``), chosen by name from a registry.

Adding a method = a module with a ``Method`` subclass and one ``@register_method`` factory below (the factory
imports its module lazily, so listing the methods, e.g. for the CLI's help, imports no torch)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import Method, Scored

__all__ = ["Method", "MethodOptions", "Scored", "create_method", "list_methods", "register_method", "METHODS"]


@dataclass
class MethodOptions:
    """What the harness (``anomalyvfm benchmark``) can tell a method when it builds it."""

    mode: str | None = None  # fast | accurate; None = the method's default
    resolution: int | None = None  # explicit input side; wins over mode
    model: str | None = None  # AnomalyVFM checkpoint (default: the shipped one)
    backbone: str = "embedded"  # backbone spec of the training-free methods
    clip_model: str | None = None  # open_clip model name (WinCLIP)
    clip_pretrained: str | None = None  # open_clip pretrained tag or checkpoint path (WinCLIP)
    device: str = "auto"  # auto | cpu | cuda, for the AnomalyVFM methods and kNN (WinCLIP runs on the CPU)

    def side(self, default: int) -> int:
        from ..config import MODES

        return self.resolution or (MODES[self.mode] if self.mode else default)


@dataclass(frozen=True)
class MethodEntry:
    name: str
    factory: Callable[[MethodOptions], Method]
    help: str


METHODS: dict[str, MethodEntry] = {}


def register_method(name: str, help: str):
    """Decorator: ``factory(options) -> Method`` builds the method ``name``."""
    def wrap(factory: Callable[[MethodOptions], Method]):
        if name in METHODS:
            raise ValueError(f"method {name!r} is already registered")
        METHODS[name] = MethodEntry(name, factory, help)
        return factory

    return wrap


def list_methods() -> list[str]:
    return list(METHODS)


def create_method(name: str, **options) -> Method:
    """Build a harness method by name (``options``: ``MethodOptions`` fields). Raises ``WeightsUnavailableError``
    (an ``OSError``) for CLIP methods whose weights cannot be had."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name].factory(MethodOptions(**options))


def _checkpoint(o: MethodOptions):
    """The AnomalyVFM model the options name (default: the shipped one) and its input side."""
    from ..config import MODES
    from ..model import load_default

    from ..runinfo import resolve_device

    m = load_default(o.model).to(resolve_device(o.device))
    return m, o.side(MODES[m.config.mode])


@register_method("anomalyvfm", help="the AnomalyVFM checkpoint, zero-shot (the model's mode by default)")
def _anomalyvfm(o: MethodOptions) -> Method:
    from .zeroshot import AnomalyVFMMethod

    m, res = _checkpoint(o)
    return AnomalyVFMMethod(m, resolution=res)


@register_method("anomalyvfm-fewshot", help="a profile fine-tuned on the k good images per seed (fused memory, "
                                            "calibrated verdicts)")
def _anomalyvfm_fewshot(o: MethodOptions) -> Method:
    from ..fewshot import FinetuneConfig
    from .fewshot import AnomalyVFMFewShot

    m, res = _checkpoint(o)
    return AnomalyVFMFewShot(m, FinetuneConfig(resolution=res), resolution=res)


@register_method("anomalyvfm-batch", help="the test split scored as one batch: mutual scoring (MuSc) fused with "
                                          "the checkpoint, verdicts from the split's own scores")
def _anomalyvfm_batch(o: MethodOptions) -> Method:
    from .batch import AnomalyVFMBatch

    m, res = _checkpoint(o)
    return AnomalyVFMBatch(m, resolution=res)


@register_method("anomalyvfm-fewshot-batch", help="a profile fine-tuned on the k good images scores the test split "
                                                  "as one batch, the k images joining the mutual comparison")
def _anomalyvfm_fewshot_batch(o: MethodOptions) -> Method:
    from .batch import AnomalyVFMFewShotBatch

    m, res = _checkpoint(o)
    return AnomalyVFMFewShotBatch(m, resolution=res)


@register_method("musc", help="mutual scoring (MuSc) of the test split alone, on the checkpoint's backbone")
def _musc(o: MethodOptions) -> Method:
    from ..batch import BatchConfig
    from .batch import AnomalyVFMBatch

    m, res = _checkpoint(o)
    return AnomalyVFMBatch(m, BatchConfig(fusion="mutual", max_weight=1.0), resolution=res,
                           name="musc")


@register_method("knn", help="AnomalyDINO: DINOv2 patch kNN against the k good images (448 px by default)")
def _knn(o: MethodOptions) -> Method:
    from .knn import KNN, KNNConfig

    from ..backbones import load_backbone
    from ..runinfo import resolve_device

    return KNN(KNNConfig(backbone=o.backbone, resolution=o.side(448)),
               backbone=load_backbone(o.backbone).to(resolve_device(o.device)))


def _winclip(o: MethodOptions, few_shot: bool) -> Method:
    from .winclip import WinCLIP, WinCLIPConfig

    cfg = WinCLIPConfig(**{k: v for k, v in (("model", o.clip_model), ("pretrained", o.clip_pretrained)) if v})
    return WinCLIP(cfg, few_shot=few_shot)


@register_method("winclip", help="WinCLIP zero-shot (open_clip; skipped when its weights are unavailable)")
def _winclip_zero(o: MethodOptions) -> Method:
    return _winclip(o, few_shot=False)


@register_method("winclipplus", help="WinCLIP+ with the k good images (open_clip)")
def _winclip_plus(o: MethodOptions) -> Method:
    return _winclip(o, few_shot=True)
