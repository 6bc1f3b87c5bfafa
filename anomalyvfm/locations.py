"""Where a model spec points: a local path, or a Hugging Face hub id ("user/name"). Checkpoints and backbones share
this rule, so a mistyped local path is never looked up on the hub. And where the package's own checkpoints live."""
from __future__ import annotations

from pathlib import Path


def looks_local(spec: str) -> bool:
    """A path rather than a hub id: absolute, relative with ./ or ~, a backslash, not exactly one "/" or one at either
    end, or existing."""
    return (spec.startswith(("/", ".", "~")) or spec.endswith("/") or "\\" in spec or spec.count("/") != 1
            or Path(spec).exists())


WEIGHTS = Path(__file__).parent / "weights"  # the checkpoints shipped inside the package


def shipped_folder(directory: str | Path) -> bool:
    """Whether ``directory`` is, or lies inside, the package's folder of shipped checkpoints."""
    path, weights = Path(directory).resolve(), WEIGHTS.resolve()
    return path == weights or weights in path.parents
