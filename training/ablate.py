"""Ablations that decide the design: each arm is a short training run with the same budget, then a zero-shot
harness run on all of the real data (never trained on). Interrupted arms resume.

    python -m training.ablate --steps 300 [--arms lora,frozen,multilayer,no_texture_swap,refine]

Writes runs/ablations/<arm>/ (checkpoints), benchmarks/results/ablations/<arm>/ (harness output) and
benchmarks/results/ablations/summary.json. The image-score ablation (CLS vs top-K vs fused) needs no extra
training: every zero-shot run records I-AUROC under all three rules.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from anomalyvfm.synth import DEFECTS
from training.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
ARMS: dict[str, dict] = {
    "lora": {},  # reference: LoRA on q/v/o of every layer, last-layer features, all defect families
    "frozen": {"freeze_adapters": True},  # decoder and head only
    "multilayer": {"model": {"decoder": {"layers": [3, 7, 11]}}},  # layers 4, 8, 12 fused
    "no_texture_swap": {"synth": {"defects": [d for d in DEFECTS if d != "texture_swap"]}},
    "refine": {"refine_masks": True},  # AnomalyVFM mask refinement with frozen features
}


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def run_arm(arm: str, steps: int, base: Path, data: str, runs: Path, results: Path) -> dict:
    from anomalyvfm.benchmark import BenchmarkConfig, config_dict, run_benchmark
    from anomalyvfm.report import write_reports

    cfg_dict = _merge(json.loads(base.read_text()), ARMS[arm])
    cfg_dict.update(steps=steps, out=str(runs / arm), checkpoint_every=min(50, steps))
    start = time.perf_counter()
    final = train(TrainConfig(**cfg_dict))
    train_s = time.perf_counter() - start
    bench = BenchmarkConfig(data=data, out=str(results / arm), methods=("anomalyvfm",), model=str(final),
                            resolution=cfg_dict.get("resolution", 224))
    parts = run_benchmark(bench)
    write_reports(parts, Path(bench.out), config_dict(bench), bench.warnings)
    rows = [p["row"] for p in parts]

    def mean(key: str) -> float:
        values = [r[key] for r in rows if key in r and not np.isnan(r[key])]
        return float(np.mean(values)) if values else float("nan")

    return {"arm": arm, "steps": steps, "train_s": train_s, "overrides": ARMS[arm],
            **{k: mean(k) for k in ("I-AUROC", "I-AUROC[cls]", "I-AUROC[topk]", "I-AUROC[fused]", "P-AUROC",
                                    "AUPRO@0.3")},
            "per_category": {f"{r['dataset']}/{r['category']}": r["I-AUROC"] for r in rows}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per arm (the same for all)")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--base", type=Path, default=ROOT / "training" / "configs" / "default.json")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "ablations")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "ablations")
    args = parser.parse_args(argv)
    summary_path = args.results / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    for arm in args.arms.split(","):
        if arm not in ARMS:
            raise SystemExit(f"unknown arm {arm!r}; known: {', '.join(ARMS)}")
        summary[arm] = run_arm(arm, args.steps, args.base, args.data, args.runs, args.results)
        args.results.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=1))
        print(json.dumps({k: v for k, v in summary[arm].items() if k != "per_category"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
