"""Where a model spec points: a local path, or a Hugging Face hub id ("user/name"). Checkpoints and backbones share
this rule, so a mistyped local path is never looked up on the hub."""
from __future__ import annotations

from pathlib import Path


def looks_local(spec: str) -> bool:
    """A path rather than a hub id: absolute, relative with ./ or ~, a backslash, not exactly one "/" or one at either
    end, or existing."""
    return (spec.startswith(("/", ".", "~")) or spec.endswith("/") or "\\" in spec or spec.count("/") != 1
            or Path(spec).exists())
