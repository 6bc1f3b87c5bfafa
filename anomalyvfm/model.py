"""AnomalyVFM: a DINOv2 backbone with LoRA in every layer, a mask/confidence decoder and an image head."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import load_backbone, weights_fingerprint
from .config import AnomalyVFMConfig
from .errors import BackboneMismatchError
from .features import Features, extract, hidden_size, num_layers, num_prefix_tokens, patch_size
from .heads import Decoder, ImageHead
from .locations import WEIGHTS
from .lora import apply_lora
from .profile import ProfileState
from .scoring import SCORE_RULES, score_outputs
from .mutual import image_statistic
from .self_similarity import self_map
from .tta import IDENTITY, TEST_VIEWS, View, apply_view, undo_view

__all__ = ["AnomalyVFM", "BackboneMismatchError", "ModelOutput", "load_default", "shipped_checkpoint"]


@dataclass
class ModelOutput:
    mask_logits: torch.Tensor  # (B, 1, h·u, w·u)
    confidence_logits: torch.Tensor  # (B, 1, h·u, w·u)
    image_logits: torch.Tensor  # (B,)
    patch_tokens: torch.Tensor | None = None  # (B, h·w, D) L2-normalised last-layer patch tokens (for the memory)
    self_scores: torch.Tensor | None = None  # (B,) self-similarity image scores (``anomalyvfm.self_similarity``)
    features: Features | None = None  # the backbone's tokens at the layers ``forward`` was asked for (batch mode)

    _TENSORS = ("mask_logits", "confidence_logits", "image_logits", "patch_tokens", "self_scores")

    def select(self, index: slice | int) -> "ModelOutput":
        """The outputs of some images of the batch (an int keeps its batch dimension)."""
        index = slice(index, index + 1) if isinstance(index, int) else index
        return ModelOutput(**{n: None if getattr(self, n) is None else getattr(self, n)[index] for n in self._TENSORS})

    @staticmethod
    def concat(parts: list["ModelOutput"]) -> "ModelOutput":
        return ModelOutput(**{n: None if getattr(parts[0], n) is None else torch.cat([getattr(p, n) for p in parts])
                              for n in ModelOutput._TENSORS})


def _view_average(outs: list[ModelOutput], views: tuple[View, ...]) -> ModelOutput:
    """The mean of the outputs for several views of an image (``anomalyvfm.tta``), each view's maps turned back
    onto the image first. The memory tokens and features stay the first view's (the image itself)."""
    def mean(name: str, spatial: bool = False) -> torch.Tensor | None:
        parts = [getattr(o, name) for o in outs]
        if parts[0] is None:
            return None
        return torch.stack([undo_view(p, v) if spatial else p for p, v in zip(parts, views)]).mean(0)

    return ModelOutput(mean("mask_logits", True), mean("confidence_logits", True), mean("image_logits"),
                       outs[0].patch_tokens, mean("self_scores"), outs[0].features)


def _crop_tokens(feats: Features, side: int, pad: int) -> Features:
    """``feats`` of a (side × side) patch grid with only its inner (side − 2·pad)² patches."""
    def crop(tokens: torch.Tensor) -> torch.Tensor:
        grid = tokens.reshape(tokens.shape[0], side, side, -1)[:, pad:side - pad, pad:side - pad]
        return grid.reshape(tokens.shape[0], -1, tokens.shape[-1])

    return Features(feats.cls, crop(feats.last), [crop(t) for t in feats.layers])


