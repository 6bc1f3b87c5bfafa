"""Batched inference: inputs -> ``Prediction`` (score, verdict, map and mask at the original size)."""
from __future__ import annotations

import glob
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from .config import resolution_for
from .preprocess import (IMAGE_EXTENSIONS, ImageInput, ImageReadError, Tile, as_inputs, check_size, crop_and_resize,
                         describe, load, normalize, plan_tiles, stitch)
from .regions import find_regions, verdict_mask
from .scoring import rule_names


NONFINITE = "the model returned a non-finite (NaN or inf) score or map, so no verdict; its weights may be damaged"


@dataclass
class Prediction:
    """One image's result. ``error`` is set (and the rest empty) when the image could not be read."""

    name: str
    score: float = float("nan")  # image anomaly score in [0, 1], by the model's ``image_score`` rule
    scores: dict[str, float] | None = None  # raw score per rule of anomalyvfm.scoring (and "model", "raw" for
    # profiles)
    is_anomalous: bool = False  # score > threshold
    anomaly_map: np.ndarray | None = None  # float32 (H, W) in [0, 1], the original image size
    mask: np.ndarray | None = None  # bool (H, W): the verdict's mask (anomalyvfm.regions.verdict_mask)
    error: str | None = None
    image: np.ndarray | None = None  # the uint8 RGB input as read, only with ``keep_images=True``
    rule: str | None = None  # the rule behind ``score``: an image-score rule of anomalyvfm.scoring, or "batch"
    threshold_source: str | None = None  # where the verdict's threshold came from: "model" (the stored one),
    # "given" (passed by the caller), "calibration" (a profile's; 0.5 of the deviation) or "batch"
    regions: list | None = None  # the mask's connected components (anomalyvfm.regions.Region), strongest first
    threshold: float | None = None  # the verdict's threshold on ``score``'s scale (0.5 for calibrated deviations)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Loaded:
    name: str
    rgb: np.ndarray | None = None
    tiles: list[Tile] | None = None
    crops: list[np.ndarray] | None = None
    error: str | None = None
    warp: np.ndarray | None = None  # golden-reference mode: the image was aligned to the reference
    size: tuple[int, int] | None = None  # the original (height, width) when aligned


def collect_inputs(specs: Sequence[str], exclude: str | os.PathLike | None = None) -> list[str]:
    """Expand files, folders (recursively, image extensions only, hidden files and folders left out: macOS's
    ``._name.jpg`` twins, ``.thumbs``) and glob patterns into a sorted, de-duplicated list. An existing path is taken
    as it is (``part[1].jpg`` is a file, not a pattern), and an explicit file is kept whatever its extension, so that
    a bad file is reported rather than skipped. Files under ``exclude`` (the run's own output folder) are left out of
    folders and patterns."""
    skip = Path(exclude).resolve() if exclude is not None else None

    def keep(path: str) -> bool:
        return skip is None or not Path(path).resolve().is_relative_to(skip)

    found: list[str] = []
    for spec in specs:
        if os.path.isdir(spec):
            found += sorted(str(p) for p in Path(spec).rglob("*")
                            if p.suffix.lower() in IMAGE_EXTENSIONS and keep(str(p))
                            and not any(part.startswith(".") for part in p.relative_to(spec).parts))
        elif os.path.lexists(spec) or not glob.has_magic(spec):
            found.append(spec)
        else:
            found += sorted(p for p in glob.glob(spec, recursive=True) if not os.path.isdir(p) and keep(p))
    return list(dict.fromkeys(found))


def _load(item: ImageInput, index: int, resolution: int, max_aspect: float,
          reference: np.ndarray | None = None, tile_size: int = 0) -> _Loaded:
    name = describe(item, index)
    try:
        rgb = load(item)
    except ImageReadError as e:
        return _Loaded(name, error=e.reason)
    except ValueError as e:  # an array of the wrong shape
        return _Loaded(name, error=str(e))
    refused = check_size(*rgb.shape[:2], tile_size)
    if refused:
        return _Loaded(name, error=refused)
    if reference is not None:  # golden-reference mode: one whole-image view, aligned to the reference
        from .golden import align

        aligned, warp = align(rgb, reference)
        tile = Tile(0, aligned.shape[0], 0, aligned.shape[1])
        return _Loaded(name, rgb, [tile], [crop_and_resize(aligned, tile, resolution)], warp=warp,
                       size=rgb.shape[:2])
    tiles = plan_tiles(rgb.shape[0], rgb.shape[1], max_aspect, tile_size)
    return _Loaded(name, rgb, tiles, [crop_and_resize(rgb, t, resolution) for t in tiles])


def _chunks(items: Sequence, size: int) -> Iterator[list[tuple[int, object]]]:
    for start in range(0, len(items), size):
        yield list(enumerate(items[start:start + size], start))


