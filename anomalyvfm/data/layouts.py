"""Readers for the public anomaly-detection layouts, each turning a folder into ``Category`` objects, and the
registry ``scan`` walks: adding a layout = a reader plus one ``@register_layout`` entry at the end of this file."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .samples import Category, Sample, find_mask, images_in


def read_mvtec(folder: Path, dataset: str, good: str = "good", layout: str = "mvtec") -> Category:
    """MVTec AD layout (also MPDD, DTD-Synthetic, BTAD with ``good="ok"``):
    ``train/<good>``, ``test/<good>``, ``test/<type>``, ``ground_truth/<type>/<stem>[_mask].png``."""
    cat = Category(dataset, folder.name, layout)
    cat.train = [Sample(p, 0) for p in images_in(folder / "train" / good)]
    test_dir = folder / "test"
    kinds = [d for d in test_dir.iterdir() if d.is_dir()] if test_dir.is_dir() else []
    for defect_dir in sorted(d for d in kinds if not d.name.startswith(".")):  # .ipynb_checkpoints is no defect type
        if defect_dir.name == good:
            cat.test += [Sample(p, 0) for p in images_in(defect_dir)]
            continue
        gt_dir = folder / "ground_truth" / defect_dir.name
        for p in images_in(defect_dir):
            mask = find_mask(gt_dir, p.stem)
            if mask is None and gt_dir.is_dir():
                cat.warnings.append(f"{p}: no mask in {gt_dir}; used for image metrics only")
            cat.test.append(Sample(p, 1, defect_dir.name, mask))
    return cat


def read_btad(folder: Path, dataset: str = "btad") -> Category:
    """BTAD: ``train/ok``, ``test/ok``, ``test/ko``, ``ground_truth/ko``."""
    return read_mvtec(folder, dataset, good="ok", layout="btad")


def read_visa(root: Path, dataset: str = "visa") -> list[Category]:
    """VisA: ``split_csv/1cls.csv`` with columns object, split, label, image, mask (paths relative to root)."""
    cats: dict[str, Category] = {}
    with open(root / "split_csv" / "1cls.csv", newline="") as f:
        for row in csv.DictReader(f):
            cat = cats.setdefault(row["object"], Category(dataset, row["object"], "visa"))
            label = 0 if row["label"] == "normal" else 1
            mask = root / row["mask"] if label and row.get("mask") else None
            sample = Sample(root / row["image"], label, "good" if label == 0 else "bad", mask)
            if row["split"] == "train":
                if label == 0:
                    cat.train.append(sample)
            else:
                cat.test.append(sample)
    return list(cats.values())


def read_ksdd2(root: Path, dataset: str = "ksdd2") -> Category:
    """KSDD2: flat ``train/`` and ``test/`` folders of ``<id>.png`` with ``<id>_GT.png``; a sample is defective when
    its GT mask has any positive pixel. Only the good training images are kept for training."""
    cat = Category(dataset, "ksdd2", "ksdd2")
    for split in ("train", "test"):
        for p in images_in(root / split):
            gt = root / split / f"{p.stem}_GT.png"
            if not gt.is_file():
                cat.warnings.append(f"{p}: no {gt.name}; skipped")
                continue
            label = int(np.asarray(Image.open(gt)).any())
            sample = Sample(p, label, "defect" if label else "good", gt if label else None)
            if split == "test":
                cat.test.append(sample)
            elif label == 0:
                cat.train.append(sample)
    return cat


def read_realiad(root: Path, dataset: str = "realiad") -> list[Category]:
    """Real-IAD: ``realiad_jsons/<category>.json`` holding ``train``/``test`` lists of entries with ``image_path``,
    ``mask_path`` and ``anomaly_class`` (``OK`` = good); paths are relative to the image root beside the jsons."""
    json_dir = root / "realiad_jsons"
    image_roots = [root] + sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("realiad_")
                                  and d != json_dir)
    cats = []
    for path in sorted(json_dir.glob("*.json")):
        spec = json.loads(path.read_text())
        normal = spec.get("meta", {}).get("normal_class", "OK")
        cat = Category(dataset, path.stem, "realiad")

        def locate(rel: str | None) -> Path | None:
            if not rel:
                return None
            return next((r / rel for r in image_roots if (r / rel).is_file()), image_roots[-1] / rel)

        for split in ("train", "test"):
            for entry in spec.get(split, []):
                label = int(entry.get("anomaly_class", normal) != normal)
                sample = Sample(locate(entry["image_path"]), label, entry.get("anomaly_class", normal) if label
                                else "good", locate(entry.get("mask_path")) if label else None)
                if split == "test":
                    cat.test.append(sample)
                elif label == 0:
                    cat.train.append(sample)
        cats.append(cat)
    return cats


def read_folder(root: Path, dataset: str | None = None) -> Category:
    """A plain folder: ``good/`` and ``bad/`` (or any other sub-folders as defect types), optional masks in
    ``masks/`` (``<stem>.png`` or ``<stem>_mask.png``). Everything is test data; fit references come from
    ``good/`` only when the folder also has ``train/``."""
    cat = Category(dataset or root.name, root.name, "folder")
    cat.train = [Sample(p, 0) for p in images_in(root / "train")]
    for sub in sorted(d for d in root.iterdir() if d.is_dir() and d.name not in ("masks", "train")
                      and not d.name.startswith(".")):
        label = int(sub.name != "good")
        for p in images_in(sub):
            cat.test.append(Sample(p, label, sub.name, find_mask(root / "masks", p.stem) if label else None))
    return cat


@dataclass(frozen=True)
class Layout:
    name: str
    detect: Callable[[Path], bool]  # is this folder a dataset or category in this layout?
    read: Callable[[Path], list[Category]]
    help: str = ""
    nested_only: bool = False  # never the scanned root itself (a loose layout that would match too much)


LAYOUTS: dict[str, Layout] = {}  # tried in registration order; the first whose ``detect`` accepts a folder reads it


def register_layout(name: str, detect: Callable[[Path], bool], help: str = "", nested_only: bool = False):
    """Decorator: ``read(folder) -> [Category, ...]`` reads the folders that ``detect`` accepts."""
    def wrap(read: Callable[[Path], list[Category]]):
        if name in LAYOUTS:
            raise ValueError(f"layout {name!r} is already registered")
        LAYOUTS[name] = Layout(name, detect, read, help, nested_only)
        return read

    return wrap


def _split(folder: Path, name: str) -> Path:
    return folder / "train" / name


def _has_train_test(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


@register_layout("visa", lambda f: (f / "split_csv" / "1cls.csv").is_file(), "VisA: split_csv/1cls.csv")
def _visa(folder: Path) -> list[Category]:
    return read_visa(folder, folder.name)


@register_layout("realiad", lambda f: (f / "realiad_jsons").is_dir(), "Real-IAD: realiad_jsons/")
def _realiad(folder: Path) -> list[Category]:
    return read_realiad(folder, folder.name)


@register_layout("mvtec", lambda f: _has_train_test(f) and _split(f, "good").is_dir(),
                 "MVTec AD, MPDD, DTD-Synthetic: train/good, test/<type>, ground_truth/<type>")
def _mvtec(folder: Path) -> list[Category]:
    return [read_mvtec(folder, folder.parent.name)]


@register_layout("btad", lambda f: _has_train_test(f) and _split(f, "ok").is_dir(), "BTAD: train/ok, test/ko")
def _btad(folder: Path) -> list[Category]:
    return [read_btad(folder, folder.parent.name)]


@register_layout("ksdd2", lambda f: _has_train_test(f) and next((f / "train").glob("*_GT.png"), None) is not None,
                 "KSDD2: train/*.png with *_GT.png masks")
def _ksdd2(folder: Path) -> list[Category]:
    return [read_ksdd2(folder, folder.name)]


@register_layout("folder", lambda f: (f / "good").is_dir(), "plain good/ and bad/ folders", nested_only=True)
def _folder(folder: Path) -> list[Category]:
    return [read_folder(folder, folder.parent.name)]