class AnomalyVFM(nn.Module):
    """Zero-shot anomaly detector. ``forward`` gives logits; ``predict`` gives scores, verdicts and maps. A few-shot
    profile is the same model with a ``profile`` (``ProfileState``: memory, fusion weight, calibration)."""

    def __init__(self, config: AnomalyVFMConfig | None = None, *, backbone: nn.Module | None = None,
                 pretrained_backbone: bool = True, profile: ProfileState | None = None):
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
        self.patch_size = patch_size(backbone)
        self.num_layers = num_layers(backbone)
        self.prefix_tokens = num_prefix_tokens(backbone)
        spares = [copy.deepcopy(backbone) for _ in config.members]  # an ensemble's members, before LoRA goes in
        self.backbone = apply_lora(backbone, config.adapter)
        self.decoder = Decoder(hidden_size(backbone) * len(config.decoder.layers), config.decoder)
        self.image_head = ImageHead(hidden_size(backbone), map_stats=config.decoder.image_head == "cls+map")
        self.profile = profile  # what few-shot fitting learned; None for a plain checkpoint
        member_config = dataclasses.replace(config, members=())
        self.members = nn.ModuleList(AnomalyVFM(member_config, backbone=b) for b in spares)  # empty unless an ensemble
        self._merged = False

    # ---- forward -------------------------------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor, extra_layers: tuple[int, ...] = (), pad: int = 0) -> ModelOutput:
        """Logits, memory tokens and (when the configured rule needs them) self-similarity scores; ``extra_layers``
        also returns those layers' patch tokens (``out.features``), from the same backbone pass. ``pad``: patches of
        mirrored border added around the input, every map and token grid cropped back to the input's own."""
        layers = self.config.decoder.layers
        with_self = SCORE_RULES[self.config.image_score].needs_self
        own = tuple(max(i, -self.num_layers) for i in self.config.self_similarity.layers) if with_self else ()
        wanted = tuple(dict.fromkeys(layers + own + tuple(extra_layers)))
        b, _, height, width = pixel_values.shape
        if height != width:
            raise ValueError(f"AnomalyVFM takes square inputs (predict tiles or resizes to one), got {height}x{width}")
        if pad:
            pixel_values = F.pad(pixel_values, (pad * self.patch_size,) * 4, mode="reflect")
        feats = extract(self.backbone, pixel_values, wanted)
        side = pixel_values.shape[-1] // self.patch_size
        grid = torch.cat([feats.layers[wanted.index(i)] for i in layers], dim=-1)
        mask_logits, confidence_logits = self.decoder(grid.transpose(1, 2).reshape(b, -1, side, side))
        if pad:
            feats = _crop_tokens(feats, side, pad)
            cut = pad * self.config.decoder.upsample
            mask_logits, confidence_logits = (m[..., cut:-cut, cut:-cut] for m in (mask_logits, confidence_logits))
        self_scores = None
        if with_self:  # a training-free score: no gradient flows through it
            with torch.no_grad():
                own_map = self_map([feats.layers[wanted.index(i)] for i in own], self.config.self_similarity,
                                   side - 2 * pad)
                self_scores = image_statistic(own_map, self.config.self_similarity.statistic)
        extra = None
        if extra_layers:
            extra = Features(feats.cls, feats.last, [feats.layers[wanted.index(i)] for i in extra_layers])
        return ModelOutput(mask_logits, confidence_logits, self.image_head(feats.cls, mask_logits),
                           F.normalize(feats.last, dim=-1), self_scores, extra)

    def scores(self, out: ModelOutput, resolution: int, profile: ProfileState | None = None
               ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Image scores (B,) in [0, 1] under every rule of ``anomalyvfm.scoring`` (``config.image_score`` picks the
        one used for verdicts) and anomaly maps (B, R, R) in [0, 1], with ``profile`` (default: the model's own)."""
        return score_outputs(out, resolution, self.config, state=self.profile if profile is None else profile)

    def outputs(self, pixel_values: torch.Tensor, extra_layers: tuple[int, ...] = ()) -> ModelOutput:
        """The outputs that prediction scores: ``forward`` (with ``config.edge_pad``) on each of
        ``config.test_views`` (``anomalyvfm.tta``), the logits averaged (the memory tokens stay the image's own),
        then, for an ensemble, averaged with each member's outputs (the memory tokens stay this model's).
        ``extra_layers``: as in ``forward``, the image's own (its first view's, this model's)."""
        own = self._view_outputs(pixel_values, extra_layers)
        if not len(self.members):
            return own
        parts = [own] + [m._view_outputs(pixel_values) for m in self.members]
        return _view_average(parts, (IDENTITY,) * len(parts))  # members see the same image

    def _view_outputs(self, pixel_values: torch.Tensor, extra_layers: tuple[int, ...] = ()) -> ModelOutput:
        views, pad = TEST_VIEWS[self.config.test_views], self.config.edge_pad
        if len(views) == 1:
            return self(pixel_values, extra_layers, pad=pad)
        cell = self.patch_size // self.config.decoder.upsample  # input pixels per map cell, for shifted views
        if any(v.shift != (0, 0) for v in views) and cell * self.config.decoder.upsample != self.patch_size:
            raise ValueError(f"test_views {self.config.test_views!r} shifts by map cells, which needs the patch size "
                             f"({self.patch_size}) to be a multiple of decoder.upsample ({self.config.decoder.upsample})")
        return _view_average([self(apply_view(pixel_values, v, cell), extra_layers if v == IDENTITY else (), pad=pad)
                              for v in views], views)

    def infer(self, pixel_values: torch.Tensor, resolution: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``scores(outputs(x))``: what prediction runs per batch (an exported model offers the same call)."""
        return self.scores(self.outputs(pixel_values), resolution)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

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
        for member in self.members:
            member.prepare_for_inference()
        return self

    def trainable_parameters(self) -> Iterable[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    # ---- prediction ----------------------------------------------------------------------------------------------
    def predict(self, images, batch_size: int = 8, *, out: str | os.PathLike | None = None,
                batch_mode: str | None = None, batch_config=None, resume: bool = False, **kwargs):
        """Score images (paths, PIL images or arrays; one of them alone counts as a list of one). Returns one
        ``Prediction`` per input, in order; an input that can't be read gets ``error`` set instead of stopping the
        batch. With ``out``, the results folder (results.csv/.jsonl, heatmaps, overlays) is written too, as
        ``anomalyvfm predict`` writes it; the inputs are held only while they are drawn, unless ``keep_images=True``.
        ``resume=True`` continues the run already in ``out`` (``anomalyvfm.outputs.ResultsWriter``): inputs it scored
        are skipped, and only the others' predictions are returned. ``batch_mode="mutual"`` scores the images as one
        batch: mutual scoring fused with the model, verdicts from the batch's own score distribution
        (``anomalyvfm.batch``; its warnings are issued as warnings). See ``anomalyvfm.predict.iter_predict`` for the
        other options."""
        from .predict import iter_predict
        from .preprocess import as_inputs

        images = as_inputs(images)  # one path or image is a batch of one
        if batch_mode not in (None, "mutual"):
            raise ValueError(f"batch_mode must be None or 'mutual', got {batch_mode!r}")
        if resume and out is None:
            raise ValueError("resume=True continues the results folder given as out; none was given")
        keep = kwargs.get("keep_images", False)
        kwargs["keep_images"] = keep or out is not None  # the writer draws overlays
        writer = None
        if out is not None:
            from .config import resolution_for
            from .outputs import ResultsWriter
            from .runinfo import run_metadata

            metadata = run_metadata(self, model_id=None, resolution=resolution_for(kwargs.get("mode"),
                                                                                   kwargs.get("resolution"),
                                                                                   self.config.mode),
                                    mode=kwargs.get("mode"), batch_mode=batch_mode, device=self.device,
                                    threshold=kwargs.get("threshold"))
            writer = ResultsWriter(out, metadata=metadata, resume=resume).open()
            if writer.carried:
                images = [i for i in images if not (isinstance(i, (str, os.PathLike)) and writer.scored(i))]
        with writer or contextlib.nullcontext():  # an error from here on ends the run as failed, its lock released
            if batch_mode == "mutual":
                from .batch_predict import predict_batch

                results, report = predict_batch(self, images, batch_size=batch_size, config=batch_config, **kwargs)
                for message in report.warnings:
                    warnings.warn(message, stacklevel=2)
            else:
                results = iter_predict(self, images, batch_size=batch_size, **kwargs)
            if writer is None:
                return list(results)
            kept = []
            for p in results:
                writer.add(p)
                if not keep:  # drawn: the input goes, or a long run would hold every image in memory
                    p.image = None
                kept.append(p)
        return kept

    # ---- persistence: the format lives in anomalyvfm.checkpoint --------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the checkpoint (and profile state) folder, safetensors only; see ``anomalyvfm.checkpoint``."""
        from .checkpoint import save

        return save(self, directory)

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    revision: str | None = None, commit_message: str = "Upload anomalyvfm model",
                    card: str | None = None) -> str:
        """``save_pretrained`` into a temporary folder (plus ``card`` as README.md) and upload it to ``repo_id``."""
        from .checkpoint import CARD_NAME
        from .hub import push_folder

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            if card is not None:
                (Path(tmp) / CARD_NAME).write_text(card)
            return push_folder(tmp, repo_id, private=private, token=token, revision=revision,
                               commit_message=commit_message)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike, *, revision: str | None = None,
                        backbone: nn.Module | None = None) -> "AnomalyVFM":
        """Load a checkpoint or profile folder (or a hub repo id) written by ``save_pretrained``; safetensors only."""
        from .checkpoint import load

        return load(cls, name_or_dir, revision=revision, backbone=backbone)


DEFAULT_CHECKPOINT = "anomalyvfm-vits14"


def shipped_checkpoint(name: str = DEFAULT_CHECKPOINT) -> Path:
    """A zero-shot checkpoint inside the package, by name (default: the default one)."""
    return WEIGHTS / name


def shipped_names() -> list[str]:
    """The checkpoints shipped inside the package, loadable by name (``load_default("anomalyvfm-vits14-v1")``)."""
    return sorted(p.name for p in WEIGHTS.iterdir() if (p / "config.json").is_file()) if WEIGHTS.is_dir() else []


def load_default(model: str | os.PathLike | None = None) -> AnomalyVFM:
    """The model ``anomalyvfm predict`` uses: ``model`` if given (a folder, a hub id or the name of a checkpoint
    shipped in the package, see ``shipped_names``), else the default shipped checkpoint; if no checkpoint is
    shipped yet, an untrained model on the embedded backbone (with a warning: its scores are not meaningful)."""
    from .checkpoint import CONFIG_NAME

    if model is not None:
        if str(model) in shipped_names() and not Path(model).exists():  # a shipped checkpoint, by name
            return AnomalyVFM.from_pretrained(shipped_checkpoint(str(model)))
        return AnomalyVFM.from_pretrained(model)
    if (shipped_checkpoint() / CONFIG_NAME).is_file():
        return AnomalyVFM.from_pretrained(shipped_checkpoint())
    warnings.warn("no trained AnomalyVFM checkpoint is shipped yet: using an UNTRAINED decoder and head on the "
                  "embedded backbone; scores and maps are not meaningful", stacklevel=2)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return AnomalyVFM().eval()
