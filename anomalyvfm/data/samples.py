"""What a dataset reader returns: samples (image, label, optional mask) grouped by category."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..preprocess import IMAGE_EXTENSIONS



@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 0 = good, 1 = anomalous
    defect: str = "good"  # defect type, "good" for normal samples
    mask: Path | None = None  # ground-truth mask (nonzero = anomalous); None for good samples or no annotation


@dataclass
class Category:
    """One category of one dataset: good training images and a labelled test set."""

    dataset: str
    name: str
    layout: str
    train: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.name}"

    @property
    def has_masks(self) -> bool:
        return any(s.mask is not None for s in self.test)

    def counts(self) -> dict[str, int]:
        return {"train_good": len(self.train), "test_good": sum(s.label == 0 for s in self.test),
                "test_defective": sum(s.label == 1 for s in self.test),
                "masks": sum(s.mask is not None for s in self.test)}


def images_in(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (sorted; masks named ``*_mask``/``*_GT`` and hidden files, such as
    macOS's ``._name.png`` twins, excluded)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.stem.endswith(("_mask", "_GT")) and not p.name.startswith("."))


def find_mask(folder: Path, stem: str) -> Path | None:
    """``<stem>_mask.*`` or ``<stem>.*`` in ``folder``, if present."""
    for name in (f"{stem}_mask", stem, f"{stem}_GT"):
        for ext in (".png", ".bmp", ".jpg", ".tif", ".tiff"):
            if (folder / f"{name}{ext}").is_file():
                return folder / f"{name}{ext}"
    return None
