"""The on-disk format of checkpoints and profiles, in one place: file names, save, load, hashes, migration.

A checkpoint folder holds
  config.json                 the ``AnomalyVFMConfig`` (architecture, preprocessing, decision rule)
  adapter_config.json         the LoRA adapters, in peft's own format
  adapter_model.safetensors
  heads.safetensors           decoder and image head
  members.safetensors         an ensemble's other members' adapters and heads ("<i>.adapter.*", "<i>.heads.*")
and a profile adds what few-shot fitting learned (``ProfileState``):
  state.json                  fusion weight, kNN scale, score statistics, calibration, memory mode
  memory.safetensors          good-image patch features ("memory", "sizes") and known-defect ones ("defects")
  reference.png               golden-reference mode: the aligned reference image
  profile.json                provenance: base model, images and their sha256, date, version, settings, report
Nothing is pickled. Folders written by anomalyvfm 0.1.0 (the fitted state inside config.json) still load.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .config import AnomalyVFMConfig
from .errors import CheckpointError
from .hashing import sha256_files
from .locations import looks_local, shipped_folder
from .profile import LEGACY_KEYS, ProfileState

if TYPE_CHECKING:
    from .model import AnomalyVFM

CONFIG_NAME = "config.json"
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_NAME = "adapter_model.safetensors"
HEADS_NAME = "heads.safetensors"
MEMBERS_NAME = "members.safetensors"
STATE_NAME = "state.json"
MEMORY_NAME = "memory.safetensors"
REFERENCE_NAME = "reference.png"
PROFILE_NAME = "profile.json"
CARD_NAME = "README.md"
MODEL_FILES = (CONFIG_NAME, ADAPTER_CONFIG_NAME, ADAPTER_NAME, HEADS_NAME)  # every checkpoint
PROFILE_FILES = (STATE_NAME, MEMORY_NAME, REFERENCE_NAME, PROFILE_NAME)  # a profile's, where it has them
ALLOW_PATTERNS = [*MODEL_FILES, MEMBERS_NAME, *PROFILE_FILES, CARD_NAME]  # what may be published or downloaded
WEIGHT_FILES = (ADAPTER_NAME, HEADS_NAME, MEMBERS_NAME)  # what ``weights_sha256`` covers, where present


def weights_sha256(checkpoint: str | os.PathLike) -> str:
    """sha256 over the checkpoint's trained weight files (adapters, heads, then an ensemble's members)."""
    folder = Path(checkpoint)
    return sha256_files(folder / name for name in WEIGHT_FILES if name != MEMBERS_NAME or (folder / name).is_file())


def check_weights(directory: str | os.PathLike, recorded: str | None) -> None:
    """Raise ``CheckpointError`` when the folder's weights do not match ``recorded``, the sha256 its config.json
    holds (None: nothing recorded, nothing to check), or one of them cannot be read, as loading and publishing both
    require."""
    if recorded is None:
        return
    try:
        found = weights_sha256(directory)
    except OSError as e:  # a weight file missing or unreadable: one line, not a traceback
        raise CheckpointError(f"{directory}: a weight file cannot be read ({e.strerror}: "
                              f"{Path(e.filename or '?').name})") from None
    if found != recorded:
        raise CheckpointError(f"{directory}: its weights' sha256 {found[:16]}… differs from the {recorded[:16]}… "
                              f"that its {CONFIG_NAME} records; the files were changed or damaged")


def _weights(model: "AnomalyVFM") -> tuple[dict, dict]:
    """(adapters, heads) of one model, as ``save`` writes them."""
    from .lora import adapter_state

    heads = {k: v.detach().contiguous() for k, v in model.state_dict().items()
             if k.startswith(("decoder.", "image_head."))}
    return adapter_state(model.backbone), heads


def split_legacy(data: dict) -> tuple[AnomalyVFMConfig, dict]:
    """An ``AnomalyVFMConfig`` and the fitted-state fields that 0.1.0 kept inside config.json (empty if none)."""
    data = dict(data)
    legacy = {k: data.pop(k) for k in LEGACY_KEYS if k in data}
    legacy = {k: v for k, v in legacy.items() if v is not None}
    return AnomalyVFMConfig.from_dict(data), legacy


def resolve(name_or_dir: str | os.PathLike, revision: str | None = None) -> Path:
    """A local checkpoint folder, or a hub repo id downloaded (only the format's files) into the hub cache."""
    directory = Path(name_or_dir).expanduser()
    if directory.is_dir():
        if not (directory / CONFIG_NAME).is_file():
            raise CheckpointError(f"{directory}: not a checkpoint folder (no {CONFIG_NAME})")
        return directory
    if directory.is_file():
        hint = (": an ONNX export, which runs with --backend onnx (anomalyvfm.export.OnnxModel)"
                if directory.suffix.lower() == ".onnx" else "")
        raise CheckpointError(f"{name_or_dir}: a file, not a checkpoint folder{hint}")
    if looks_local(str(name_or_dir)):
        raise CheckpointError(f"{name_or_dir}: no such checkpoint folder")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_dir), revision=revision, allow_patterns=ALLOW_PATTERNS))
    except Exception as e:  # noqa: BLE001 - one clear line for every hub failure
        raise CheckpointError(f"{name_or_dir}: not a local folder, and the hub could not provide it "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'})") from None


def read_tensors(path: Path) -> dict:
    """A safetensors file's tensors; a missing or damaged file is a ``CheckpointError`` naming it."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0] or type(e).__name__})"
                              ) from None


def _write_state(model: "AnomalyVFM", tmp: Path) -> None:
    from safetensors.torch import save_file

    state = model.profile
    if state is None:
        return
    (tmp / STATE_NAME).write_text(json.dumps(state.to_json(), indent=2))
    if state.memory is not None:
        import torch

        banks = {"memory": state.memory.good, "defects": state.memory.defects}
        if state.memory.sizes is not None:
            banks["sizes"] = torch.tensor(state.memory.sizes, dtype=torch.int64)
        save_file({k: v.detach().contiguous() for k, v in banks.items() if v is not None}, tmp / MEMORY_NAME,
                  metadata={"format": "pt"})
    if state.reference is not None:
        from .outputs import write_png

        write_png(tmp / REFERENCE_NAME, state.reference)


def save(model: "AnomalyVFM", directory: str | os.PathLike) -> Path:
    """Write the checkpoint (and the model's profile state, if any) through a temporary folder, then move the files
    into place; files of the format that this model does not have are removed, so a folder never mixes two. The
    package's shipped checkpoints are never written (``CheckpointError``): that would change every later run's
    default (``python -m training.ship --install`` is how a new default gets there)."""
    from safetensors.torch import save_file

    if shipped_folder(directory):
        raise CheckpointError(f"{directory}: is inside the package's shipped checkpoints, which are never "
                              f"overwritten; save to another folder")
    from .outputs import FILE_MODE

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: exists and is not a folder; save to another folder")
    directory.mkdir(parents=True, exist_ok=True)
    adapters, heads = _weights(model)
    members = {}
    for i, member in enumerate(model.members):
        for part, tensors in zip(("adapter", "heads"), _weights(member)):
            members.update({f"{i}.{part}.{k}": v for k, v in tensors.items()})
    with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
        tmp = Path(tmp)
        model.backbone.peft_config["default"].save_pretrained(tmp)
        save_file(adapters, tmp / ADAPTER_NAME, metadata={"format": "pt"})
        save_file(heads, tmp / HEADS_NAME, metadata={"format": "pt"})
        if members:
            save_file(members, tmp / MEMBERS_NAME, metadata={"format": "pt"})
        _write_state(model, tmp)
        model.config.weights_sha256 = weights_sha256(tmp)
        (tmp / CONFIG_NAME).write_text(json.dumps(model.config.to_dict(), indent=2))
        written = {f.name for f in tmp.iterdir()}
        for f in sorted(tmp.iterdir(), key=lambda f: f.name == CONFIG_NAME):  # config.json, naming the weights, last
            os.chmod(f, FILE_MODE)  # safetensors writes 0600; the files follow the umask as open() would make them
            os.replace(f, directory / f.name)
    for name in (MEMBERS_NAME, STATE_NAME, MEMORY_NAME, REFERENCE_NAME):
        if name not in written:
            (directory / name).unlink(missing_ok=True)
    return directory


def load_weights(model: "AnomalyVFM", directory: str | os.PathLike) -> None:
    """Load a checkpoint folder's adapters and heads into ``model`` (same architecture)."""
    directory = Path(directory)
    if model.config.members and not (directory / MEMBERS_NAME).is_file():
        raise CheckpointError(f"{directory / MEMBERS_NAME}: missing, but {CONFIG_NAME} names "
                              f"{len(model.config.members)} ensemble member(s)")
    check_weights(directory, model.config.weights_sha256)
    set_weights(model, read_tensors(directory / ADAPTER_NAME), read_tensors(directory / HEADS_NAME),
                str(directory / HEADS_NAME))
    if len(model.members):
        tensors = read_tensors(directory / MEMBERS_NAME)
        for i, member in enumerate(model.members):
            part = {p: {k[len(f"{i}.{p}."):]: v for k, v in tensors.items() if k.startswith(f"{i}.{p}.")}
                    for p in ("adapter", "heads")}
            if not part["adapter"] or not part["heads"]:
                raise CheckpointError(f"{directory / MEMBERS_NAME}: no weights for member {i} "
                                      f"({model.config.members[i]!r})")
            set_weights(member, part["adapter"], part["heads"], f"{directory / MEMBERS_NAME} member {i}")


def set_weights(model: "AnomalyVFM", adapters: dict, heads: dict, where: str) -> None:
    """Put adapter and head tensors (as ``save`` writes them) into ``model``; every tensor must fit."""
    from .lora import load_adapter_state

    load_adapter_state(model.backbone, adapters, where)
    missing, unexpected = model.load_state_dict(heads, strict=False)
    missing = [k for k in missing if k.startswith(("decoder.", "image_head."))]
    if missing or unexpected:
        raise ValueError(f"{where}: missing {missing[:5]}, unexpected {unexpected[:5]}")


def load_state(directory: Path, legacy: dict) -> ProfileState | None:
    """The profile state of a folder: state.json (or 0.1.0's fields of config.json), memory and reference."""
    from .memory import MemoryBank

    data = json.loads((directory / STATE_NAME).read_text()) if (directory / STATE_NAME).is_file() else legacy
    memory = None
    if (directory / MEMORY_NAME).is_file():
        banks = read_tensors(directory / MEMORY_NAME)
        sizes = tuple(int(s) for s in banks["sizes"].tolist()) if "sizes" in banks else None
        memory = MemoryBank(banks["memory"], banks.get("defects"), sizes=sizes)
    reference = None
    if (directory / REFERENCE_NAME).is_file():
        from .preprocess import read_image

        reference = read_image(directory / REFERENCE_NAME)
    if memory is None and reference is None and not data.get("calibration"):
        return None  # a plain checkpoint
    return ProfileState.from_json(data, memory, reference)


def load(cls: type["AnomalyVFM"], name_or_dir: str | os.PathLike, *, revision: str | None = None,
         backbone=None) -> "AnomalyVFM":
    """An ``AnomalyVFM`` (with its profile state, if the folder has one) from a folder or hub repo id."""
    directory = resolve(name_or_dir, revision)
    try:
        config, legacy = split_legacy(json.loads((directory / CONFIG_NAME).read_text()))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{directory / CONFIG_NAME}: not a valid config ({e})") from None
    model = cls(config, backbone=backbone)
    load_weights(model, directory)
    model.profile = load_state(directory, legacy)
    return model.eval()


def update_config(directory: str | os.PathLike, **fields) -> dict:
    """Set ``fields`` in a saved checkpoint's config.json (checked as an ``AnomalyVFMConfig``, written atomically);
    the weights are untouched, so their sha256 still holds. Returns the new config as a dict."""
    from .outputs import atomic_write_bytes

    path = Path(directory) / CONFIG_NAME
    config = {**json.loads(path.read_text()), **fields}
    split_legacy(config)  # refuses unknown keys and bad values before anything is written
    atomic_write_bytes(path, (json.dumps(config, indent=2) + "\n").encode())
    return config


def write_provenance(directory: str | os.PathLike, provenance: dict) -> Path:
    """profile.json beside a saved profile (atomically)."""
    from .outputs import atomic_write_bytes

    path = Path(directory) / PROFILE_NAME
    atomic_write_bytes(path, json.dumps(provenance, indent=2).encode())
    return path


def fitted_images(directory: str | os.PathLike) -> set[str]:
    """The sha256 of the images a saved profile was fitted on, from its profile.json (empty for a checkpoint, a hub
    id or an unreadable file)."""
    try:
        provenance = json.loads((Path(directory) / PROFILE_NAME).read_text())
        return {image["sha256"] for image in provenance.get("images", []) if image.get("sha256")}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return set()
