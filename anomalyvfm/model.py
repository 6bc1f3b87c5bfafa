"""AnomalyVFM: a DINOv2 backbone with LoRA in every layer, a mask/confidence decoder and an image head."""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import load_backbone, num_prefix_tokens, weights_fingerprint
from .config import AnomalyVFMConfig
from .heads import Decoder, ImageHead
from .lora import apply_lora

CONFIG_NAME = "config.json"
HEADS_NAME = "heads.safetensors"
ADAPTER_NAME = "adapter_model.safetensors"
MEMORY_NAME = "memory.safetensors"
REFERENCE_NAME = "reference.png"


class BackboneMismatchError(ValueError):
    """The backbone at hand is not the one a checkpoint's adapters were trained on."""


@dataclass
class ModelOutput:
    mask_logits: torch.Tensor  # (B, 1, h·u, w·u)
    confidence_logits: torch.Tensor  # (B, 1, h·u, w·u)
    image_logits: torch.Tensor  # (B,)
    patch_tokens: torch.Tensor | None = None  # (B, h·w, D) L2-normalised last-layer patch tokens (for the memory)


class AnomalyVFM(nn.Module):
    """Zero-shot anomaly detector. ``forward`` gives logits; ``predict`` gives scores, verdicts and maps."""

    def __init__(self, config: AnomalyVFMConfig | None = None, *, backbone: nn.Module | None = None,
                 pretrained_backbone: bool = True):
        super().__init__()
        self.config = config = config or AnomalyVFMConfig()
        if backbone is None:
            backbone = load_backbone(config.backbone, pretrained=pretrained_backbone)
        fingerprint = weights_fingerprint(backbone)
        if config.backbone_sha256 is None:
            config.backbone_sha256 = fingerprint
        elif config.backbone_sha256 != fingerprint:
            raise BackboneMismatchError(
                f"backbone {config.backbone!r} has weights fingerprint {fingerprint[:16]}…, but this model's adapters "
                f"were trained on {config.backbone_sha256[:16]}…; load the same backbone weights")
        hidden = backbone.config.hidden_size
        self.patch_size = backbone.config.patch_size
        self.num_layers = backbone.config.num_hidden_layers
        self.prefix_tokens = num_prefix_tokens(backbone)
        self.backbone = apply_lora(backbone, config.adapter)
        self.decoder = Decoder(hidden * len(config.decoder.layers), config.decoder)
        self.image_head = ImageHead(hidden)
        self.memory: torch.Tensor | None = None  # (M, D) normalised patch tokens of good images (few-shot)
        self.defects: torch.Tensor | None = None  # (P, D) normalised patch tokens of known real defects (few-shot)
        self.reference: np.ndarray | None = None  # golden-reference mode: the uint8 RGB reference image
        self._merged = False

    # ---- forward -------------------------------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor) -> ModelOutput:
        layers = self.config.decoder.layers
        fused = layers != (-1,)
        out = self.backbone(pixel_values=pixel_values, output_hidden_states=fused)
        if fused:
            norm = self.backbone.get_base_model().layernorm
            tokens = [norm(out.hidden_states[1:][i]) for i in layers]
        else:
            tokens = [out.last_hidden_state]
        b, _, height, width = pixel_values.shape
        grid = torch.cat([t[:, self.prefix_tokens:] for t in tokens], dim=-1)
        grid = grid.transpose(1, 2).reshape(b, -1, height // self.patch_size, width // self.patch_size)
        mask_logits, confidence_logits = self.decoder(grid)
        patches = F.normalize(out.last_hidden_state[:, self.prefix_tokens:], dim=-1)
        return ModelOutput(mask_logits, confidence_logits, self.image_head(out.last_hidden_state[:, 0]), patches)

    def scores(self, out: ModelOutput, resolution: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Image scores (B,) in [0, 1] under every rule (``config.image_score`` picks the one used for verdicts) and
        anomaly maps (B, R, R) in [0, 1]. With a good-image memory (a few-shot profile) the map is
        (1 − w)·model map + w·kNN map, ``knn`` is the top-k mean of the kNN map alone, ``memory`` combines the image
        head with it (see ``config.score_stats``), and ``model`` is the configured rule without the memory."""
        logits = F.interpolate(out.mask_logits, size=(resolution, resolution), mode="bilinear", align_corners=False)
        maps = torch.sigmoid(logits[:, 0])
        cls = torch.sigmoid(out.image_logits)
        extra = {}
        if self.memory is not None:
            alone = self._topk(maps)  # the model's own map, for comparison
            knn = self.knn_map(out.patch_tokens, resolution, clamp=False)
            extra["knn"] = self._topk(knn).clamp(0.0, 1.0)
            stats = self.config.score_stats or {"cls": (0.0, 1.0), "knn": (0.0, 1.0)}
            z = ((out.image_logits - stats["cls"][0]) / stats["cls"][1]
                 + (self._topk(knn) - stats["knn"][0]) / stats["knn"][1])
            extra["memory"] = torch.sigmoid(z / 2)
            extra["model"] = {"topk": alone, "fused": (cls + alone) / 2}.get(self.config.image_score, cls)
            maps = (1 - self.config.fusion_weight) * maps + self.config.fusion_weight * knn.clamp(0.0, 1.0)
        elif self.config.image_score in ("knn", "memory"):
            raise ValueError(f"image_score {self.config.image_score!r} needs a good-image memory (a few-shot profile)")
        topk = self._topk(maps)
        return {"cls": cls, "topk": topk, "fused": (cls + topk) / 2, **extra}, maps

    def infer(self, pixel_values: torch.Tensor, resolution: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``scores(forward(x))``: what prediction runs per batch (an exported model offers the same call)."""
        return self.scores(self(pixel_values), resolution)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _topk(self, maps: torch.Tensor) -> torch.Tensor:
        flat = maps.flatten(1)
        return flat.topk(min(self.config.top_k, flat.shape[1]), dim=1).values.mean(1)

    def knn_map(self, patch_tokens: torch.Tensor, resolution: int, memory: torch.Tensor | None = None,
                clamp: bool = True) -> torch.Tensor:
        """(B, R, R) cosine distance of each patch to its nearest memory patch, divided by ``config.knn_scale``
        and (with ``clamp``) clipped to [0, 1]. With a defect memory, a patch nearer to a known defect patch than to
        any good one gains that difference: known defects stand out more, unseen ones are scored as before."""
        from .memory import nearest_distance

        memory = self.memory if memory is None else memory
        side = math.isqrt(int(patch_tokens.shape[1]))
        if self.config.memory_mode == "golden":
            from .golden import neighbourhood_distance

            if memory.shape[0] != side * side:
                ref = math.isqrt(int(memory.shape[0]))
                raise ValueError(f"the golden reference has a {ref}x{ref} patch grid but the input gives {side}x{side}: "
                                 f"predict at the profile's resolution ({ref * self.patch_size} px)")
            dist = neighbourhood_distance(patch_tokens, memory, side).view(-1, 1, side, side)
        else:
            dist = torch.stack([nearest_distance(t, memory) for t in patch_tokens]).view(-1, 1, side, side)
        if self.defects is not None:
            bad = torch.stack([nearest_distance(t, self.defects) for t in patch_tokens]).view_as(dist)
            dist = dist + (dist - bad).clamp(min=0.0)
        dist = F.interpolate(dist, size=(resolution, resolution), mode="bilinear", align_corners=False)[:, 0]
        dist = dist / self.config.knn_scale
        return dist.clamp(0.0, 1.0) if clamp else dist

    def train(self, mode: bool = True) -> "AnomalyVFM":
        super().train(mode)
        if mode and self._merged:
            self.backbone.unmerge_adapter()
            self._merged = False
        return self

    def prepare_for_inference(self) -> "AnomalyVFM":
        """eval mode with the LoRA weights merged into the backbone (no adapter cost per forward)."""
        self.eval()
        if not self._merged:
            self.backbone.merge_adapter()
            self._merged = True
        return self

    def trainable_parameters(self) -> Iterable[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    # ---- prediction ----------------------------------------------------------------------------------------------
    def predict(self, images, batch_size: int = 8, **kwargs):
        """Score images (paths, PIL images or arrays). Returns one ``Prediction`` per input, in order; an input
        that can't be read gets ``error`` set instead of stopping the batch. See ``anomalyvfm.predict.iter_predict``."""
        from .predict import iter_predict

        return list(iter_predict(self, images, batch_size=batch_size, **kwargs))

    # ---- persistence ---------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json, the adapters in PEFT's format and the decoder/head weights, safetensors only.
        Files are written to a temporary folder first and moved into place, so a reader never sees half of them."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        heads = {k: v.detach().contiguous() for k, v in self.state_dict().items()
                 if k.startswith(("decoder.", "image_head."))}
        adapters = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(self.backbone).items()}
        with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
            tmp = Path(tmp)
            self.backbone.peft_config["default"].save_pretrained(tmp)
            save_file(adapters, tmp / ADAPTER_NAME, metadata={"format": "pt"})
            save_file(heads, tmp / HEADS_NAME, metadata={"format": "pt"})
            if self.memory is not None:
                banks = {"memory": self.memory, "defects": self.defects}
                save_file({k: v.detach().contiguous() for k, v in banks.items() if v is not None}, tmp / MEMORY_NAME,
                          metadata={"format": "pt"})
            if self.reference is not None:
                from .outputs import write_png

                write_png(tmp / REFERENCE_NAME, self.reference)
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2))
            for f in tmp.iterdir():
                os.replace(f, directory / f.name)
        return directory

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    revision: str | None = None, commit_message: str = "Upload anomalyvfm model",
                    card: str | None = None) -> str:
        """``save_pretrained`` into a temporary folder (plus ``card`` as README.md) and upload it to ``repo_id``."""
        from .hub import push_folder

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            if card is not None:
                (Path(tmp) / "README.md").write_text(card)
            return push_folder(tmp, repo_id, private=private, token=token, revision=revision,
                               commit_message=commit_message)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike, *, revision: str | None = None,
                        backbone: nn.Module | None = None) -> "AnomalyVFM":
        """Load a checkpoint folder (or a hub repo id) written by ``save_pretrained``; safetensors only."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        directory = Path(name_or_dir)
        if not directory.is_dir():
            from huggingface_hub import snapshot_download

            directory = Path(snapshot_download(str(name_or_dir), revision=revision))
        config = AnomalyVFMConfig.from_dict(json.loads((directory / CONFIG_NAME).read_text()))
        model = cls(config, backbone=backbone)
        set_peft_model_state_dict(model.backbone, load_file(directory / ADAPTER_NAME))
        missing, unexpected = model.load_state_dict(load_file(directory / HEADS_NAME), strict=False)
        missing = [k for k in missing if k.startswith(("decoder.", "image_head."))]
        if missing or unexpected:
            raise ValueError(f"{directory / HEADS_NAME}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if (directory / MEMORY_NAME).is_file():
            banks = load_file(directory / MEMORY_NAME)
            model.memory, model.defects = banks["memory"], banks.get("defects")
        if (directory / REFERENCE_NAME).is_file():
            from .preprocess import read_image

            model.reference = read_image(directory / REFERENCE_NAME)
        return model.eval()


def shipped_checkpoint() -> Path:
    """The default zero-shot checkpoint inside the package."""
    return Path(__file__).parent / "weights" / "anomalyvfm-vits14"


def load_default(model: str | os.PathLike | None = None) -> AnomalyVFM:
    """The model ``anomalyvfm predict`` uses: ``model`` if given, else the shipped checkpoint; if no checkpoint is
    shipped yet, an untrained model on the embedded backbone (with a warning: its scores are not meaningful)."""
    if model is not None:
        return AnomalyVFM.from_pretrained(model)
    if (shipped_checkpoint() / CONFIG_NAME).is_file():
        return AnomalyVFM.from_pretrained(shipped_checkpoint())
    warnings.warn("no trained AnomalyVFM checkpoint is shipped yet: using an UNTRAINED decoder and head on the "
                  "embedded backbone; scores and maps are not meaningful", stacklevel=2)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return AnomalyVFM().eval()
