"""Dataclass configs for the AnomalyVFM model, validated on construction and stored as JSON."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODES: dict[str, int] = {"fast": 224, "accurate": 448}  # input side in pixels; both are multiples of 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation DINOv2 was trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
THRESHOLD_ORIGINS = ("unset", "synthetic", "calibrated")
BATCH_FUSION_KEYS = ("level_full", "level_zero", "max_weight")  # the BatchConfig fields fitted per checkpoint
QUANTIZATIONS = ("int8",)  # ONNX export: onnxruntime dynamic quantization of the MatMul weights
LORA_ROLES = ("query", "key", "value", "output", "fc1", "fc2")


@dataclass
class AdapterConfig:
    """LoRA adapters put in every transformer layer of the backbone."""

    rank: int = 8  # LoRA rank r
    alpha: float = 8.0  # LoRA scaling numerator (scale = alpha / rank)
    dropout: float = 0.0  # dropout on the adapter input during training
    targets: tuple[str, ...] = ("query", "value", "output")  # projection roles; see anomalyvfm.lora
    use_dora: bool = False  # weight-decomposed LoRA (DoRA)

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets)
        if self.rank < 1:
            raise ValueError(f"AdapterConfig.rank must be >= 1, got {self.rank}")
        unknown = [t for t in self.targets if t not in LORA_ROLES]
        if unknown or not self.targets:
            raise ValueError(f"AdapterConfig.targets must be a non-empty subset of {LORA_ROLES}, got {self.targets}")


@dataclass
class DecoderConfig:
    """Convolutional decoder on the patch grid and the image head on the CLS token."""

    layers: tuple[int, ...] = (-1,)  # transformer layers whose patch tokens are fused (negative = from the end)
    channels: int = 128  # width of the first decoder stage
    upsample: int = 2  # total upsampling of the patch grid, a power of two >= 2
    image_head: str = "cls"  # what the image head sees: "cls" (the CLS token) or "cls+map" (plus pooled statistics
    # of the decoder's mask logits: max, top-1% mean, mean, std)

    def __post_init__(self) -> None:
        self.layers = tuple(self.layers)
        if self.image_head not in ("cls", "cls+map"):
            raise ValueError(f"DecoderConfig.image_head must be 'cls' or 'cls+map', got {self.image_head!r}")
        if not self.layers:
            raise ValueError("DecoderConfig.layers must name at least one layer")
        if self.upsample < 2 or self.upsample & (self.upsample - 1):
            raise ValueError(f"DecoderConfig.upsample must be a power of two >= 2, got {self.upsample}")


@dataclass
class SelfSimilarityConfig:
    """Self-similarity scoring of one image (``anomalyvfm.self_similarity``): each patch against its own image's."""

    layers: tuple[int, ...] = (-1,)  # transformer blocks compared (negative = from the end); on a shallower backbone
    # an index past the first block reads the first block
    radii: tuple[int, ...] = (1, 3)  # neighbourhood aggregation degrees r (r×r average)
    nearest: float = 0.05  # a patch's score: mean distance to this fraction of its image's closest other patches
    exclude: int = 0  # patches within this Chebyshev distance of a patch are not its candidates (0: only itself)
    statistic: str = "max"  # image score: "max" of the patch map or "top1" (mean of its top 1% patches)
    # (defaults: chosen on the validation split, benchmarks/self_similarity.py)

    def __post_init__(self) -> None:
        self.layers, self.radii = tuple(self.layers), tuple(self.radii)
        if not self.layers or not self.radii:
            raise ValueError("SelfSimilarityConfig needs at least one layer and one radius")
        if any(r < 1 or r % 2 == 0 for r in self.radii):
            raise ValueError(f"SelfSimilarityConfig.radii must be odd and >= 1, got {self.radii}")
        if not 0.0 < self.nearest <= 0.5:
            raise ValueError(f"SelfSimilarityConfig.nearest must be in (0, 0.5], got {self.nearest}")
        if self.exclude < 0:
            raise ValueError(f"SelfSimilarityConfig.exclude must be >= 0, got {self.exclude}")
        if self.statistic not in ("max", "top1"):
            raise ValueError(f"SelfSimilarityConfig.statistic must be 'max' or 'top1', got {self.statistic!r}")


