"""Wall time of a few-shot fine-tune (the whole `anomalyvfm finetune`: fine-tuning with early stopping, memory,
fusion weight, calibration, saving the profile) on real good images, per k, on this machine.

    python benchmarks/finetune_speed.py [--data ../shared/data/magnetic_tile/magnetic_tile] [--shots 1,4,8]

Prints a Markdown table; the issue's budget is k = 4 in fast mode within 5 minutes on the 2-core CPU.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomalyvfm.fewshot import FinetuneConfig, finetune, save_profile  # noqa: E402
from anomalyvfm.model import load_default  # noqa: E402
from anomalyvfm.predict import collect_inputs  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "magnetic_tile" / "magnetic_tile"))
    parser.add_argument("--shots", default="1,4,8")
    parser.add_argument("--mode", default="fast")
    args = parser.parse_args(argv)
    good = collect_inputs([str(Path(args.data) / "train" / "good")])
    base = load_default()
    print(f"# {torch.get_num_threads()} torch threads, torch {torch.__version__}, mode {args.mode}, "
          f"images from {args.data}/train/good")
    print("| k | seconds | steps run (best) | fusion weight | of the 5 min budget |")
    print("|---|---|---|---|---|")
    for k in map(int, args.shots.split(",")):
        images = [good[i] for i in np.random.default_rng(0).permutation(len(good))[:k]]
        cfg = FinetuneConfig(mode=args.mode)
        tic = time.perf_counter()
        profile, report = finetune(base, images, cfg, progress=False)
        with tempfile.TemporaryDirectory() as tmp:
            save_profile(profile, tmp, base="shipped", good=images, config=cfg, report=report)
        seconds = time.perf_counter() - tic
        print(f"| {k} | {seconds:.0f} | {report.steps} ({report.best_step}) | {report.fusion_weight:g} | "
              f"{100 * seconds / 300:.0f}% |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
