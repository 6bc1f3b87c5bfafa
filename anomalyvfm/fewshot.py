"""Few-shot adaptation from a handful of good images: fine-tune the adapters, decoder and head on synthetic defects
made on those images, store their adapted patch features as a kNN memory fused with the model's map, and calibrate
a threshold from the good images alone. The result is a product profile: a checkpoint folder (loadable by
``AnomalyVFM.from_pretrained`` and ``anomalyvfm predict --model``) plus ``profile.json`` with its provenance."""
from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .calibration import MIN_IMAGES, Calibration, calibrate
from .config import MODES, resolution_for
from .losses import anomalyvfm_loss
from .metrics import image_metrics
from .model import AnomalyVFM
from .outputs import atomic_write_bytes
from .preprocess import ImageInput, describe, load, normalize, resize_square
from .synth import SynthConfig
from .synth.generator import defect_on

PROFILE_NAME = "profile.json"


@dataclass
class FinetuneConfig:
    steps: int = 30  # most optimiser steps (early stopping may end sooner)
    batch_size: int = 8  # half augmented good images, half the same with a synthetic defect
    lr: float = 1e-4
    weight_decay: float = 1e-4
    alpha: float = 0.1  # confidence regulariser of the pixel loss
    image_weight: float = 1.0
    eval_every: int = 10  # steps between held-out evaluations
    patience: int = 2  # held-out evaluations without improvement before stopping
    holdout: int = 16  # synthetic held-out pairs (early stopping, fusion weight)
    mode: str | None = None  # fast | accurate; default: the base model's
    resolution: int | None = None
    seed: int = 0
    memory: bool = True  # keep the good images' adapted patch features and fuse their kNN map
    golden: bool = False  # fixed-position parts: the first good image is a golden reference every image is aligned
    # to; its patches are compared position by position (± one patch) instead of with the whole memory
    fusion_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # map fusion candidates, chosen by pixel AUROC
    # on the held-out pairs
    image_score: str | None = "memory"  # rule of the profile's image score; None = the best on the held-out pairs.
    # "memory" by default: the held-out pairs carry synthetic defects like those the image head was trained on, so
    # they overrate the head and underrate the memory, which is what sees a real product's own defects
    fpr: float = 0.01  # target false-positive rate of the calibrated threshold
    real_fraction: float = 0.5  # with real defective images given: share of training pairs that use one
    defect_memory: bool = True  # with real defective images given: keep their defect patches as a positive memory
    augmentations: int = 8  # augmented views per good image for calibration
    synth: dict = field(default_factory=dict)  # SynthConfig fields for the defects made on the good images


@dataclass
class FinetuneReport:
    steps: int = 0
    best_step: int = 0
    holdout_loss: list[float] = field(default_factory=list)
    fusion_weight: float = 0.0
    held_out: dict[str, float] = field(default_factory=dict)
    calibration: dict | None = None
    seconds: float = 0.0


def augment(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray | None = None):
    """A view of a good image that is still good: flips, a small shift-and-zoom, brightness/contrast jitter. With a
    ``mask``, returns (view, mask moved the same way)."""
    import cv2

    out, m = image, mask
    for axis in (1, 0):
        if rng.random() < 0.5:
            out = np.flip(out, axis)
            m = None if m is None else np.flip(m, axis)
    size = out.shape[0]
    scale = rng.uniform(1.0, 1.12)
    dx, dy = rng.uniform(-0.04, 0.04, 2) * size
    matrix = np.array([[scale, 0, (1 - scale) * size / 2 + dx], [0, scale, (1 - scale) * size / 2 + dy]], np.float32)
    out = cv2.warpAffine(np.ascontiguousarray(out), matrix, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    gain, bias = rng.uniform(0.9, 1.1), rng.uniform(-10, 10)
    out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    if mask is None:
        return out
    return out, cv2.warpAffine(np.ascontiguousarray(m), matrix, (size, size), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT)


def _pairs(rng: np.random.Generator, images: list[np.ndarray], n: int, synth: SynthConfig,
           sources: list[int] | None = None, real: list[tuple[np.ndarray, np.ndarray | None]] | None = None,
           real_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], np.ndarray]:
    """n (good view, defective view) pairs, interleaved: images (2n, R, R, 3), masks (2n, R, R), labels (2n,),
    the good image each pair came from, and whether each row's mask is known (a real defect without a mask: no)."""
    views, masks, labels, origin, known = [], [], [], [], []
    for j in range(n):
        i = sources[j] if sources is not None else int(rng.integers(len(images)))
        good = augment(rng, images[i])
        if real and rng.random() < real_fraction:
            image, mask = real[int(rng.integers(len(real)))]
            bad, bad_mask = augment(rng, image, mask if mask is not None else np.zeros(image.shape[:2], np.uint8))
            pair = {"bad": bad, "mask": bad_mask}
            known += [True, mask is not None]
        else:
            pair = defect_on(rng, good, synth)
            known += [True, True]
        views += [good, pair["bad"]]
        masks += [np.zeros(good.shape[:2], np.uint8), pair["mask"]]
        labels += [0.0, 1.0]
        origin += [i, i]
    return np.stack(views), np.stack(masks), np.array(labels, np.float32), origin, np.array(known)


