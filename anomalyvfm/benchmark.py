"""The cross-dataset benchmark runner: every category x method x shots x seed -> metrics, resumable."""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from .data import Category, Sample, scan
from .methods import Method, Scored, create_method
from .metrics import image_metrics, pixel_metrics
from .outputs import atomic_write_bytes
from .preprocess import ImageReadError, read_image

log = logging.getLogger(__name__)


@dataclass
class BenchmarkConfig:
    data: str  # root folder scanned for datasets
    out: str = "results"
    methods: tuple[str, ...] = ("anomalyvfm", "knn")
    datasets: tuple[str, ...] = ()  # dataset names or dataset/category keys; empty = all found
    shots: tuple[int, ...] = (1, 4)  # k good references for few-shot methods
    seeds: tuple[int, ...] = (0, 1, 2)  # draws of the k references from train/good
    mode: str | None = None  # fast | accurate; None = each method's default
    resolution: int | None = None  # explicit input side; wins over mode
    pixel_max_side: int | None = None  # None = pixel metrics at the ground-truth resolution
    model: str | None = None  # checkpoint for the anomalyvfm method (default: the shipped one)
    clip_model: str | None = None  # open_clip model name for winclip/winclipplus
    clip_pretrained: str | None = None  # open_clip pretrained tag or local checkpoint path
    device: str = "auto"  # auto | cpu | cuda for the AnomalyVFM methods and kNN
    warnings: list[str] = field(default_factory=list)


def _part_path(cfg: BenchmarkConfig, cat: Category, method: str, k: int, seed: int) -> Path:
    return Path(cfg.out) / "parts" / f"{cat.dataset}__{cat.name}__{method}__k{k}__s{seed}.json"


def draw_shots(train: list[Sample], k: int, seed: int) -> list[Sample]:
    """k references drawn without replacement from train/good; the same (k, seed) always gives the same draw."""
    idx = np.random.default_rng(seed).permutation(len(train))[:k]
    return [train[i] for i in sorted(idx)]


def _read_mask(sample: Sample, shape: tuple[int, int], warn: Callable[[str], None]) -> np.ndarray | None:
    """The sample's boolean mask at its own resolution; zeros for good images; None (with a warning) when a
    defective image's mask is missing, unreadable or of another size than the image."""
    if sample.label == 0:
        return np.zeros(shape, bool)
    if sample.mask is None:
        return None
    mask = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        warn(f"{sample.mask}: unreadable mask; {sample.path.name} used for image metrics only")
        return None
    if mask.shape != shape:
        warn(f"{sample.mask}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image size "
             f"{shape[1]}x{shape[0]}; {sample.path.name} used for image metrics only")
        return None
    return mask > 0


def _load_images(samples: list[Sample], warn: Callable[[str], None]) -> dict[str, np.ndarray]:
    images = {}
    for s in samples:
        try:
            images[str(s.path)] = read_image(s.path)
        except ImageReadError as e:
            warn(f"{e}; skipped")
    return images


def evaluate(cat: Category, scored: dict[str, Scored], images: dict[str, np.ndarray], cfg: BenchmarkConfig,
             warn: Callable[[str], None]) -> dict:
    """Image and pixel metrics of one run over the test samples that could be read."""
    samples = [s for s in cat.test if str(s.path) in scored]
    labels = [s.label for s in samples]
    metrics = image_metrics(labels, [scored[str(s.path)].score for s in samples])
    for rule in scored[str(samples[0].path)].variants or {}:  # e.g. I-AUROC[cls], I-AUROC[topk], I-AUROC[fused]
        metrics[f"I-AUROC[{rule}]"] = image_metrics(labels, [scored[str(s.path)].variants[rule]
                                                             for s in samples])["I-AUROC"]
    verdicts = [scored[str(s.path)].verdict for s in samples]
    if all(v is not None for v in verdicts):  # a calibrated threshold: how it does on this test set
        v, y = np.array(verdicts, bool), np.array(labels, bool)
        metrics["FPR@thr"] = float(v[~y].mean()) if (~y).any() else float("nan")
        metrics["recall@thr"] = float(v[y].mean()) if y.any() else float("nan")
    pix_keys = ("P-AUROC", "P-AP", "P-F1max", "AUPRO@0.3")
    if cat.has_masks:
        masks, maps = [], []
        for s in samples:
            mask = _read_mask(s, images[str(s.path)].shape[:2], warn)
            if mask is not None:
                masks.append(mask)
                maps.append(scored[str(s.path)].anomaly_map)
        metrics.update(pixel_metrics(masks, maps, 0.3, cfg.pixel_max_side))
    else:
        metrics.update(dict.fromkeys(pix_keys, float("nan")))
    return metrics


