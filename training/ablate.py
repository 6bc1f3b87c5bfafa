"""Ablations that decide the design: each arm is a training run with the same budget from the same base config,
scored on the **validation split only** — the generator's held-out pairs (seed 999) and one real category declared
as validation (magnetic_tile). The report categories are scored too, with ``--report``, but never read by
the selection (``summary.json`` keeps them apart). Interrupted arms resume; finished arms are not re-run.

    python -m training.ablate --base training/configs/v3-ablation.json --steps 250 --arms continue,no_photo,focal,binary

Every arm is scored twice: as trained, and with the published evaluation's 5x5 mean filter on the map
(``map_smoothing`` 5: a config change, no training). Writes runs/<name>/<arm>/, benchmarks/results/<name>/<arm>/
and benchmarks/results/<name>/summary.json.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from anomalyvfm.checkpoint import update_config
from anomalyvfm.synth import DEFECTS, TEXTURES
from training.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
VALIDATION = ("magnetic_tile",)  # the real category that may choose; every other category only reports
ARMS: dict[str, dict] = {
    # arms of the first generator (v1, from default.json; see BENCHMARKS.md for their flawed protocol)
    "lora": {},  # reference: LoRA on q/v/o of every layer, last-layer features, all defect families
    "frozen": {"freeze_adapters": True},  # decoder and head only
    "multilayer": {"model": {"decoder": {"layers": [3, 7, 11]}}},  # layers 4, 8, 12 fused
    "no_texture_swap": {"synth": {"defects": [d for d in DEFECTS if d != "texture_swap"]}},
    "refine": {"refine_masks": True},  # AnomalyVFM mask refinement with frozen features
    # arms from v3-ablation.json (a warm start from v2, photographs among the normals, before misprint and bend)
    "continue": {},  # the base as it is: photographs among the normals
    "no_photo": {"synth": {"textures": [t for t in TEXTURES if t != "photo"]}},  # procedural normals only
    "focal": {"focal_alpha": 0.25},  # the published focal class weight
    "binary": {"binary_targets": True},  # the published thresholded mask targets
    "area": {"mask_resize": "area"},  # soft targets: the anomalous fraction of each logit cell
}
SMOOTHING = 5  # the published evaluation's mean filter


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _synthetic_validation():
    spec = importlib.util.spec_from_file_location("synthetic_validation",
                                                  ROOT / "benchmarks" / "synthetic_validation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smoothed_copy(final: Path, smoothing: int = SMOOTHING) -> Path:
    """The same checkpoint with ``map_smoothing`` set (weights untouched, so their sha256 still holds)."""
    dest = final.with_name(f"{final.name}-smooth{smoothing}")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(final, dest)
    update_config(dest, map_smoothing=smoothing)
    return dest


def model_resolution(model: Path) -> int:
    """The input side a checkpoint predicts at by default: its config's ``mode`` (224 px when it has none)."""
    from anomalyvfm.config import resolution_for

    return resolution_for(default_mode=json.loads((model / "config.json").read_text()).get("mode", "fast"))


def score(model: Path, data: str, out: Path, pairs: list[dict], report: bool,
          validation: tuple[str, ...] = VALIDATION, device: str = "auto") -> dict:
    """Synthetic validation pairs, the validation category and (``report``) the report categories, each at the
    checkpoint's own mode's resolution, on ``device`` (auto: CUDA where there is one)."""
    from anomalyvfm.benchmark import BenchmarkConfig, config_dict, run_benchmark
    from anomalyvfm.report import write_reports

    result = {"synthetic": _synthetic_validation().evaluate(str(model), pairs, device), "validation": {},
              "report": {}}
    bench = BenchmarkConfig(data=data, out=str(out), methods=("anomalyvfm",), model=str(model),
                            resolution=model_resolution(model), datasets=() if report else validation, device=device)
    parts = run_benchmark(bench)
    write_reports(parts, Path(bench.out), config_dict(bench), bench.warnings)
    for p in parts:
        r = p["row"]
        split = "validation" if r["dataset"] in validation else "report"
        result[split][f"{r['dataset']}/{r['category']}"] = {
            k: r.get(k, float("nan")) for k in ("I-AUROC", "I-AUROC[cls]", "I-AUROC[topk]", "I-AUROC[fused]",
                                                "P-AUROC", "AUPRO@0.3")}
    return result


