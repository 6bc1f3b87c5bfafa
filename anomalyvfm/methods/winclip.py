"""WinCLIP and WinCLIP+ (Jeong et al., CVPR 2023) on open_clip.

Zero-shot: a compositional prompt ensemble gives one normal and one anomalous text embedding; the image score is
softmax(cos / T) of the image embedding, T = 0.07; window embeddings (2×2 and 3×3 patch windows, stride 1) are
scored the same way and aggregated onto patches by harmonic mean; the map is the harmonic mean of the image-level
map and the per-scale maps. WinCLIP+ (k good images): reference association of penultimate-layer patch tokens and
of window embeddings (min cosine distance / 2), averaged over scales, then averaged with the zero-shot map and
score."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..preprocess import normalize, resize_square
from .base import Method, Scored

NORMAL_STATES = ("{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                 "{} without damage")
ANOMALOUS_STATES = ("damaged {}", "{} with flaw", "{} with defect", "{} with damage")
TEMPLATES = (
    "a cropped photo of the {}.", "a close-up photo of a {}.", "a close-up photo of the {}.",
    "a bright photo of a {}.", "a bright photo of the {}.", "a dark photo of the {}.", "a dark photo of a {}.",
    "a jpeg corrupted photo of a {}.", "a jpeg corrupted photo of the {}.", "a blurry photo of the {}.",
    "a blurry photo of a {}.", "a photo of a {}.", "a photo of the {}.", "a photo of a small {}.",
    "a photo of the small {}.", "a photo of a large {}.", "a photo of the large {}.",
    "a photo of the {} for visual inspection.", "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.", "a photo of a {} for anomaly detection.",
)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class WeightsUnavailableError(OSError):
    """CLIP weights are neither local nor downloadable."""


def prompt_ensemble(class_name: str) -> tuple[list[str], list[str]]:
    """All normal and anomalous prompts: every state word of the class inside every template (7×21, 4×21)."""
    def expand(states):
        return [t.format(s.format(class_name)) for s in states for t in TEMPLATES]

    return expand(NORMAL_STATES), expand(ANOMALOUS_STATES)


def window_masks(grid: int, size: int) -> torch.Tensor:
    """Patch indices (n_windows, size²) of every size×size window on a grid×grid patch grid, stride 1."""
    idx = torch.arange(grid * grid).reshape(grid, grid)
    return torch.stack([idx[y:y + size, x:x + size].reshape(-1)
                        for y in range(grid - size + 1) for x in range(grid - size + 1)])


def harmonic_aggregation(window_scores: torch.Tensor, masks: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, n_windows) window scores -> (B, grid, grid): per patch, the harmonic mean of the windows covering it."""
    b = window_scores.shape[0]
    inv = torch.zeros(b, grid * grid, dtype=window_scores.dtype)
    count = torch.zeros(grid * grid, dtype=window_scores.dtype)
    for w in range(masks.shape[0]):
        inv[:, masks[w]] += 1.0 / window_scores[:, w:w + 1].clamp_min(1e-12)
        count[masks[w]] += 1
    return (count / inv).reshape(b, grid, grid)


