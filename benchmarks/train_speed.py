"""Seconds per training step (forward + backward + AdamW, synthetic batch included) on this machine, to size the
default training run. Prints a table; all settings in one run so the ratios compare.

    python benchmarks/train_speed.py [--steps 4] [--backbone embedded]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for ``training``

from training.train import TrainConfig, batch, batches, build, train_step  # noqa: E402
from anomalyvfm.synth import SynthConfig  # noqa: E402


def seconds_per_step(cfg: TrainConfig, steps: int) -> tuple[float, float]:
    """(mean s/step, of which s/step spent generating the synthetic batch)."""

    model, optimizer = build(cfg, torch.device("cpu"))
    synth = SynthConfig(**{**cfg.synth, "size": cfg.resolution})
    micro_batches = batches(dataclasses.replace(cfg, steps=steps + 1), synth, 0)
    train_step(cfg, model, model, optimizer, micro_batches, torch.device("cpu"), 0)  # warm-up
    start = time.perf_counter()
    for step in range(1, steps + 1):
        train_step(cfg, model, model, optimizer, micro_batches, torch.device("cpu"), step)
    total = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    for step in range(steps):
        batch(cfg, synth, step, 0)
    return total, (time.perf_counter() - start) / steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--backbone", default="embedded")
    args = parser.parse_args(argv)
    print(f"# {torch.get_num_threads()} torch threads, torch {torch.__version__}, {args.steps} timed steps each")
    print("| setting | s/step | of which synthetic data | images/s |")
    print("|---|---|---|---|")
    settings = [("batch 8 @ 224, LoRA", {}), ("batch 8 @ 224, frozen adapters", {"freeze_adapters": True}),
                ("batch 8 @ 224, layers 4/8/12 fused", {"model": {"backbone": args.backbone,
                                                                   "decoder": {"layers": [3, 7, 11]}}}),
                ("batch 8 @ 224, mask refinement", {"refine_masks": True}),
                ("batch 4 @ 448, LoRA", {"batch_size": 4, "resolution": 448})]
    with tempfile.TemporaryDirectory() as tmp:
        for label, override in settings:
            kw = {"out": tmp, "batch_size": 8, "resolution": 224, "model": {"backbone": args.backbone}, **override}
            cfg = TrainConfig(**kw)
            step_s, data_s = seconds_per_step(cfg, args.steps)
            print(f"| {label} | {step_s:.2f} | {data_s:.2f} | {cfg.batch_size / step_s:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
