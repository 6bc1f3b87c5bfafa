"""Image-score rules, one table: the model's scores, config validation, ONNX output names, ``Prediction.scores``
and the benchmark's per-rule variants all come from ``SCORE_RULES``.

A rule maps the model's outputs for a batch (``ScoreInputs``) to one score per image in [0, 1]. Adding a rule =
one ``@register_score_rule`` function. ``needs_memory`` rules exist only for a profile with a good-image memory;
such a profile also reports ``model``: its configured rule on the model's own map, without the memory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

    from .profile import ProfileState


@dataclass
class ScoreInputs:
    image_logits: "torch.Tensor"  # (B,) image head logits
    maps: "torch.Tensor"  # (B, R, R) anomaly map in [0, 1] (fused with the memory's map when there is one)
    top_k: int  # pixels averaged by top-k rules, at the input resolution
    knn: "torch.Tensor | None" = None  # (B, R, R) kNN distance / knn_scale, unclamped (profiles with a memory)
    stats: dict | None = None  # "cls"/"knn": (mean, std) of good views, for standardised rules


@dataclass(frozen=True)
class ScoreRule:
    name: str
    fn: Callable[[ScoreInputs], "torch.Tensor"]
    needs_memory: bool = False
    help: str = ""


SCORE_RULES: dict[str, ScoreRule] = {}
MODEL_RULE = "model"  # a memory profile's configured rule without the memory (for comparison)


def register_score_rule(name: str, *, needs_memory: bool = False, help: str = ""):
    """Decorator: add ``fn(inputs) -> (B,) scores`` to the table under ``name``."""
    def wrap(fn):
        if name in SCORE_RULES or name == MODEL_RULE:
            raise ValueError(f"score rule {name!r} is already registered")
        SCORE_RULES[name] = ScoreRule(name, fn, needs_memory, help)
        return fn

    return wrap


def rule_names(memory: bool = False) -> list[str]:
    """The rules a model computes, in table order (``memory``: a profile with a good-image memory)."""
    return [r.name for r in SCORE_RULES.values() if memory or not r.needs_memory]


def output_names(memory: bool = False) -> list[str]:
    """Every score a model reports, in order: its rules, then ``model`` for a memory profile."""
    return rule_names(memory) + ([MODEL_RULE] if memory else [])


def topk_mean(maps: "torch.Tensor", k: int) -> "torch.Tensor":
    """(B,) mean of the k highest values of each map."""
    flat = maps.flatten(1)
    return flat.topk(min(k, flat.shape[1]), dim=1).values.mean(1)


@register_score_rule("cls", help="the image head on the CLS token")
def _cls(x: ScoreInputs):
    return x.image_logits.sigmoid()


@register_score_rule("topk", help="mean of the top-k map pixels")
def _topk(x: ScoreInputs):
    return topk_mean(x.maps, x.top_k)


@register_score_rule("fused", help="mean of cls and topk")
def _fused(x: ScoreInputs):
    return (_cls(x) + _topk(x)) / 2


@register_score_rule("knn", needs_memory=True, help="top-k mean of the memory's kNN map alone")
def _knn(x: ScoreInputs):
    return topk_mean(x.knn, x.top_k).clamp(0.0, 1.0)


@register_score_rule("memory", needs_memory=True,
                     help="image head and kNN score, each standardised by the good views, averaged")
def _memory(x: ScoreInputs):
    stats = x.stats or {"cls": (0.0, 1.0), "knn": (0.0, 1.0)}
    z = (x.image_logits - stats["cls"][0]) / stats["cls"][1] + (topk_mean(x.knn, x.top_k) - stats["knn"][0]) / \
        stats["knn"][1]
    return (z / 2).sigmoid()


def score_outputs(mask_logits: "torch.Tensor", image_logits: "torch.Tensor", patch_tokens: "torch.Tensor | None",
                  resolution: int, *, image_score: str, top_k: int, state: "ProfileState | None" = None,
                  smoothing: int = 0) -> tuple[dict[str, "torch.Tensor"], "torch.Tensor"]:
    """Scores (B,) under every rule and maps (B, R, R) in [0, 1] from a forward pass. ``smoothing`` > 0 averages
    the decoder's probabilities over a smoothing × smoothing window before upsampling. With a memory in ``state``
    the map is (1 − w)·model map + w·kNN map and the memory rules and ``model`` are added."""
    import torch.nn.functional as F

    if smoothing:
        probs = F.avg_pool2d(mask_logits.sigmoid(), smoothing, stride=1, padding=smoothing // 2,
                             count_include_pad=False)
        maps = F.interpolate(probs, size=(resolution, resolution), mode="bilinear", align_corners=False)[:, 0]
    else:
        logits = F.interpolate(mask_logits, size=(resolution, resolution), mode="bilinear", align_corners=False)
        maps = logits[:, 0].sigmoid()
    memory = state.memory if state is not None else None
    if memory is None:
        if SCORE_RULES[image_score].needs_memory:
            raise ValueError(f"image_score {image_score!r} needs a good-image memory (a few-shot profile)")
        inputs = ScoreInputs(image_logits, maps, top_k)
        return {name: SCORE_RULES[name].fn(inputs) for name in rule_names()}, maps
    knn = memory.distance_map(patch_tokens, resolution) / state.knn_scale
    alone = ScoreInputs(image_logits, maps, top_k)
    maps = (1 - state.fusion_weight) * maps + state.fusion_weight * knn.clamp(0.0, 1.0)
    inputs = ScoreInputs(image_logits, maps, top_k, knn, state.score_stats)
    scores = {name: SCORE_RULES[name].fn(inputs) for name in rule_names(memory=True)}
    rule = SCORE_RULES[image_score]
    scores[MODEL_RULE] = _cls(alone) if rule.needs_memory else rule.fn(alone)
    return scores, maps
