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

    from .config import AnomalyVFMConfig
    from .model import ModelOutput
    from .profile import ProfileState


@dataclass
class ScoreInputs:
    image_logits: "torch.Tensor"  # (B,) image head logits
    maps: "torch.Tensor"  # (B, R, R) anomaly map in [0, 1] (fused with the memory's map when there is one)
    top_k: int  # pixels averaged by top-k rules, at the input resolution
    knn: "torch.Tensor | None" = None  # (B, R, R) kNN distance / knn_scale, unclamped (profiles with a memory)
    stats: dict | None = None  # "cls"/"knn": (mean, std) of good views, for standardised rules
    self_scores: "torch.Tensor | None" = None  # (B,) self-similarity image scores
    normals: dict | None = None  # "cls"/"self": (mean, std) over the generator's normals (``config.normal_stats``)
    self_weight: float = 0.5  # weight of the self-similarity z-score in "cls+self"


@dataclass(frozen=True)
class ScoreRule:
    name: str
    fn: Callable[[ScoreInputs], "torch.Tensor"]
    needs_memory: bool = False
    needs_self: bool = False  # computed only for a model whose own rule needs self-similarity (it adds 1-9% to a
    # forward pass at 224 px on a 2-core CPU: benchmarks/self_similarity.py --cost)
    help: str = ""


SCORE_RULES: dict[str, ScoreRule] = {}
MODEL_RULE = "model"  # a memory profile's configured rule without the memory (for comparison)


def register_score_rule(name: str, *, needs_memory: bool = False, needs_self: bool = False, help: str = ""):
    """Decorator: add ``fn(inputs) -> (B,) scores`` to the table under ``name``."""
    def wrap(fn):
        if name in SCORE_RULES or name == MODEL_RULE:
            raise ValueError(f"score rule {name!r} is already registered")
        SCORE_RULES[name] = ScoreRule(name, fn, needs_memory, needs_self, help)
        return fn

    return wrap


def rule_names(memory: bool = False, self_scores: bool = False) -> list[str]:
    """The rules a model computes, in table order (``memory``: a profile with a good-image memory; ``self_scores``:
    a model whose rule needs self-similarity, see ``needs_self``)."""
    return [r.name for r in SCORE_RULES.values()
            if (memory or not r.needs_memory) and (self_scores or not r.needs_self)]


def output_names(memory: bool = False, self_scores: bool = False) -> list[str]:
    """Every score a model reports, in order: its rules, then ``model`` for a memory profile."""
    return rule_names(memory, self_scores) + ([MODEL_RULE] if memory else [])


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


def _normal_z(x: ScoreInputs, key: str, values: "torch.Tensor") -> "torch.Tensor":
    mean, std = (x.normals or {}).get(key, (0.0, 1.0))
    return (values - mean) / std


@register_score_rule("self", needs_self=True,
                     help="self-similarity: patches unlike the rest of their own image (z over normals)")
def _self(x: ScoreInputs):
    return _normal_z(x, "self", x.self_scores).sigmoid()


@register_score_rule("cls+self", needs_self=True,
                     help="image head and self-similarity, each a z-score over the generator's normals, weighted by "
                          "self_weight")
def _cls_self(x: ScoreInputs):
    w = x.self_weight
    return ((1 - w) * _normal_z(x, "cls", x.image_logits) + w * _normal_z(x, "self", x.self_scores)).sigmoid()


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


def score_outputs(out: "ModelOutput", resolution: int, config: "AnomalyVFMConfig",
                  state: "ProfileState | None" = None) -> tuple[dict[str, "torch.Tensor"], "torch.Tensor"]:
    """Scores (B,) under every rule (float64) and maps (B, R, R) in [0, 1] from a forward pass. ``config.map_smoothing`` > 0
    averages the decoder's probabilities over a smoothing × smoothing window before upsampling. With a memory in
    ``state`` the map is (1 − w)·model map + w·kNN map and the memory rules and ``model`` are added."""
    import torch.nn.functional as F

    smoothing, image_score, top_k = config.map_smoothing, config.image_score, config.top_k
    if smoothing:
        probs = F.avg_pool2d(out.mask_logits.sigmoid(), smoothing, stride=1, padding=smoothing // 2,
                             count_include_pad=False)
        maps = F.interpolate(probs, size=(resolution, resolution), mode="bilinear", align_corners=False)[:, 0]
    else:
        logits = F.interpolate(out.mask_logits, size=(resolution, resolution), mode="bilinear", align_corners=False)
        maps = logits[:, 0].sigmoid()
    # image scores in float64: a float32 sigmoid is exactly 1.0 above a logit of ~16.6, so the most anomalous images
    # (standardised scores of a profile reach that) would tie with each other and with the threshold
    logits = out.image_logits.double()
    self_scores = out.self_scores.double() if out.self_scores is not None else None
    own = dict(self_scores=self_scores, normals=config.normal_stats, self_weight=config.self_weight)
    with_self = out.self_scores is not None
    memory = state.memory if state is not None else None
    if memory is None:
        if SCORE_RULES[image_score].needs_memory:
            raise ValueError(f"image_score {image_score!r} needs a good-image memory (a few-shot profile)")
        inputs = ScoreInputs(logits, maps, top_k, **own)
        return {name: SCORE_RULES[name].fn(inputs).double() for name in rule_names(self_scores=with_self)}, maps
    knn = memory.distance_map(out.patch_tokens, resolution) / state.knn_scale
    alone = ScoreInputs(logits, maps, top_k, **own)
    maps = (1 - state.fusion_weight) * maps + state.fusion_weight * knn.clamp(0.0, 1.0)
    inputs = ScoreInputs(logits, maps, top_k, knn.double(), state.score_stats, **own)
    scores = {name: SCORE_RULES[name].fn(inputs).double() for name in rule_names(memory=True, self_scores=with_self)}
    rule = SCORE_RULES[image_score]
    scores[MODEL_RULE] = (_cls(alone) if rule.needs_memory else rule.fn(alone)).double()
    return scores, maps
