"""``predict(..., batch_mode="mutual")``: the whole batch is read, passed once through the model (which also returns
the patch tokens that mutual scoring compares), mutually scored, fused with the model and given verdicts from its
own score distribution (``anomalyvfm.batch``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .batch import BatchConfig, BatchReport, calibrate_batch, fuse, robust_z
from .calibration import Calibration
from .config import resolution_for
from .errors import BatchError
from .mutual import score_batch
from .predict import NONFINITE, Prediction, _load, _Loaded
from .preprocess import ImageInput, ImageReadError, normalize, stitch
from .regions import find_regions, verdict_mask

BATCH_RULE = "batch"  # the rule name a batch-mode score is recorded under


@torch.inference_mode()
def _forward(model, loaded: list[_Loaded], res: int, batch_size: int, layers: tuple[int, ...], progress: bool):
    """Per crop: the model's configured-rule score and its map, through the model's test views as ``predict`` scores
    them, and the patch tokens of ``layers`` and the CLS token of the crop itself."""
    from tqdm import tqdm

    crops = [c for item in loaded if item.crops for c in item.crops]
    scores, maps, tokens, cls = [], [], [[] for _ in layers], []
    for start in tqdm(range(0, len(crops), batch_size), desc="batch: model", unit="batch", disable=not progress):
        x = normalize(np.stack(crops[start:start + batch_size]), model.config.mean, model.config.std)
        out = model.outputs(x.to(model.device), extra_layers=layers)
        s, m = model.scores(out, res)
        scores.append(s[model.config.image_score].float().cpu())
        maps.append(m.float().cpu())
        for store, t in zip(tokens, out.features.layers):
            store.append(t.half().cpu())
        cls.append(out.features.cls.float().cpu())
    return torch.cat(scores), torch.cat(maps), [torch.cat(t) for t in tokens], torch.cat(cls)


def _mutual_map(patch: torch.Tensor, res: int) -> torch.Tensor:
    """(N, h, w) mutual distances -> (N, R, R) in [0, 1]: 0 at the batch's median patch, 1 at its 99.9th
    percentile (a scale shared by the whole batch, so maps compare)."""
    lo, hi = torch.quantile(patch.flatten().float(), torch.tensor([0.5, 0.999]))
    m = ((patch - lo) / (hi - lo).clamp_min(1e-6)).clamp(0.0, 1.0)
    return torch.nn.functional.interpolate(m[:, None], size=(res, res), mode="bilinear", align_corners=False)[:, 0]


def predict_batch(model, images: Sequence[ImageInput], *, batch_size: int = 8, mode: str | None = None,
                  resolution: int | None = None, config: BatchConfig | None = None, errors: str = "keep",
                  keep_images: bool = False, progress: bool = False, references: Sequence[ImageInput] = ()
                  ) -> tuple[list[Prediction], BatchReport]:
    """Score a batch as a whole (see ``anomalyvfm.batch``). Returns one ``Prediction`` per input, in order (unreadable
    inputs get ``error``), and the batch's report (agreement, mutual weight, threshold, target FPR, fraction
    flagged, warnings). Each scored image's ``scores`` holds the model's score, the mutual score, their robust
    z-scores and the fused one; its ``score`` is the 0–1 deviation with the batch threshold at 0.5.
    ``references``: known good images (a profile's, say) that join the mutual comparison as extra members of the
    batch but get no result and do not move the batch's statistics."""
    cfg = config or BatchConfig.for_model(model)
    res = resolution_for(mode, resolution, model.config.mode)
    model.prepare_for_inference()
    reference = model.profile.reference if model.profile is not None else None
    aspect, tile_size = model.config.max_aspect, model.config.tile_size
    loaded = [_load(item, i, res, aspect, reference, tile_size) for i, item in enumerate(images)]
    bad = next((item for item in loaded if item.error), None)
    if bad is not None and errors == "raise":
        raise ImageReadError(bad.name, bad.error)
    good = [item for item in loaded if not item.error]
    extra = [_load(item, len(loaded) + i, res, aspect, reference, tile_size) for i, item in enumerate(references)]
    bad = next((item for item in extra if item.error), None)
    if bad is not None:
        raise ImageReadError(bad.name, bad.error)
    n_crops = sum(len(item.crops) for item in good)
    if len(good) < 2:  # images, not crops: one tiled image is still one image, with nothing to compare it with
        unreadable = [f"{item.name}: {item.error}" for item in loaded if item.error]
        raise BatchError(f"batch mode needs at least 2 readable images, got {len(good)}"
                         + (f" ({len(unreadable)} unreadable: {'; '.join(unreadable)})" if unreadable else ""))
    model_s, model_maps, tokens, cls = _forward(model, good + extra, res, batch_size, cfg.mutual.layers, progress)
    mutual = score_batch(tokens, cls, cfg.mutual, progress=progress)
    if extra:  # the references served as comparison partners only
        mutual = mutual.head(n_crops)
        model_s, model_maps = model_s[:n_crops], model_maps[:n_crops]
    per_image_model, per_image_mutual, spans, k = [], [], [], 0
    for item in good:  # a tiled image: its most anomalous tile
        n = len(item.crops)
        per_image_model.append(float(model_s[k:k + n].max()))
        per_image_mutual.append(float(mutual.image_scores[k:k + n].max()))
        spans.append((k, n))
        k += n
    finite = np.array([bool(np.isfinite(per_image_model[j]) and np.isfinite(per_image_mutual[j])
                            and torch.isfinite(model_maps[k:k + n]).all()) for j, (k, n) in enumerate(spans)])
    if finite.sum() < 2:
        raise BatchError(f"batch mode needs at least 2 images with finite scores, got {int(finite.sum())}: "
                         f"{NONFINITE}")
    pm, pu = np.array(per_image_model)[finite], np.array(per_image_mutual)[finite]
    level = float(torch.nan_to_num(mutual.patch_scores, nan=float("inf")).median())
    z = np.full(len(good), np.nan)
    z[finite], weight, agree = fuse(pm, pu, level, cfg)
    report = calibrate_batch(z[finite], cfg, level, agree, weight)
    cal = Calibration(threshold=report.threshold_z, scale=1.0, fpr=cfg.fpr, n_good=int(finite.sum()))
    maps = (1 - weight) * model_maps + weight * _mutual_map(mutual.patch_scores, res)
    zm, zu = np.full(len(good), np.nan), np.full(len(good), np.nan)
    zm[finite], zu[finite] = robust_z(pm), robust_z(pu)
    results, j = [], 0
    for item in loaded:
        if item.error or not finite[j]:
            results.append(Prediction(item.name, error=item.error or NONFINITE))
            j += not item.error
            continue
        k, n = spans[j]
        h, w = item.rgb.shape[:2]
        amap = stitch(list(maps[k:k + n].numpy()), item.tiles, h, w).astype(np.float32)
        score = float(cal.deviation(z[j]))
        scores = {"model": per_image_model[j], "mutual": per_image_mutual[j], "z_model": float(zm[j]),
                  "z_mutual": float(zu[j]), "z": float(z[j])}
        flagged = bool(score > 0.5)
        mask = verdict_mask(amap, model.config.pixel_threshold, flagged)
        results.append(Prediction(item.name, score=score, scores=scores, is_anomalous=flagged, anomaly_map=amap,
                                  mask=mask, image=item.rgb if keep_images else None, rule=BATCH_RULE,
                                  threshold_source="batch", regions=find_regions(mask, amap), threshold=0.5))
        j += 1
    return results, report