def run_benchmark(cfg: BenchmarkConfig, factory: Callable[..., Method] | None = None) -> list[dict]:
    """Run every (category, method, shots, seed) not already finished under ``cfg.out/parts`` and return all rows."""
    factory = factory or (lambda name: create_method(name, mode=cfg.mode, resolution=cfg.resolution,
                                                     model=cfg.model, clip_model=cfg.clip_model,
                                                     clip_pretrained=cfg.clip_pretrained, device=cfg.device))
    skipped: list[str] = []
    categories = scan(cfg.data, cfg.datasets or None, skipped=skipped)

    def warn(message: str) -> None:
        if message not in cfg.warnings:
            cfg.warnings.append(message)
            tqdm.write(f"warning: {message}", file=sys.stderr)  # stdout carries only the summary table

    for message in skipped:
        warn(message)
    for cat in categories:
        for message in cat.warnings:
            warn(message)
    for name in cfg.methods:
        try:
            method = factory(name)
        except OSError as e:  # e.g. CLIP weights unavailable offline: report, and go on with the other methods
            warn(f"{name}: skipped: {e}")
            continue
        for cat in tqdm(categories, desc=f"{name}", unit="category"):
            method.set_category(cat.name)
            runs = [(0, 0)] if method.zero_shot else [(k, s) for k in cfg.shots for s in cfg.seeds]
            runs = [(k, s) for k, s in runs if not _part_path(cfg, cat, name, k, s).is_file()]
            if not runs:
                continue
            test = _load_images(cat.test, warn)
            labels = {s.label for s in cat.test if str(s.path) in test}
            if labels != {0, 1}:
                warn(f"{cat.key}: {len(test)} readable test images, not both good and defective ones; "
                     f"category skipped")
                continue
            for k, seed in tqdm(runs, desc=cat.key, unit="run", leave=False):
                if k > len(cat.train):
                    warn(f"{cat.key}: {k}-shot needs {k} train/good images, found {len(cat.train)}; skipped")
                    continue
                try:
                    _run_one(cfg, cat, method, name, k, seed, test, warn)
                except (ValueError, RuntimeError, OSError) as e:  # one run's failure never stops the others
                    warn(f"{cat.key}: {name} k={k} seed={seed} failed ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); skipped")
            method.clear_cache()
    from .report import collect_parts

    return collect_parts(Path(cfg.out) / "parts")


def _run_one(cfg: BenchmarkConfig, cat: Category, method: Method, name: str, k: int, seed: int,
             test: dict[str, np.ndarray], warn: Callable[[str], None]) -> None:
    """Fit on k references drawn with ``seed`` (none for zero-shot), score the test set, save the part."""
    fit_s = 0.0
    if k:
        references = _load_images(draw_shots(cat.train, k, seed), warn)
        if not references:
            raise ValueError(f"none of the {k} drawn train/good images could be read")
        tic = time.perf_counter()
        method.fit(references)
        fit_s = time.perf_counter() - tic
    start = time.perf_counter()
    scored = method.score(test)
    # features reused from an earlier shot/seed still count, so img/s is the cold per-image cost on every row
    elapsed = time.perf_counter() - start + method.reused_seconds
    row = {"dataset": cat.dataset, "category": cat.name, "method": name, "shots": k, "seed": seed,
           "resolution": method.resolution, **evaluate(cat, scored, test, cfg, warn),
           "img/s": len(test) / max(elapsed, 1e-9), "fit_s": fit_s,
           "pixel_resolution": f"max side {cfg.pixel_max_side}" if cfg.pixel_max_side else "ground truth"}
    samples = [s for s in cat.test if str(s.path) in scored]
    part = {"row": row, "paths": [str(s.path) for s in samples], "labels": [s.label for s in samples],
            "scores": [scored[str(s.path)].score for s in samples]}
    if seed == (cfg.seeds[0] if k else 0):  # one grid per method and k
        from .report import write_grid

        write_grid(Path(cfg.out) / "grids" / f"{cat.dataset}__{cat.name}__{name}__k{k}.png", samples, scored, test,
                   title=f"{cat.key} - {name} k={k} seed={seed}")
    path = _part_path(cfg, cat, name, k, seed)
    atomic_write_bytes(path, json.dumps(part).encode())


def config_dict(cfg: BenchmarkConfig) -> dict:
    d = asdict(cfg)
    d.pop("warnings")
    return d