def iter_predict(model, images: Iterable[ImageInput], batch_size: int = 8, mode: str | None = None,
                 resolution: int | None = None, threshold: float | None = None,
                 pixel_threshold: float | None = None, errors: str = "keep",
                 keep_images: bool = False) -> Iterator[Prediction]:
    """Yield one ``Prediction`` per input, in order. Images are read and resized in a background thread while
    the model runs on the previous batch. ``errors="raise"`` raises ``ImageReadError`` instead of keeping going."""
    if errors not in ("keep", "raise"):
        raise ValueError(f"errors must be 'keep' or 'raise', got {errors!r}")
    cfg = model.config
    res = resolution_for(mode, resolution, cfg.mode)
    source = "given" if threshold is not None else ("calibration" if model.profile is not None and
                                                     model.profile.calibration is not None else "model")
    threshold = cfg.threshold if threshold is None else threshold
    pixel_threshold = cfg.pixel_threshold if pixel_threshold is None else pixel_threshold
    for name, value in (("threshold", threshold), ("pixel_threshold", pixel_threshold)):
        if not math.isfinite(value):  # every comparison with a NaN is False: each verdict would read 'normal'
            raise ValueError(f"{name} must be a finite number, got {value}")
    items = as_inputs(images)
    calibration = model.profile.calibration if model.profile is not None else None
    if calibration is not None and calibration.resolution and calibration.resolution != res:
        warnings.warn(f"this profile was calibrated at {calibration.resolution} px but predicts at {res} px: its "
                      f"threshold does not carry over (scores shift with resolution); predict at "
                      f"{calibration.resolution} px or recalibrate at {res}", stacklevel=2)
    model.prepare_for_inference()
    device = model.device

    reference = model.profile.reference if model.profile is not None else None

    def load_chunk(chunk):
        return [_load(item, i, res, cfg.max_aspect, reference, cfg.tile_size) for i, item in chunk]

    with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
        chunks = _chunks(items, batch_size)
        pending = pool.submit(load_chunk, next(chunks, []))
        while True:
            loaded = pending.result()
            if not loaded:
                break
            pending = pool.submit(load_chunk, next(chunks, []))
            for result in _run(model, loaded, res, threshold, pixel_threshold, batch_size, device):
                if result.ok:
                    result.rule, result.threshold_source = cfg.image_score, source
                    result.threshold = 0.5 if calibration is not None else float(threshold)
                if result.error and errors == "raise":
                    raise ImageReadError(result.name, result.error)
                if not keep_images:
                    result.image = None
                yield result


def _run(model, loaded: list[_Loaded], res: int, threshold: float, pixel_threshold: float, batch_size: int,
         device) -> list[Prediction]:
    crops = [c for item in loaded if item.crops for c in item.crops]
    rules = tuple(rule_names())
    calibration = model.profile.calibration if model.profile is not None else None
    scores, maps = [], []
    for start in range(0, len(crops), batch_size):
        x = normalize(np.stack(crops[start:start + batch_size]), model.config.mean, model.config.std).to(device)
        s, m = model.infer(x, res)
        rules = tuple(s)  # the image-score rules, plus "model" for a profile with a fused memory
        scores.append(torch.stack([s[r].double() for r in rules], 1).cpu())  # float64: no ties near 1
        maps.append(m.float().cpu())
    scores_np = torch.cat(scores).numpy() if scores else np.zeros((0, len(rules)), np.float64)
    maps_np = torch.cat(maps).numpy() if maps else np.zeros((0, res, res), np.float32)
    results, k = [], 0
    for item in loaded:
        if item.error:
            results.append(Prediction(item.name, error=item.error))
            continue
        n = len(item.tiles)
        if item.size is not None:  # aligned to the golden reference: the map goes back to the image's own frame
            from .golden import unwarp

            ref_h, ref_w = model.profile.reference.shape[:2]
            amap = unwarp(stitch(list(maps_np[k:k + n]), item.tiles, ref_h, ref_w), item.warp, *item.size)
        else:
            h, w = item.rgb.shape[:2]
            amap = stitch(list(maps_np[k:k + n]), item.tiles, h, w)
        amap = amap.astype(np.float32)
        by_rule = dict(zip(rules, scores_np[k:k + n].max(0).tolist()))  # a tiled image: its most anomalous tile
        score = by_rule[model.config.image_score]
        if calibration is not None:  # a calibrated profile: the 0–1 deviation score, its threshold at 0.5
            by_rule["raw"] = score
            score = calibration.deviation(score)
        k += n
        if not (np.isfinite(score) and np.isfinite(amap).all()):  # never a verdict: a damaged model, not a part
            results.append(Prediction(item.name, error=NONFINITE))
            continue
        flagged = bool(score > threshold)
        mask = verdict_mask(amap, pixel_threshold, flagged)
        results.append(Prediction(item.name, score=score, scores=by_rule, is_anomalous=flagged, anomaly_map=amap,
                                  mask=mask, image=item.rgb, regions=find_regions(mask, amap)))
    return results
