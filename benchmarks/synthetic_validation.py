"""The generator's validation pairs: image and pixel AUROC of checkpoints on held-out synthetic pairs.

    python benchmarks/synthetic_validation.py --models anomalyvfm/weights/anomalyvfm-vits14 runs/x/final \
        [--n 150] [--seed 999] [--out benchmarks/results/synthetic-validation]

The pairs come from the current generator with seed 999, which no training run draws from (training uses seeds 0
and 1, the default threshold 101). Each pair gives one good and one defective image at 224 px; image AUROC is
reported for every image-score rule, pixel AUROC over all pixels of the defective images and their good twins.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


SEED, N = 999, 150  # the validation pairs: a seed no training run draws from


def validation_pairs(n: int = N, seed: int = SEED, size: int = 224) -> list[dict]:
    """The generator's held-out pairs, drawn at ``size`` px (the synthetic half of the validation split)."""
    from anomalyvfm.synth import SynthConfig, generate

    return list(generate(n, seed=seed, cfg=SynthConfig(size=size)))


def evaluate(model_dir: str, pairs: list[dict], device: str = "auto") -> dict:
    """``pair_metrics`` of a checkpoint at its own mode's resolution (224 px for ``fast``, 448 for ``accurate``)."""
    from anomalyvfm.config import resolution_for
    from anomalyvfm.model import load_default
    from anomalyvfm.runinfo import resolve_device

    model = load_default(model_dir).to(resolve_device(device))
    return {**pair_metrics(model, pairs, resolution_for(default_mode=model.config.mode)),
            "image_score": model.config.image_score}


def pair_metrics(model, pairs: list[dict], resolution: int = 224) -> dict:
    """Image AUROC under every rule and pixel AUROC of a loaded model on ``pairs``, scored at ``resolution``."""
    images = [p["good"] for p in pairs] + [p["bad"] for p in pairs]
    labels = np.array([0] * len(pairs) + [1] * len(pairs))
    preds = model.predict(images, resolution=resolution)
    out = {f"I-AUROC[{rule}]": float(roc_auc_score(labels, [p.scores[rule] for p in preds]))
           for rule in preds[0].scores}
    masks = [np.zeros(p["mask"].shape, bool) for p in pairs] + [p["mask"] > 0 for p in pairs]
    out["P-AUROC"] = float(roc_auc_score(np.concatenate([m.ravel() for m in masks]),
                                         np.concatenate([p.anomaly_map.ravel() for p in preds])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "synthetic-validation"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    pairs = validation_pairs(args.n, args.seed)
    results = {m: evaluate(m, pairs) for m in args.models}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"n": args.n, "seed": args.seed, "results": results}, indent=1))
    rules = sorted({k for r in results.values() for k in r if k.startswith("I-AUROC")})
    lines = [f"{args.n} held-out synthetic pairs (seed {args.seed}), 224 px", "",
             "| model | " + " | ".join(rules) + " | P-AUROC |", "|---" * (len(rules) + 2) + "|"]
    for m, r in results.items():
        lines.append(f"| {m} | " + " | ".join(f"{100 * r[k]:.1f}" if k in r else "–" for k in rules)
                     + f" | {100 * r['P-AUROC']:.1f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
