"""Publishing checkpoints and profiles to the Hugging Face Hub through ``huggingface_hub``'s upload API."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from .checkpoint import ALLOW_PATTERNS, CARD_NAME, CONFIG_NAME  # what a checkpoint or profile folder may publish


def push_folder(folder: str | os.PathLike, repo_id: str, *, private: bool | None = None, token: str | None = None,
                revision: str | None = None, commit_message: str = "Upload anomalyvfm model") -> str:
    """Create ``repo_id`` if needed and upload the checkpoint/profile ``folder`` in one commit (only the files that
    match ``ALLOW_PATTERNS``: nothing pickled). A card (README.md) is first checked by the Hub's own metadata
    validation (``ModelCard.validate``), so a bad card fails before anything is uploaded. Returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
    from huggingface_hub.utils import filter_repo_objects

    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{folder}: not a checkpoint or profile folder (no config.json)")
    _check_weights(folder)
    files = sorted(filter_repo_objects([p.name for p in folder.iterdir() if p.is_file()],
                                       allow_patterns=ALLOW_PATTERNS))
    if (folder / CARD_NAME).is_file():
        card = ModelCard.load(folder / CARD_NAME)
        try:
            card.validate()  # ValueError with the Hub's message when the metadata is bad
        except (OSError, *_transport_errors()):  # the Hub's validator is unreachable (offline): the upload says so
            pass
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.create_commit(repo_id, [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f))
                                           for f in files], commit_message=commit_message, revision=revision,
                                 repo_type="model")
    except _transport_errors() as e:  # not OSErrors: raised as one, like the Hub client's own offline error
        raise ConnectionError(f"{repo_id}: could not connect to the Hub ({e})") from e
    return str(info)


def _check_weights(folder: Path) -> None:
    """Refuse (``ValueError``) a folder whose weights do not match the sha256 its config.json records, as loading it
    would (``checkpoint.check_weights``): a damaged or half-replaced checkpoint is never published."""
    import json

    from .checkpoint import check_weights
    from .errors import CheckpointError

    try:
        check_weights(folder, json.loads((folder / CONFIG_NAME).read_text()).get("weights_sha256"))
    except CheckpointError as e:
        raise ValueError(f"{e}; not pushed") from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The errors the Hub client's HTTP library (httpx, or its fork httpx2 in huggingface_hub 2.x) raises when it
    cannot reach the Hub; unlike the client's own offline error they are not OSErrors."""
    errors = []
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)
