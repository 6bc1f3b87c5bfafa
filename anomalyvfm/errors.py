"""The package's own exception types, kept apart so that any module can raise them without importing another."""
from __future__ import annotations


class BackboneNotFoundError(OSError):
    """The backbone's weights are neither local nor downloadable."""


class BackboneMismatchError(ValueError):
    """The backbone at hand is not the one a checkpoint's adapters were trained on."""


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be trusted or read (missing, corrupt, tampered with, or asking to run code), or
    one that must not be written (the package's shipped checkpoints)."""


class DataNotFoundError(FileNotFoundError):
    """A benchmark's data folder that is missing or holds no dataset in a known layout."""


class OutputError(OSError):
    """An output folder or file that cannot be written: a file in the way, another run writing there, a full or
    read-only disk."""


class BatchError(ValueError):
    """A batch that batch mode cannot score as a whole: fewer than two readable images, or images with finite
    scores."""