def _loss(out, m: torch.Tensor, y: torch.Tensor, known: torch.Tensor, cfg: "FinetuneConfig") -> torch.Tensor:
    """The training objective; rows whose mask is unknown (real defects given without a mask) get the image loss
    only."""
    from .losses import confidence_weighted, image_loss, pixel_loss

    if bool(known.all()):
        return anomalyvfm_loss(out.mask_logits, out.confidence_logits, out.image_logits, m, y, cfg.alpha,
                               cfg.image_weight)
    m = torch.nn.functional.interpolate(m, size=out.mask_logits.shape[-2:], mode="bilinear", align_corners=False)
    pixel = confidence_weighted(pixel_loss(out.mask_logits[known], m[known]), out.confidence_logits[known],
                                cfg.alpha) if bool(known.any()) else out.mask_logits.sum() * 0
    return pixel + cfg.image_weight * image_loss(out.image_logits, y)


def _tensors(model: AnomalyVFM, views: np.ndarray, masks: np.ndarray, labels: np.ndarray, device):
    x = normalize(views, model.config.mean, model.config.std).to(device)
    m = torch.from_numpy(masks).float().div_(255.0).unsqueeze(1).to(device)
    return x, m, torch.from_numpy(labels).to(device)


def _trainable_state(model: AnomalyVFM) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def _forward_all(model: AnomalyVFM, views: np.ndarray, batch_size: int, device):
    """Model outputs for many views in batches: (mask logits, confidence, image logits, patch tokens) concatenated."""
    parts = []
    for s in range(0, len(views), batch_size):
        out = model(normalize(views[s:s + batch_size], model.config.mean, model.config.std).to(device))
        parts.append(out)
    from .model import ModelOutput

    return ModelOutput(*(torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(ModelOutput)))


def _read(images: Sequence[ImageInput], resolution: int) -> tuple[list[np.ndarray], list[str]]:
    out, names = [], []
    for i, item in enumerate(images):
        out.append(resize_square(load(item), resolution))  # ImageReadError names the file and what is wrong
        names.append(describe(item, i))
    return out, names


