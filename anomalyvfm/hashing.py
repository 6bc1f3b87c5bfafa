"""sha256 of files: image provenance, checkpoint weights, the embedded backbone's source."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable


def sha256_files(paths: Iterable[str | os.PathLike], chunk: int = 1 << 20) -> str:
    """One sha256 over the bytes of ``paths``, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return sha256_files([path])


def sha256_if_file(item: object) -> str | None:
    """sha256 of ``item`` if it names an existing file (an image given as a path), else None."""
    if isinstance(item, (str, os.PathLike)) and Path(item).is_file():
        return sha256_file(item)
    return None