@dataclass
class AnomalyVFMConfig:
    """What the model is: everything needed to rebuild it around its backbone, its preprocessing and its decision
    rule. What a profile learned (memory, calibration) is a separate ``anomalyvfm.profile.ProfileState``."""

    backbone: str = "embedded"  # "embedded", a Hugging Face id, a local folder, or "timm:<name>"
    backbone_sha256: str | None = None  # fingerprint of the backbone weights the adapters were trained on
    weights_sha256: str | None = None  # sha256 of the adapter and head files, written on save and checked on load
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    image_score: str = "cls"  # the rule behind the verdict, a name in anomalyvfm.scoring.SCORE_RULES: "cls" (image
    # head), "topk" (mean of the top-k map pixels), "fused" (their mean), "self" (self-similarity), "cls+self";
    # a profile with a memory also "knn", "memory"
    self_similarity: SelfSimilarityConfig = field(default_factory=SelfSimilarityConfig)
    self_weight: float = 0.5  # weight of the self-similarity z-score in "cls+self" (1 − weight: the image head's)
    normal_stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # (mean, std) over the generator's
    # normals of the image logit ("cls") and the self-similarity score ("self"): the scale of their z-scores
    batch_fusion: dict[str, float] = field(default_factory=dict)  # batch mode's fusion constants measured for this
    # checkpoint (keys of BATCH_FUSION_KEYS, see anomalyvfm.batch); empty: BatchConfig's defaults
    top_k: int = 100  # pixels averaged for the "topk" score, counted at the model's input resolution
    threshold: float = 0.5  # image score above which an image is anomalous
    threshold_origin: str = "unset"  # where ``threshold`` came from: "unset" (0.5), "synthetic" (a quantile of the
    # generator's good images: not calibrated for any real product) or "calibrated" (good images of the product)
    pixel_threshold: float = 0.5  # map value above which a pixel belongs to the binary mask
    map_smoothing: int = 0  # side of a mean filter over the decoder's probability grid before upsampling (0: none;
    # the published evaluation uses 5, and our 32x32 grid at 224 px has the same 7 px per cell as its 96x96 at 672)
    test_views: str = "single"  # test-time views, a key of anomalyvfm.tta.TEST_VIEWS: ``infer`` averages the logits
    # of the image seen through each ("mirror": the image and its left-right mirror, twice the cost of one pass);
    # batch mode and the few-shot memory use the image alone
    edge_pad: int = 0  # patches of mirrored border added around each input at test time (``outputs``), the maps and
    # tokens cropped back to the image: the image's own edge then lies inside the network's field instead of at the
    # edge of its grid (0: none; 1 costs 18²/16² of the patches at 224 px); batch mode and the few-shot memory use
    # the image alone
    members: tuple[str, ...] = ()  # an ensemble: the other checkpoints this one holds (their names and weights'
    # sha256, for provenance), each the same architecture, their adapters and heads in members.safetensors;
    # ``outputs`` averages the logits of this model and every member, each over ``test_views`` (cost: one pass per
    # view per member); batch mode, the few-shot memory and fine-tuning use this model alone
    mode: str = "fast"  # default input resolution, a key of MODES
    max_aspect: float = 2.0  # longer/shorter side above which an image is tiled instead of squashed
    tile_size: int = 0  # side, in pixels of the original, of the overlapping squares an image larger than it is cut
    # into, each seen at the input resolution (0: the whole image, resized); for defects a few pixels wide on
    # large images. The image score is the most anomalous tile's, so the threshold depends on it
    mean: tuple[float, float, float] = IMAGENET_MEAN  # input normalisation, as the backbone was trained
    std: tuple[float, float, float] = IMAGENET_STD
    trained: bool = False  # False for a freshly built model: its heads are random

    def __post_init__(self) -> None:
        if isinstance(self.adapter, dict):
            self.adapter = AdapterConfig(**self.adapter)
        if isinstance(self.decoder, dict):
            self.decoder = DecoderConfig(**self.decoder)
        if isinstance(self.self_similarity, dict):
            self.self_similarity = SelfSimilarityConfig(**self.self_similarity)
        self.normal_stats = {k: (float(v[0]), float(v[1])) for k, v in self.normal_stats.items()}
        if set(self.batch_fusion) - set(BATCH_FUSION_KEYS):
            raise ValueError(f"batch_fusion keys must be among {BATCH_FUSION_KEYS}, got {sorted(self.batch_fusion)}")
        self.batch_fusion = {k: float(v) for k, v in self.batch_fusion.items()}
        if not 0.0 <= self.self_weight <= 1.0:
            raise ValueError(f"self_weight must be in [0, 1], got {self.self_weight}")
        self.mean, self.std, self.members = tuple(self.mean), tuple(self.std), tuple(self.members)
        from .scoring import SCORE_RULES

        if self.image_score not in SCORE_RULES:
            raise ValueError(f"image_score must be one of {tuple(SCORE_RULES)}, got {self.image_score!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {tuple(MODES)}, got {self.mode!r}")
        from .tta import TEST_VIEWS

        if self.test_views not in TEST_VIEWS:
            raise ValueError(f"test_views must be one of {tuple(TEST_VIEWS)}, got {self.test_views!r}")
        if self.edge_pad < 0:
            raise ValueError(f"edge_pad must be >= 0 patches, got {self.edge_pad}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.threshold_origin not in THRESHOLD_ORIGINS:
            raise ValueError(f"threshold_origin must be one of {THRESHOLD_ORIGINS}, got {self.threshold_origin!r}")
        if self.map_smoothing < 0 or (self.map_smoothing and self.map_smoothing % 2 == 0):
            raise ValueError(f"map_smoothing must be 0 or an odd kernel side, got {self.map_smoothing}")
        if self.max_aspect < 1.0:
            raise ValueError(f"max_aspect must be >= 1, got {self.max_aspect}")
        if self.tile_size != 0 and self.tile_size < 28:
            raise ValueError(f"tile_size must be 0 (no tiling) or >= 28 pixels, got {self.tile_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AnomalyVFMConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        if "flip_average" in data:  # before test_views (0.x checkpoints): a bool for the mirror set; test_views wins
            data = {"test_views": "mirror" if data["flip_average"] else "single", **data}
            del data["flip_average"]
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown AnomalyVFMConfig keys: {sorted(unknown)}")
        return cls(**data)


def resolution_for(mode: str | None = None, resolution: int | None = None, default_mode: str = "fast") -> int:
    """Input side in pixels: an explicit resolution wins over a mode; it must be a multiple of the patch size 14."""
    if resolution is None:
        mode = mode or default_mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {tuple(MODES)}, got {mode!r}")
        return MODES[mode]
    if resolution < 28 or resolution % 14:
        raise ValueError(f"resolution must be a multiple of 14 and >= 28, got {resolution}")
    return resolution
