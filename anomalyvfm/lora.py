"""LoRA adapters in every transformer layer of a DINOv2 backbone, through ``peft``.

The projection names differ between transformers releases (``attention.attention.query`` up to 5.17 at least,
``attention.q_proj`` in 5.24); they live here and nowhere else. Checkpoints and backbone fingerprints use the
newer (canonical) names, so a checkpoint saved under one release loads under the other."""
from __future__ import annotations

import re
import warnings

from torch import nn

from .config import AdapterConfig

# role -> module path inside one ``encoder.layer.N`` block
_NAMES_V5 = {"query": "attention.q_proj", "key": "attention.k_proj", "value": "attention.v_proj",
             "output": "attention.o_proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
_NAMES_V4 = {"query": "attention.attention.query", "key": "attention.attention.key",
             "value": "attention.attention.value", "output": "attention.output.dense",
             "fc1": "mlp.fc1", "fc2": "mlp.fc2"}


_TO_CANONICAL = {f".{_NAMES_V4[r]}.": f".{_NAMES_V5[r]}." for r in ("query", "key", "value", "output")}


def canonical_key(key: str) -> str:
    """A backbone or adapter tensor name in the canonical (newer) naming, whichever release wrote it."""
    for old, new in _TO_CANONICAL.items():
        key = key.replace(old, new)
    return key


def _newer_names(backbone: nn.Module) -> bool:
    """Whether the installed transformers names the projections ``attention.q_proj`` (``backbone`` bare or wrapped)."""
    return any(n.endswith("encoder.layer.0.attention.q_proj") for n, _ in backbone.named_modules())


def _installed_key(key: str, newer: bool) -> str:
    """A canonical tensor name in the installed naming (``newer``: ``_newer_names`` of the backbone)."""
    if not newer:
        for old, new in _TO_CANONICAL.items():
            key = key.replace(new, old)
    return key


def module_names(backbone: nn.Module, roles: tuple[str, ...]) -> list[str]:
    """Per-layer module paths for the given roles, in the naming of the installed transformers."""
    table = _NAMES_V5 if _newer_names(backbone) else _NAMES_V4
    return [table[r] for r in roles]


def target_regex(backbone: nn.Module, roles: tuple[str, ...]) -> str:
    """A full-match regex selecting the role's projection in *every* encoder layer (and nothing else)."""
    alternatives = "|".join(re.escape(n) for n in module_names(backbone, roles))
    return rf"(.*\.)?encoder\.layer\.\d+\.({alternatives})"


def apply_lora(backbone: nn.Module, cfg: AdapterConfig) -> nn.Module:
    """Wrap ``backbone`` in a ``PeftModel`` with LoRA on ``cfg.targets`` of every layer; only adapters train."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, use_dora=cfg.use_dora,
                      target_modules=target_regex(backbone, cfg.targets), bias="none")
    with warnings.catch_warnings():  # peft asks newer transformers a deprecated question: not the user's concern
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        return get_peft_model(backbone, lora)


def adapter_state(backbone: nn.Module) -> dict:
    """The adapters' tensors of a ``PeftModel`` backbone, under canonical names (what a checkpoint stores)."""
    from peft import get_peft_model_state_dict

    return {canonical_key(k): v.detach().contiguous() for k, v in get_peft_model_state_dict(backbone).items()}


def load_adapter_state(backbone: nn.Module, tensors: dict, where: str) -> None:
    """Put stored adapter tensors (either naming) into a ``PeftModel`` backbone; every one must land, and every
    adapter of the backbone must be given, else a ``ValueError`` names ``where``."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    newer = _newer_names(backbone)
    tensors = {_installed_key(canonical_key(k), newer): v for k, v in tensors.items()}
    expected = set(get_peft_model_state_dict(backbone))
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise ValueError(f"{where}: adapters do not fit this backbone: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    set_peft_model_state_dict(backbone, tensors)


def count_wrapped_per_layer(model: nn.Module, num_layers: int) -> list[int]:
    """How many LoRA-wrapped modules each encoder layer holds (a check that no layer was silently missed)."""
    from peft.tuners.lora import LoraLayer

    counts = [0] * num_layers
    for name, module in model.named_modules():
        match = re.search(r"encoder\.layer\.(\d+)\.", name)
        if match and isinstance(module, LoraLayer):
            counts[int(match.group(1))] += 1
    return counts