def class_scores(embeddings: torch.Tensor, text: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Probability of the anomalous class: softmax over (normal, anomalous) of cosine / T."""
    logits = F.normalize(embeddings, dim=-1) @ text.T / temperature
    return logits.softmax(-1)[..., 1]


def association(embeddings: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """WinCLIP+ visual association: min over references of (1 − cosine) / 2; (B, n, D) x (M, D) -> (B, n)."""
    sim = F.normalize(embeddings, dim=-1) @ F.normalize(references, dim=-1).T
    return (1.0 - sim).min(dim=-1).values / 2


@dataclass
class WinCLIPConfig:
    model: str = "ViT-B-16-plus-240"  # open_clip model name
    pretrained: str = "laion400m_e31"  # open_clip pretrained tag, a local checkpoint path, or a hub id
    class_name: str | None = None  # object name in the prompts; default: the category name
    scales: tuple[int, ...] = (2, 3)  # window sizes in patches
    temperature: float = 0.07
    batch_size: int = 4


class WinCLIP(Method):
    """``winclip`` (k = 0) and, after ``fit`` with k good images, ``winclipplus``."""

    name = "winclip"
    zero_shot = True

    def __init__(self, config: WinCLIPConfig | None = None, clip_model=None, tokenizer=None, few_shot: bool = False):
        self.config = config = config or WinCLIPConfig()
        if clip_model is None:
            clip_model, tokenizer = load_clip(config.model, config.pretrained)
        self.clip = clip_model.eval()
        self.tokenizer = tokenizer
        visual = self.clip.visual
        self.resolution = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
        self.grid = self.resolution // (visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list))
                                        else visual.patch_size)
        self.masks = [window_masks(self.grid, s) for s in config.scales]
        mean = getattr(visual, "image_mean", None) or OPENAI_MEAN
        std = getattr(visual, "image_std", None) or OPENAI_STD
        self.mean, self.std = tuple(mean), tuple(std)
        self.few_shot = few_shot
        if few_shot:
            self.name, self.zero_shot = "winclipplus", False
        self.text: torch.Tensor | None = None
        self.class_name: str | None = config.class_name
        self.references: list[torch.Tensor] | None = None

    # ---- embeddings -------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def text_embeddings(self, class_name: str) -> torch.Tensor:
        """(2, D): the normalised mean embedding of the normal and of the anomalous prompts."""
        out = []
        for prompts in prompt_ensemble(class_name):
            e = F.normalize(self.clip.encode_text(self.tokenizer(prompts)), dim=-1).mean(0)
            out.append(F.normalize(e, dim=-1))
        return torch.stack(out)

    def _blocks(self, x: torch.Tensor, blocks) -> torch.Tensor:
        first = getattr(self.clip.visual.transformer, "batch_first", True)
        x = x if first else x.transpose(0, 1)
        for block in blocks:
            x = block(x)
        return x if first else x.transpose(0, 1)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        pooled, _ = self.clip.visual._pool(x)
        return pooled @ self.clip.visual.proj if self.clip.visual.proj is not None else pooled

    @torch.inference_mode()
    def encode(self, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Image embeddings (B, D), penultimate patch tokens (B, N, W), window embeddings per scale (B, n_w, D)."""
        crops = [resize_square(im, self.resolution) for im in images]
        x = self.clip.visual._embeds(normalize(np.stack(crops), self.mean, self.std))
        blocks = list(self.clip.visual.transformer.resblocks)
        penultimate = self._blocks(x, blocks[:-1])
        image = self._project(self._blocks(penultimate, blocks[-1:]))
        windows = []
        for masks in self.masks:
            b, n = x.shape[0], masks.shape[0]
            tokens = torch.cat([x[:, :1].unsqueeze(1).expand(b, n, 1, -1), x[:, 1:][:, masks]], dim=2)
            out = self._project(self._blocks(tokens.reshape(b * n, tokens.shape[2], -1), blocks))
            windows.append(out.reshape(b, n, -1))
        return image, penultimate[:, 1:], windows

    # ---- harness interface --------------------------------------------------------------------------------------
    def set_category(self, name: str) -> None:
        name = (self.config.class_name or name).replace("_", " ")
        if name != self.class_name or self.text is None:
            self.class_name, self.text = name, self.text_embeddings(name)

    def fit(self, references: dict[str, np.ndarray]) -> None:
        if not self.few_shot:
            return
        if not references:
            raise ValueError("winclipplus needs at least one good reference image (k >= 1)")
        embs = [self.encode([im]) for im in references.values()]
        patches = torch.cat([e[1][0] for e in embs])
        windows = [torch.cat([e[2][s][0] for e in embs]) for s in range(len(self.masks))]
        self.references = [patches, *windows]

    def score(self, images: dict[str, np.ndarray]) -> dict[str, Scored]:
        if self.text is None:
            self.set_category("object")
        if self.few_shot and self.references is None:
            raise RuntimeError("call fit() with the reference images before score()")
        out = {}
        keys = list(images)
        for start in range(0, len(keys), self.config.batch_size):
            chunk = keys[start:start + self.config.batch_size]
            scores, maps = self.score_batch([images[k] for k in chunk])
            for k, s, m in zip(chunk, scores, maps):
                h, w = images[k].shape[:2]
                out[k] = Scored(float(s), cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR))
        return out

    def _association_map(self, patches: torch.Tensor, windows: list[torch.Tensor]) -> torch.Tensor:
        """WinCLIP+'s few-shot map (B, grid, grid): patch and window association averaged over scales."""
        few = [association(patches, self.references[0]).reshape(-1, self.grid, self.grid)]
        few += [harmonic_aggregation(association(w, r), m, self.grid)
                for w, r, m in zip(windows, self.references[1:], self.masks)]
        return torch.stack(few).mean(0)

    @torch.inference_mode()
    def association_map(self, images: list[np.ndarray]) -> torch.Tensor:
        """The few-shot component alone (after ``fit``), on the patch grid."""
        _, patches, windows = self.encode(images)
        return self._association_map(patches, windows)

    @torch.inference_mode()
    def score_batch(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        image, patches, windows = self.encode(images)
        t = self.config.temperature
        image_score = class_scores(image, self.text, t)
        scales = [image_score.view(-1, 1, 1).expand(-1, self.grid, self.grid)]
        scales += [harmonic_aggregation(class_scores(w, self.text, t), m, self.grid)
                   for w, m in zip(windows, self.masks)]
        zero_map = len(scales) / (1.0 / torch.stack(scales).clamp_min(1e-12)).sum(0)
        if not self.few_shot:
            return image_score.numpy(), list(zero_map.numpy().astype(np.float32))
        few_map = self._association_map(patches, windows)
        final_map = (zero_map + few_map) / 2
        final_score = (image_score + few_map.flatten(1).amax(1)) / 2
        return final_score.numpy(), list(final_map.numpy().astype(np.float32))


def load_clip(model: str, pretrained: str):
    """An open_clip model and tokenizer; ``WeightsUnavailableError`` says how to provide the weights."""
    import open_clip

    try:
        clip_model = open_clip.create_model(model, pretrained=pretrained)
    except Exception as e:  # open_clip raises RuntimeError/OSError/HF errors when the file can't be had
        raise WeightsUnavailableError(
            f"weights unavailable for open_clip {model!r} / {pretrained!r} ({type(e).__name__}); download them "
            "where there is network and pass the checkpoint file path as --clip-pretrained") from e
    return clip_model, open_clip.get_tokenizer(model)