def _read_defective(items, resolution: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(image, mask or None) pairs resized to the training square; masks with nearest-neighbour."""
    import cv2

    out = []
    for image, mask in items:
        rgb = resize_square(load(image), resolution)
        m = None
        if mask is not None:
            m = load(mask)[..., 0]
            m = (cv2.resize(m, (resolution, resolution), interpolation=cv2.INTER_NEAREST) > 127).astype(np.uint8) * 255
        out.append((rgb, m))
    return out


def finetune(model: AnomalyVFM, good: Sequence[ImageInput], config: FinetuneConfig | None = None, *,
             defective: Sequence[tuple[ImageInput, ImageInput | None]] | None = None,
             progress: bool = True) -> tuple[AnomalyVFM, FinetuneReport]:
    """Adapt a copy of ``model`` to one product from its good images. Returns (profile model, report); the
    profile model carries the memory, the fusion weight and the calibration in its config. ``defective``: optional
    real defective images, each with its mask (or None): they join the training pairs (pixel loss where the mask is
    known, image loss always) and the calibration."""
    from tqdm import tqdm

    cfg = config or FinetuneConfig()
    tic = time.perf_counter()
    res = resolution_for(cfg.mode, cfg.resolution, model.config.mode)
    images, _ = _read(good, res)
    if not images:
        raise ValueError("finetune needs at least one good image")
    real = _read_defective(defective or [], res)
    device = next(model.parameters()).device
    model = copy.deepcopy(model).train()
    model.memory, model.defects, model.reference = None, None, None
    model.config.fusion_weight, model.config.calibration, model.config.memory_mode = 0.0, None, "knn"
    synth = SynthConfig(**{**cfg.synth, "size": res})
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 0])
    held = _pairs(np.random.default_rng([cfg.seed, 1]), images, cfg.holdout, synth,
                  sources=[j % len(images) for j in range(cfg.holdout)])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    report = FinetuneReport()

    def held_out_loss() -> float:
        model.eval()
        x, m, y = _tensors(model, *held[:3], device)
        losses = []
        with torch.no_grad():
            for s in range(0, len(x), cfg.batch_size):
                o = model(x[s:s + cfg.batch_size])
                losses.append(anomalyvfm_loss(o.mask_logits, o.confidence_logits, o.image_logits,
                                              m[s:s + cfg.batch_size], y[s:s + cfg.batch_size], cfg.alpha,
                                              cfg.image_weight).item())
        model.train()
        return float(np.mean(losses))

    best, best_state, stale = held_out_loss(), _trainable_state(model), 0
    report.holdout_loss.append(best)
    bar = tqdm(range(1, cfg.steps + 1), desc="finetune", unit="step", disable=not progress)
    for step in bar:
        views, masks, labels, _, known = _pairs(rng, images, cfg.batch_size // 2, synth, real=real,
                                                real_fraction=cfg.real_fraction)
        x, m, y = _tensors(model, views, masks, labels, device)
        loss = _loss(model(x), m, y, torch.from_numpy(known).to(device), cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        report.steps = step
        bar.set_postfix(loss=f"{loss.item():.4f}", held_out=f"{best:.4f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            current = held_out_loss()
            report.holdout_loss.append(current)
            if current < best:
                best, best_state, stale, report.best_step = current, _trainable_state(model), 0, step
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
    bar.close()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in best_state:
                p.copy_(best_state[name])
    model.prepare_for_inference()
    if cfg.golden:
        model.config.memory_mode, model.reference = "golden", load(good[0])
    per_image = _fit_memory(model, images, held, cfg, res, device, report) if cfg.memory or cfg.golden else None
    if per_image is not None and real and cfg.defect_memory:
        model.defects = _defect_patches(model, real, cfg.batch_size, device)
    _fit_calibration(model, images, per_image, cfg, res, device, report, [image for image, _ in real])
    model.config.mode = next((k for k, v in MODES.items() if v == res), model.config.mode)
    report.seconds = time.perf_counter() - tic
    return model, report


def _memory_of(model: AnomalyVFM, images: list[np.ndarray], batch_size: int, device) -> list[torch.Tensor]:
    """Per good image: its patch tokens and those of its horizontal/vertical flips, (3·h·w, D)."""
    views = np.stack([v for im in images for v in (im, im[:, ::-1], im[::-1])])
    tokens = _forward_all(model, np.ascontiguousarray(views), batch_size, device).patch_tokens
    return [tokens[3 * i:3 * i + 3].reshape(-1, tokens.shape[-1]) for i in range(len(images))]


def _leave_one_out(per_image: list[torch.Tensor], i: int) -> torch.Tensor:
    """The memory without image i (with a single image, the image itself: nothing else is known)."""
    others = [m for j, m in enumerate(per_image) if j != i]
    return torch.cat(others or per_image)


def _fit_memory(model: AnomalyVFM, images, held, cfg: FinetuneConfig, res: int, device,
                report: FinetuneReport) -> list[torch.Tensor]:
    """Build the memory; choose ``knn_scale`` and ``score_stats`` from the held-out good views, the fusion weight
    by pixel AUROC on the held-out pairs (each pair scored against the memory without the image it was made from),
    and the image-score rule (``cfg.image_score``, or the best on the held-out pairs). Returns the memory per good
    image."""
    from .metrics import pixel_metrics

    if model.config.memory_mode == "golden":  # the reference's own patch grid, position by position
        per_image = [_forward_all(model, np.stack(images[:1]), cfg.batch_size, device).patch_tokens[0]]
    else:
        per_image = _memory_of(model, images, cfg.batch_size, device)
    views, masks, labels, origin, _ = held
    if len(per_image) == 1:
        origin = [0] * len(origin)
    out = _forward_all(model, views, cfg.batch_size, device)
    model.config.knn_scale = 1.0
    knn = torch.cat([model.knn_map(out.patch_tokens[j:j + 1], res, _leave_one_out(per_image, origin[j]), clamp=False)
                     for j in range(len(views))])
    good = labels == 0
    model.config.knn_scale = scale = max(2.0 * float(knn[good].flatten(1).quantile(0.99, dim=1).mean()), 1e-3)
    knn = knn / scale
    knn_score = model._topk(knn)
    model.config.score_stats = {name: [float(v[good].mean()), max(float(v[good].std()), floor)]
                                for name, v, floor in (("cls", out.image_logits, 0.5), ("knn", knn_score, 0.05))}
    maps = torch.sigmoid(torch.nn.functional.interpolate(out.mask_logits, size=(res, res), mode="bilinear",
                                                         align_corners=False)[:, 0])
    truth = [m > 127 for m in masks]
    pixel = {w: pixel_metrics(truth, list(((1 - w) * maps + w * knn.clamp(0, 1)).numpy()), 0.3, max_side=64)["P-AUROC"]
             for w in cfg.fusion_weights}
    model.config.fusion_weight = report.fusion_weight = float(max(pixel, key=pixel.get))  # ties: the smaller w
    report.held_out = {f"P-AUROC@{w:g}": round(float(v), 4) for w, v in pixel.items()}
    model.memory = torch.cat(per_image)
    saved, model.memory = model.memory, None  # score the held-out views against their leave-one-out memories
    rules = {}
    for j in range(len(views)):
        model.memory = _leave_one_out(per_image, origin[j])
        one = type(out)(*(getattr(out, f.name)[j:j + 1] for f in dataclasses.fields(out)))
        for rule, value in model.scores(one, res)[0].items():
            rules.setdefault(rule, []).append(float(value))
    model.memory = saved
    y = labels.astype(int).tolist()
    held_auroc = {r: image_metrics(y, v)["I-AUROC"] for r, v in rules.items() if r != "model"}
    report.held_out.update({f"I-AUROC[{r}]": round(float(v), 4) for r, v in held_auroc.items()})
    model.config.image_score = cfg.image_score or max(held_auroc, key=held_auroc.get)
    return per_image


def _defect_patches(model: AnomalyVFM, real: list[tuple[np.ndarray, np.ndarray | None]], batch_size: int,
                    device) -> torch.Tensor:
    """Patch tokens of the known defects: where a mask covers at least a quarter of a patch, or, for an image
    without a mask, its 2% of patches farthest from the good memory (at least one)."""
    tokens = _forward_all(model, np.stack([image for image, _ in real]), batch_size, device).patch_tokens
    side = math.isqrt(tokens.shape[1])
    picked = []
    for (_, mask), t in zip(real, tokens):
        if mask is not None:
            cover = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(mask).float()[None, None] / 255, side)
            keep = cover.flatten() >= 0.25
        else:
            from .memory import nearest_distance

            dist = nearest_distance(t, model.memory)
            keep = torch.zeros_like(dist, dtype=torch.bool)
            keep[dist.topk(max(1, round(0.02 * len(dist)))).indices] = True
        picked.append(t[keep.to(t.device)])
    return torch.cat(picked)


def _fit_calibration(model: AnomalyVFM, images, per_image: list[torch.Tensor] | None, cfg: FinetuneConfig,
                     res: int, device, report: FinetuneReport, defective: list[np.ndarray]) -> None:
    """Raw scores of augmented views of each good image, each against the memory without that image, then a
    threshold at the target false-positive rate (moved up towards the real defective images' scores, if any)."""
    rng = np.random.default_rng([cfg.seed, 2])
    full = model.memory
    raw, groups = [], []
    model.config.calibration = None
    for i, image in enumerate(images):
        views = np.stack([image] + [augment(rng, image) for _ in range(cfg.augmentations - 1)])
        if per_image is not None:
            model.memory = _leave_one_out(per_image, i)
        with torch.no_grad():
            out = _forward_all(model, views, cfg.batch_size, device)
            scores, _ = model.scores(out, res)
        raw += scores[model.config.image_score].tolist()
        groups += [i] * len(views)
    model.memory = full
    raw_bad = None
    if defective:
        with torch.no_grad():
            scores, _ = model.scores(_forward_all(model, np.stack(defective), cfg.batch_size, device), res)
        raw_bad = scores[model.config.image_score].tolist()
    cal = calibrate(raw, cfg.fpr, raw_bad, groups=groups, bounded=True)
    if cal.n_images < MIN_IMAGES and not defective:
        import warnings

        warnings.warn(f"the threshold comes from {cal.n_images} good image(s): views of so few images do not show how "
                      f"much the next good image differs: on real data, for a 1% target, such thresholds flagged 9% (2 "
                      f"images) to 22% (1 image) of good test images (BENCHMARKS.md, 'Calibration'). Give {MIN_IMAGES} "
                      f"or more, or re-choose it from good images of the line: anomalyvfm calibrate PROFILE --good DIR",
                      stacklevel=3)
    model.config.calibration = report.calibration = cal.to_dict()
    model.config.threshold = 0.5


def recalibrate(model: AnomalyVFM, good: Sequence[ImageInput], fpr: float = 0.01,
                defective: Sequence[ImageInput] | None = None, batch_size: int = 8) -> Calibration:
    """Re-choose a model's threshold from images it has not seen (good, and optionally defective): they are scored
    as they are (no leave-one-out), so pass images that are not in its memory. As independent draws of the good
    population they give a normal prediction bound (see ``calibrate``)."""
    model.config.calibration = None
    raw_good = [p.scores[model.config.image_score] for p in model.predict(list(good), batch_size=batch_size,
                                                                             errors="raise")]
    raw_bad = [p.scores[model.config.image_score] for p in model.predict(list(defective), batch_size=batch_size,
                                                                            errors="raise")] if defective else None
    cal = calibrate(raw_good, fpr, raw_bad, bounded=True)
    model.config.calibration, model.config.threshold = cal.to_dict(), 0.5
    return cal


def _sha256(item: ImageInput) -> str | None:
    if isinstance(item, (str, os.PathLike)) and Path(item).is_file():
        return hashlib.sha256(Path(item).read_bytes()).hexdigest()
    return None


def save_profile(model: AnomalyVFM, directory: str | os.PathLike, *, base: str, good: Sequence[ImageInput],
                 config: FinetuneConfig, report: FinetuneReport) -> Path:
    """Write the profile: the checkpoint files (adapters, heads, memory, config with calibration) and
    ``profile.json`` (base model, images used with their sha256, date, package version, settings, report)."""
    from importlib import metadata

    directory = model.save_pretrained(directory)
    try:
        version = metadata.version("anomalyvfm")
    except metadata.PackageNotFoundError:
        version = None
    provenance = {
        "base_model": base, "base_backbone_sha256": model.config.backbone_sha256,
        "images": [{"name": describe(item, i), "sha256": _sha256(item)} for i, item in enumerate(good)],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "anomalyvfm_version": version, "finetune": dataclasses.asdict(config), "report": dataclasses.asdict(report)}
    atomic_write_bytes(directory / PROFILE_NAME, json.dumps(provenance, indent=2).encode())
    return directory