def variants(model: Path, name: str, data: str, results: Path, pairs: list[dict], report: bool,
             validation: tuple[str, ...]) -> dict:
    """``model`` scored as it is and with the published 5x5 mean filter."""
    return {"as_trained": score(model, data, results / name, pairs, report, validation),
            f"smooth{SMOOTHING}": score(smoothed_copy(model), data, results / f"{name}-smooth{SMOOTHING}", pairs,
                                        report, validation)}


def run_arm(arm: str, steps: int, base: Path, data: str, runs: Path, results: Path, pairs: list[dict],
            report: bool, validation: tuple[str, ...] = VALIDATION) -> dict:
    cfg_dict = _merge(json.loads(base.read_text()), ARMS[arm])
    cfg_dict.update(steps=steps, out=str(runs / arm), checkpoint_every=min(50, steps))
    start = time.perf_counter()
    final = train(TrainConfig(**cfg_dict))
    train_s = time.perf_counter() - start
    return {"arm": arm, "steps": steps, "train_s": train_s, "overrides": ARMS[arm], "base": base.name,
            **variants(final, arm, data, results, pairs, report, validation)}


def run_baseline(base: Path, data: str, runs: Path, results: Path, pairs: list[dict], report: bool,
                 validation: tuple[str, ...] = VALIDATION) -> dict:
    """The base's warm-start checkpoint itself, untrained further (scored from a copy under runs/)."""
    init = ROOT / json.loads(base.read_text())["init_from"]
    copy_dir = runs / "baseline" / "final"
    if not copy_dir.exists():
        shutil.copytree(init, copy_dir)
    return {"arm": "baseline", "steps": 0, "train_s": 0.0, "overrides": {}, "base": str(init.relative_to(ROOT)),
            **variants(copy_dir, "baseline", data, results, pairs, report, validation)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250, help="training steps per arm (the same for all)")
    parser.add_argument("--arms", default="baseline,continue,no_photo,focal,binary",
                        help="'baseline' scores the base's init_from checkpoint without training")
    parser.add_argument("--base", type=Path, default=ROOT / "training" / "configs" / "v3-ablation.json")
    parser.add_argument("--name", default="ablations-v3", help="folder name under runs/ and benchmarks/results/")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--report", action="store_true", help="also score the report categories (never selects)")
    parser.add_argument("--validation", default=",".join(VALIDATION), help="the real data sets that may choose")
    parser.add_argument("--pairs", type=int, default=150, help="held-out synthetic pairs (seed 999)")
    parser.add_argument("--runs", type=Path, default=None, help="default runs/NAME")
    parser.add_argument("--results", type=Path, default=None, help="default benchmarks/results/NAME")
    args = parser.parse_args(argv)
    runs = args.runs or ROOT / "runs" / args.name
    results = args.results or ROOT / "benchmarks" / "results" / args.name
    validation = tuple(args.validation.split(","))
    summary_path = results / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    pairs = _synthetic_validation().validation_pairs(args.pairs)
    for arm in args.arms.split(","):
        if arm != "baseline" and arm not in ARMS:
            raise SystemExit(f"unknown arm {arm!r}; known: baseline, {', '.join(ARMS)}")
        if arm in summary and summary[arm]["steps"] in (0, args.steps):  # finished (baseline: 0 steps)
            continue
        if arm == "baseline":
            summary[arm] = run_baseline(args.base, args.data, runs, results, pairs, args.report, validation)
        else:
            summary[arm] = run_arm(arm, args.steps, args.base, args.data, runs, results, pairs, args.report,
                                   validation)
        results.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=1, default=float))
        print(json.dumps({"arm": arm, "train_s": summary[arm]["train_s"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
