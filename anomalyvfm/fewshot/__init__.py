"""Few-shot adaptation from a handful of good images, in three stages that each return a value:

1. ``adapt``: fine-tune a copy of the adapters, decoder and head on synthetic defects made on those images;
2. ``fit_memory``: their adapted patch features as a memory bank, with the fusion weight and score statistics;
3. ``fit_calibration``: a threshold from the good images alone.

``finetune`` runs them and returns the profile model (the adapted model with its ``ProfileState``) and a report;
``save_profile`` writes it as a checkpoint folder plus ``profile.json`` (provenance), loadable by
``AnomalyVFM.from_pretrained`` and ``anomalyvfm predict --model``."""
from __future__ import annotations

import dataclasses
import datetime
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..checkpoint import PROFILE_NAME, write_provenance
from ..config import MODES, resolution_for
from ..hashing import sha256_if_file
from ..locations import shipped_folder
from ..model import AnomalyVFM
from ..preprocess import ImageInput, describe, load
from ..profile import ProfileState
from .adapt import adapt
from .calibrate import fit_calibration, recalibrate
from .config import FinetuneConfig, FinetuneReport
from .fit import defect_patches, fit_memory
from .views import augment, read_defective, read_good

__all__ = ["FinetuneConfig", "FinetuneReport", "PROFILE_NAME", "augment", "finetune", "recalibrate", "save_profile"]


def finetune(model: AnomalyVFM, good: Sequence[ImageInput], config: FinetuneConfig | None = None, *,
             defective: Sequence[tuple[ImageInput, ImageInput | None]] | None = None,
             progress: bool = True) -> tuple[AnomalyVFM, FinetuneReport]:
    """Adapt a copy of ``model`` to one product from its good images. Returns (profile model, report); the profile
    model carries its memory, fusion weight and calibration in ``model.profile``. ``defective``: optional real
    defective images, each with its mask (or None): they join the training pairs (pixel loss where the mask is
    known, image loss always), a positive memory and the calibration."""
    cfg = config or FinetuneConfig()
    tic = time.perf_counter()
    res = resolution_for(cfg.mode, cfg.resolution, model.config.mode)
    images = read_good(good, res)
    if not images:
        raise ValueError("finetune needs at least one good image")
    real = read_defective(defective or [], res)
    profile, held, report = adapt(model, images, real, cfg, res, progress)
    state = ProfileState(reference=load(good[0]) if cfg.golden else None)
    if cfg.memory or cfg.golden:
        fit = fit_memory(profile, images, held, cfg, res)
        state = replace(fit.state, reference=state.reference)
        if real and cfg.defect_memory:
            defects = defect_patches(profile, real, state.memory, cfg.batch_size)
            state = replace(state, memory=replace(state.memory, defects=defects))
        profile.config.image_score = fit.image_score
        report.fusion_weight, report.held_out = state.fusion_weight, fit.held_out
    calibration = fit_calibration(profile, images, state, cfg, res, [image for image, _ in real])
    profile.profile = replace(state, calibration=calibration)
    report.calibration = calibration.to_dict()
    profile.config.threshold, profile.config.threshold_origin = 0.5, "calibrated"
    profile.config.mode = next((k for k, v in MODES.items() if v == res), profile.config.mode)
    report.seconds = time.perf_counter() - tic
    return profile, report


def save_profile(model: AnomalyVFM, directory: str | os.PathLike, *, base: str, good: Sequence[ImageInput],
                 config: FinetuneConfig, report: FinetuneReport) -> Path:
    """Write the profile: the checkpoint files with its state (see ``anomalyvfm.checkpoint``), ``profile.json``
    (base model, images used with their sha256, date, package version, settings, report) and its model card
    (README.md, tagged few-shot, filled from profile.json)."""
    from importlib import metadata

    directory = model.save_pretrained(directory)
    if shipped_folder(base):  # a shipped checkpoint by the name it loads by, not this machine's path to it
        base = Path(base).name
    try:
        version = metadata.version("anomalyvfm")
    except metadata.PackageNotFoundError:
        version = None
    write_provenance(directory, {
        "base_model": base, "base_backbone_sha256": model.config.backbone_sha256,
        "images": [{"name": describe(item, i), "sha256": sha256_if_file(item)} for i, item in enumerate(good)],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "anomalyvfm_version": version, "finetune": dataclasses.asdict(config), "report": dataclasses.asdict(report)})
    from ..cards import build_card
    from ..checkpoint import CARD_NAME
    from ..outputs import atomic_write_bytes

    atomic_write_bytes(directory / CARD_NAME, str(build_card(directory)).encode())  # filled from profile.json
    return directory
