"""Put checkpoints of one architecture into one ensemble checkpoint, whose outputs are the mean of theirs.

    python -m training.ensemble --config training/configs/v14-ensemble-anchor.json

Unlike a soup (``training.soup``, which averages the weights into one model), every member keeps its own adapters
and heads and runs its own forward passes; the logits are averaged (``AnomalyVFM.outputs``). The first member's
config is the ensemble's (with ``test_views`` set for every member, ``members`` naming the others and an unset
threshold, which ``training.ship`` or ``default_threshold`` settle); the others go into members.safetensors.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .soup import same_model


@dataclass
class EnsembleConfig:
    members: list[str]  # checkpoint folders of one architecture; the first one's config is the ensemble's
    out: str  # the ensemble's checkpoint folder
    test_views: str = "single"  # the views each member averages over (anomalyvfm.tta.TEST_VIEWS)


def member_label(directory: Path) -> str:
    """How the ensemble's config names a member: its folder and the start of its weights' sha256."""
    from anomalyvfm.checkpoint import weights_sha256

    return f"{directory.as_posix()} (weights {weights_sha256(directory)[:12]})"


def ensemble(members: Sequence[str | Path], out: str | Path, test_views: str = "single") -> Path:
    """Write the ensemble of ``members`` (checkpoint folders) to ``out`` and return it."""
    from anomalyvfm.checkpoint import ADAPTER_NAME, HEADS_NAME, load_weights, read_tensors, save, set_weights
    from anomalyvfm.config import AnomalyVFMConfig
    from anomalyvfm.model import AnomalyVFM

    # the ensemble's config (the first member's, with its own test_views) decides inference for every member
    dirs, configs = same_model(members, "an ensemble", ignore=("test_views", "members"))
    for d, c in zip(dirs, configs):
        if c.get("members"):
            raise ValueError(f"{d}: already an ensemble; name its members instead")
    config = AnomalyVFMConfig.from_dict({**configs[0], "test_views": test_views,
                                         "members": [member_label(d) for d in dirs[1:]],
                                         "threshold": 0.5, "threshold_origin": "unset", "normal_stats": {},
                                         "batch_fusion": {}, "weights_sha256": None})
    model = AnomalyVFM(config)
    set_weights(model, read_tensors(dirs[0] / ADAPTER_NAME), read_tensors(dirs[0] / HEADS_NAME), str(dirs[0]))
    for member, d in zip(model.members, dirs[1:]):
        set_weights(member, read_tensors(d / ADAPTER_NAME), read_tensors(d / HEADS_NAME), str(d))
    out = save(model, out)
    load_weights(AnomalyVFM(model.config), out)  # what was written loads back
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="JSON with members, out and test_views")
    args = parser.parse_args(argv)
    cfg = EnsembleConfig(**json.loads(args.config.read_text()))
    print(f"ensemble of {len(cfg.members)} checkpoints -> {ensemble(cfg.members, cfg.out, cfg.test_views)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
