"""Dataset readers: ``scan`` finds every category under a root through the layout registry (``LAYOUTS``: MVTec AD
and MPDD, DTD-Synthetic, VisA, BTAD, KSDD2, Real-IAD and plain folders)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from .layouts import LAYOUTS, read_btad, read_folder, read_ksdd2, read_mvtec, read_realiad, read_visa, register_layout
from .samples import Category, Sample

__all__ = ["Category", "LAYOUTS", "Sample", "register_layout", "scan", "read_btad", "read_folder", "read_ksdd2",
           "read_mvtec", "read_realiad", "read_visa"]
log = logging.getLogger(__name__)


def _read(folder: Path, depth: int) -> list[Category] | None:
    """The categories in ``folder`` if it is a dataset or category in a registered layout, else None."""
    for layout in LAYOUTS.values():
        if (depth > 0 or not layout.nested_only) and layout.detect(folder):
            return layout.read(folder)
    return None


def _named(cat: Category, names: Sequence[str]) -> bool:
    """Whether ``names`` holds the category's dataset or its ``dataset/category`` key."""
    return cat.dataset in names or cat.key in names


def scan(root: str | Path, datasets: Sequence[str] | None = None, max_depth: int = 3,
         skipped: list[str] | None = None) -> list[Category]:
    """Find every dataset/category under ``root`` (the root itself may be one). ``datasets`` keeps only the
    named datasets or ``dataset/category`` keys. Categories with no test images are skipped with a warning (also
    appended to ``skipped`` when given). ``DataNotFoundError`` when ``root`` is missing, holds no dataset, or lacks
    a named one."""
    from ..errors import DataNotFoundError

    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"{root}: no such data folder")
    found: list[Category] = []

    def visit(folder: Path, depth: int) -> None:
        cats = _read(folder, depth)
        if cats is not None:
            found.extend(cats)
        elif depth < max_depth:
            for sub in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
                visit(sub, depth + 1)

    visit(root, 0)
    if not found:
        raise DataNotFoundError(f"{root}: no dataset found within {max_depth} folder levels in any known layout ("
                                f"{'; '.join(layout.help for layout in LAYOUTS.values())})")
    unknown = [name for name in datasets or () if not any(_named(cat, (name,)) for cat in found)]
    if unknown:
        raise DataNotFoundError(f"{root}: no dataset or category named {', '.join(unknown)} (found: "
                                f"{', '.join(sorted({cat.key for cat in found}))})")
    kept = []
    for cat in found:
        if datasets and not _named(cat, datasets):
            continue
        if not cat.test:
            message = f"{root}: category {cat.key} has no test images; skipped"
            log.warning(message)
            if skipped is not None:
                skipped.append(message)
            continue
        for message in cat.warnings:
            log.warning(message)
        kept.append(cat)
    return kept
