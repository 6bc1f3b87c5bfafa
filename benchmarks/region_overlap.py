"""Do the regions a flagged defective image gets point at the defect? For the zero-shot checkpoint at its default
threshold (224 px) and, on magnetic_tile, a k = 4 profile (seed 0, fine-tuned and calibrated on 4 train/good
images): the fraction of flagged defective images whose first listed region overlaps the true mask, with the regions
listed in each of three orders, and the fractions where any region, or the map's top 1%, overlaps it.

Orders (``ORDERS``): ``largest`` (area), ``strongest`` (peak map value), ``mass`` (the map summed over the region).
Which order the package lists regions in is chosen on magnetic_tile, the validation category, by the zero-shot row;
deeppcb (the other category with masks) reports. Overlap is per connected component of the verdict's mask.

    python benchmarks/region_overlap.py [--model CHECKPOINT] [--datasets magnetic_tile deeppcb]
                                        [--out benchmarks/results/region-overlap]
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ORDERS = {"largest": lambda c: c["area"], "strongest": lambda c: c["peak"], "mass": lambda c: c["mass"]}


def components(mask: np.ndarray, anomaly_map: np.ndarray, truth: np.ndarray) -> list[dict]:
    """The mask's connected components (8-connectivity, as ``anomalyvfm.regions``) with area, peak, mass and whether
    they overlap ``truth``."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    out = []
    for i in range(1, n):
        inside = labels == i
        values = anomaly_map[inside]
        out.append({"area": int(inside.sum()), "peak": float(values.max()), "mass": float(values.sum()),
                    "hit": bool((inside & truth).any())})
    return out


def overlap_stats(preds, samples) -> dict:
    flagged = anywhere = top = 0
    first = dict.fromkeys(ORDERS, 0)
    for p, s in zip(preds, samples):
        if not p.ok or not p.is_anomalous:
            continue
        flagged += 1
        truth = np.asarray(Image.open(s.mask).convert("L")) > 0
        if truth.shape != p.anomaly_map.shape:
            truth = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize(p.anomaly_map.shape[::-1])) > 0
        hot = p.anomaly_map >= np.quantile(p.anomaly_map, 0.99)
        top += bool((hot & truth).any())
        comps = components(p.mask, p.anomaly_map, truth)
        anywhere += any(c["hit"] for c in comps)
        for name, key in ORDERS.items():
            first[name] += bool(comps) and max(comps, key=key)["hit"]
    defective = sum(s.label for s in samples)
    return {"defective": defective, "flagged": flagged, "first_region_overlaps": first,
            "any_region_overlaps": anywhere, "top1pct_overlaps": top}


def main() -> None:
    from anomalyvfm.benchmark import draw_shots
    from anomalyvfm.data import scan
    from anomalyvfm.fewshot import FinetuneConfig, finetune
    from anomalyvfm.model import load_default

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--model")
    parser.add_argument("--datasets", nargs="+", default=["magnetic_tile", "deeppcb"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "region-overlap"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    base = load_default(args.model)
    results = {}
    for cat in scan(args.data, args.datasets):
        defective = [s for s in cat.test if s.label == 1 and s.mask is not None]
        preds = base.predict([str(s.path) for s in defective], resolution=224)
        results[f"{cat.key}: zero-shot, default threshold"] = overlap_stats(preds, defective)
        if cat.dataset == "magnetic_tile":
            shots = draw_shots(cat.train, 4, 0)
            profile, _ = finetune(base, [str(s.path) for s in shots], FinetuneConfig(resolution=224, seed=0))
            preds = profile.predict([str(s.path) for s in defective], resolution=224)
            results[f"{cat.key}: k = 4 profile (seed 0), calibrated threshold"] = overlap_stats(preds, defective)
        print(json.dumps(results, indent=1), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| category: model | defective | flagged | " + " | ".join(f"first region overlaps, {o} first"
                                                                     for o in ORDERS)
             + " | any region overlaps | top 1% of the map overlaps |", "|---" * (5 + len(ORDERS)) + "|"]
    for name, r in results.items():
        n = max(r["flagged"], 1)
        cells = " | ".join(f"{100 * r['first_region_overlaps'][o] / n:.1f}% ({r['first_region_overlaps'][o]})"
                           for o in ORDERS)
        lines.append(f"| {name} | {r['defective']} | {r['flagged']} | {cells} | "
                     f"{100 * r['any_region_overlaps'] / n:.1f}% | {100 * r['top1pct_overlaps'] / n:.1f}% |")
    (out / "summary.json").write_text(json.dumps({"model": args.model or "shipped", "resolution": 224,
                                                  "results": results}, indent=1))
    (out / "overlap.md").write_text("Defective test images with masks, 224 px\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
