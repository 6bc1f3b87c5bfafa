"""Average checkpoints fine-tuned from one starting point into one (a uniform model soup, Wortsman et al., 2022).

    python -m training.soup --config training/configs/v9-soup-runs.json

The config names the members (checkpoint folders) and the output folder. The members must be the same model: their
configs may differ only in what training, shipping and settling write (``SETTLED``). Every tensor of the adapters,
the decoder and the image head is the mean of the members'; the result has the first member's config with an unset
threshold (``training.ship`` settles it if the soup is shipped).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

# written after training: by training, by settling a threshold, and by training.ship, which carries self_weight over
SETTLED = ("weights_sha256", "threshold", "threshold_origin", "normal_stats", "batch_fusion", "trained", "self_weight")


@dataclass
class SoupConfig:
    members: list[str]  # checkpoint folders, all fine-tuned from the same starting point
    out: str  # the soup's checkpoint folder


def architecture(config: dict) -> dict:
    """What must match between members: everything but the fields written after training."""
    from anomalyvfm.checkpoint import split_legacy

    cfg, _ = split_legacy(dict(config))
    return {k: v for k, v in cfg.to_dict().items() if k not in SETTLED}


def same_model(members: Sequence[str | Path], kind: str, ignore: Sequence[str] = ()) -> tuple[list[Path], list[dict]]:
    """The folders and configs of ``members``, refused unless there are at least two and all have one architecture
    (``architecture``; the fields in ``ignore`` may differ too). ``kind`` names the result in the error."""
    from anomalyvfm.checkpoint import CONFIG_NAME

    if len(members) < 2:
        raise ValueError(f"{kind} needs at least two members, got {len(members)}")
    dirs = [Path(m) for m in members]
    configs = [json.loads((d / CONFIG_NAME).read_text()) for d in dirs]
    shapes = [{k: v for k, v in architecture(c).items() if k not in ignore} for c in configs]
    for d, other in zip(dirs[1:], shapes[1:]):
        if other != shapes[0]:
            diff = sorted(k for k in shapes[0] if shapes[0][k] != other.get(k))
            raise ValueError(f"{d}: not the same model as {dirs[0]} (differs in {', '.join(diff)})")
    return dirs, configs


def soup(members: Sequence[str | Path], out: str | Path) -> Path:
    """Write the uniform average of ``members`` to ``out`` (a checkpoint folder) and return it."""
    import torch

    from anomalyvfm.checkpoint import ADAPTER_NAME, HEADS_NAME, load_weights, read_tensors, save, set_weights
    from anomalyvfm.model import AnomalyVFM

    dirs, _ = same_model(members, "a soup")
    tensors = {}
    for name in (ADAPTER_NAME, HEADS_NAME):
        parts = [read_tensors(d / name) for d in dirs]
        keys = set(parts[0])
        if any(set(p) != keys for p in parts):
            raise ValueError(f"{name}: the members hold different tensors")
        tensors[name] = {k: torch.stack([p[k].float() for p in parts]).mean(0).to(parts[0][k].dtype) for k in keys}
    model = AnomalyVFM.from_pretrained(dirs[0])
    set_weights(model, tensors[ADAPTER_NAME], tensors[HEADS_NAME], "the soup")
    model.config.threshold, model.config.threshold_origin = 0.5, "unset"
    model.config.normal_stats, model.config.batch_fusion = {}, {}
    out = save(model, out)
    load_weights(AnomalyVFM(model.config), out)  # what was written loads back
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="JSON with members and out")
    args = parser.parse_args(argv)
    cfg = SoupConfig(**json.loads(args.config.read_text()))
    print(f"soup of {len(cfg.members)} checkpoints -> {soup(cfg.members, cfg.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
