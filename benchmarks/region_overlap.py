"""Do the regions a flagged defective image gets point at the defect? On magnetic_tile's test split (224 px): the
fraction of flagged defective images whose largest region overlaps the true mask, for the zero-shot checkpoint at
its default threshold and for a k = 4 profile (seed 0, fine-tuned and calibrated on 4 train/good images).
Also the fraction where any region overlaps, and the overlap of the map's top 1% with the mask.

    python benchmarks/region_overlap.py [--model CHECKPOINT] [--out benchmarks/results/region-overlap]
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def overlap_stats(preds, samples) -> dict:
    flagged = largest = anywhere = top = 0
    for p, s in zip(preds, samples):
        if not p.ok or not p.is_anomalous:
            continue
        flagged += 1
        truth = np.asarray(Image.open(s.mask).convert("L")) > 0
        if truth.shape != p.anomaly_map.shape:
            truth = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize(p.anomaly_map.shape[::-1])) > 0
        hot = p.anomaly_map >= np.quantile(p.anomaly_map, 0.99)
        top += bool((hot & truth).any())
        hits = []
        for r in p.regions or []:
            x0, y0, x1, y1 = r.box
            component = p.mask[y0:y1, x0:x1] & truth[y0:y1, x0:x1]
            hits.append(bool(component.any()))
        largest += bool(hits and hits[0])
        anywhere += any(hits)
    defective = sum(s.label for s in samples)
    return {"defective": defective, "flagged": flagged, "largest_region_overlaps": largest,
            "any_region_overlaps": anywhere, "top1pct_overlaps": top,
            "largest_fraction": largest / max(flagged, 1), "any_fraction": anywhere / max(flagged, 1),
            "top1pct_fraction": top / max(flagged, 1)}


def main() -> None:
    from anomalyvfm.benchmark import draw_shots
    from anomalyvfm.data import scan
    from anomalyvfm.fewshot import FinetuneConfig, finetune
    from anomalyvfm.model import load_default

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--model")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "region-overlap"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    (cat,) = scan(args.data, ["magnetic_tile"])
    defective = [s for s in cat.test if s.label == 1 and s.mask is not None]
    base = load_default(args.model)
    results = {}
    preds = base.predict([str(s.path) for s in defective], resolution=224)
    results["zero-shot, default threshold"] = overlap_stats(preds, defective)
    shots = draw_shots(cat.train, 4, 0)
    profile, _ = finetune(base, [str(s.path) for s in shots], FinetuneConfig(resolution=224, seed=0))
    preds = profile.predict([str(s.path) for s in defective], resolution=224)
    results["k = 4 profile (seed 0), calibrated threshold"] = overlap_stats(preds, defective)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| model | defective | flagged | largest region overlaps the mask | any region overlaps | top 1% of "
             "the map overlaps |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['defective']} | {r['flagged']} | {100 * r['largest_fraction']:.1f}% "
                     f"({r['largest_region_overlaps']}) | {100 * r['any_fraction']:.1f}% | "
                     f"{100 * r['top1pct_fraction']:.1f}% |")
    (out / "summary.json").write_text(json.dumps({"model": args.model or "shipped", "resolution": 224,
                                                  "results": results}, indent=1))
    (out / "overlap.md").write_text("magnetic_tile test split, 224 px\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
