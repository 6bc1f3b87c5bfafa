"""Seeded, deterministic generator of paired good/defective images with exact masks.

Sample ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``: any slice of the stream can be
regenerated alone, in any order or process."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .defects import DEFAULT_DEFECTS, DEFECTS, blend
from .imaging import CONDITIONS, imaging
from .objects import part, scene
from .textures import DEFAULT_TEXTURES, TEXTURES


@dataclass
class SynthConfig:
    size: int = 224  # side of the square images
    object_fraction: float = 0.35  # share of object scenes (the rest are textures)
    multi_part_fraction: float = 0.35  # share of those object scenes that hold several components
    colour_fraction: float = 0.5  # share of colour (vs grey) images
    opacity: tuple[float, float] = (0.5, 1.0)  # δ range for ordinary defects
    low_contrast_fraction: float = 0.3  # share of defects blended faintly, δ in low_contrast_opacity
    low_contrast_opacity: tuple[float, float] = (0.15, 0.4)
    textures: tuple[str, ...] = DEFAULT_TEXTURES  # normal families; "photo" and "circuit" are opt-in
    defects: tuple[str, ...] = DEFAULT_DEFECTS  # defect families; "trace_fault" is opt-in
    min_mask_pixels: int = 12  # pairs whose visible defect is smaller are redrawn
    visible_level: int = 8  # grey levels (max over channels) a pixel must change by to be labelled anomalous
    imaging_fraction: float = 0.0  # share of pairs seen through imaging conditions (uneven light, exposure, sensor
    # noise, defocus, JPEG), the same on both images; 0 (the default) leaves every earlier pair unchanged
    imaging: tuple[str, ...] = tuple(CONDITIONS)  # the conditions drawn from

    def __post_init__(self) -> None:
        self.textures, self.defects, self.imaging = tuple(self.textures), tuple(self.defects), tuple(self.imaging)
        bad = [t for t in self.textures if t not in TEXTURES] + [d for d in self.defects if d not in DEFECTS] + \
            [c for c in self.imaging if c not in CONDITIONS]
        if bad:
            raise ValueError(f"unknown texture/defect/imaging families {bad}; known: {list(TEXTURES)}, "
                             f"{list(DEFECTS)} and {list(CONDITIONS)}")
        if not 0.0 <= self.imaging_fraction <= 1.0:
            raise ValueError(f"imaging_fraction must be in [0, 1], got {self.imaging_fraction}")
        if self.size < 32:
            raise ValueError(f"size must be >= 32, got {self.size}")


def normal_image(rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """A defect-free image, its foreground (where defects may go) and its family name."""
    colour = bool(rng.random() < cfg.colour_fraction)
    if rng.random() < cfg.object_fraction:
        if rng.random() < cfg.multi_part_fraction:
            image, fg = scene(rng, cfg.size, colour)
            return image, fg, "scene"
        image, fg = part(rng, cfg.size, colour)
        return image, fg, "object"
    family = str(rng.choice(cfg.textures))
    image = TEXTURES[family](rng, cfg.size, colour)
    return image, np.ones(image.shape[:2], bool), family


def normals(n: int, seed: int, cfg: SynthConfig, imaging_seed: int | None = None) -> list[np.ndarray]:
    """``n`` defect-free images (``normal_image`` draws from ``seed``), each seen through one draw of imaging
    conditions from ``cfg.imaging`` (draws from ``imaging_seed``) or, with ``imaging_seed=None``, clean. The first
    ``m`` of ``n`` are the ``m`` drawn alone with the same seeds. Default thresholds are set on these."""
    rng = np.random.default_rng(seed)
    images = [normal_image(rng, cfg)[0] for _ in range(n)]
    if imaging_seed is None:
        return images
    rng = np.random.default_rng(imaging_seed)
    seen = []
    for image in images:
        apply, _ = imaging(rng, image.shape, cfg.imaging)
        seen.append(apply(image))
    return seen


def make_pair(rng: np.random.Generator, cfg: SynthConfig) -> dict:
    """One sample: good image, defective image, float mask in [0, 1], and what was drawn."""
    good, fg, family = normal_image(rng, cfg)
    sample = {"good": good, **defect_on(rng, good, cfg, fg, family), "family": family, "imaging": ""}
    if cfg.imaging_fraction and rng.random() < cfg.imaging_fraction:
        sample = seen_through_camera(rng, sample, cfg)
    return sample


def seen_through_camera(rng: np.random.Generator, sample: dict, cfg: SynthConfig) -> dict:
    """The pair under one draw of imaging conditions, applied alike to both images; the mask is re-derived from
    what still visibly differs (a blur spreads a defect, noise can drown a faint one). A pair whose defect no
    longer shows is kept as drawn."""
    apply, names = imaging(rng, sample["good"].shape, cfg.imaging)
    good, bad = apply(sample["good"]), apply(sample["bad"])
    mask = visible_change(good, bad, cfg.visible_level)
    if mask.sum() < cfg.min_mask_pixels:
        return sample
    return {**sample, "good": good, "bad": bad, "mask": mask.astype(np.uint8) * 255, "imaging": "+".join(names)}


FALLBACK_DEFECT = "foreign_object"  # drawn at full opacity when no family gives a visible change


def visible_change(good: np.ndarray, bad: np.ndarray, level: int) -> np.ndarray:
    """Where the defective image differs from the good one by at least ``level`` grey levels in some channel."""
    return np.abs(bad.astype(np.int16) - good.astype(np.int16)).max(axis=2) >= level


def defect_on(rng: np.random.Generator, good: np.ndarray, cfg: SynthConfig, fg: np.ndarray | None = None,
              family: str | None = None) -> dict:
    """A synthetic defect on a given (square, ``cfg.size``) image: the defective image, its 0/255 mask and what
    was drawn. ``fg`` limits where defects go; ``family`` keeps the donor texture of a texture swap different.

    The mask is what visibly changed, not what was drawn: the pixels that moved by at least ``cfg.visible_level``
    grey levels. A draw whose visible change is under ``cfg.min_mask_pixels`` (a warp of a flat patch, a faint
    stain on a dark surface) is redrawn, so no label marks a change nobody could see."""
    fg = np.ones(good.shape[:2], bool) if fg is None else fg

    def applied(source: np.ndarray, drawn: np.ndarray, opacity: float) -> tuple[np.ndarray, np.ndarray, bool]:
        bad = blend(good, source, drawn, opacity)
        mask = visible_change(good, bad, cfg.visible_level)
        return bad, mask, bool(mask.sum() >= cfg.min_mask_pixels)

    for _ in range(30):
        defect = str(rng.choice(cfg.defects))
        donor_family = str(rng.choice([t for t in cfg.textures if t != family] or cfg.textures))
        donor = TEXTURES[donor_family](rng, good.shape[0], bool(rng.random() < cfg.colour_fraction))
        source, drawn = DEFECTS[defect](rng, good, fg, donor)
        faint = bool(rng.random() < cfg.low_contrast_fraction)
        opacity = float(rng.uniform(*(cfg.low_contrast_opacity if faint else cfg.opacity)))
        bad, mask, visible = applied(source, drawn, opacity)
        if visible:
            break
    else:  # nothing visible after 30 draws (a flat, featureless image): specks that always show
        defect, faint, opacity = FALLBACK_DEFECT, False, 1.0
        for _ in range(30):
            bad, mask, visible = applied(*DEFECTS[defect](rng, good, fg, good), opacity)
            if visible:
                break
    return {"bad": bad, "mask": mask.astype(np.uint8) * 255, "defect": defect, "opacity": opacity,
            "low_contrast": faint}


def generate(n: int, seed: int = 0, cfg: SynthConfig | None = None, start: int = 0) -> Iterator[dict]:
    cfg = cfg or SynthConfig()
    for i in range(start, start + n):
        sample = make_pair(np.random.default_rng([seed, i]), cfg)
        sample["index"] = i
        yield sample


def to_dataset(n: int, seed: int = 0, cfg: SynthConfig | None = None):
    """The generated set as a Hugging Face ``datasets.Dataset`` (images as PNG), with the generator config and
    seed in its metadata (``dataset.info.description`` is their JSON)."""
    import datasets

    cfg = cfg or SynthConfig()
    features = datasets.Features({
        "good": datasets.Image(), "bad": datasets.Image(), "mask": datasets.Image(),
        "family": datasets.Value("string"), "defect": datasets.Value("string"),
        "opacity": datasets.Value("float32"), "low_contrast": datasets.Value("bool"),
        "imaging": datasets.Value("string"), "index": datasets.Value("int64")})
    info = datasets.DatasetInfo(description=json.dumps({"generator": "anomalyvfm.synth", "seed": seed, "n": n,
                                                        "config": asdict(cfg)}))
    return datasets.Dataset.from_generator(generate, gen_kwargs={"n": n, "seed": seed, "cfg": cfg},
                                           features=features, info=info)


def save_whole(dataset, folder: str | os.PathLike) -> Path:
    """``dataset.save_to_disk`` through a temporary folder beside ``folder``, then swapped in: an interrupted or
    failed save leaves what ``folder`` held before, never a half-written dataset."""
    import shutil
    import tempfile

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    old = tmp.with_suffix(".old")
    try:
        dataset.save_to_disk(str(tmp / "dataset"))
        if folder.exists():
            folder.rename(old)
        (tmp / "dataset").rename(folder)
    finally:
        if old.exists() and not folder.exists():  # stopped between the two renames: the previous dataset goes back
            old.rename(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return folder


def contact_sheet(samples: list[dict], columns: int = 8) -> np.ndarray:
    """Rows of (good, defective, mask) triplets for a person to look at, as one uint8 RGB image."""
    tiles = []
    for s in samples:
        mask_rgb = np.repeat(s["mask"][..., None], 3, axis=2)
        outline = s["bad"].copy()
        import cv2

        contours, _ = cv2.findContours((s["mask"] > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(outline, contours, -1, (255, 0, 0), 1)
        tiles.append(np.concatenate([s["good"], outline, mask_rgb], axis=0))
    rows = []
    for start in range(0, len(tiles), columns):
        row = tiles[start:start + columns]
        row += [np.zeros_like(tiles[0])] * (columns - len(row))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)
