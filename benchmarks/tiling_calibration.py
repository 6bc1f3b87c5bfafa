"""Does calibrating on good parts give tiling a usable threshold? DeepPCB, the case tiling is for.

    python benchmarks/tiling_calibration.py [--data ../shared/data] [--good 16] [--seed 0]

For the default scored whole and with ``tile_size`` 320 and 224: ``--good`` images drawn (``--seed``) from
deeppcb/pcb train/good are scored as ``anomalyvfm calibrate`` scores them, the threshold is ``calibrate``'s (target
FPR 1%, on logits), and its false-positive rate on test/good and recall on the defective test images are read from
the tiling runs' harness parts (zeroshot-224-v6-flips[-tileN]: the same model, tiling and test images). Writes
benchmarks/results/tiling-calibration/results.json and table.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from anomalyvfm.calibration import calibrate  # noqa: E402
from anomalyvfm.model import load_default  # noqa: E402
from default_threshold import part_rates  # noqa: E402

RUNS = {0: "zeroshot-224-v6-flips", 320: "zeroshot-224-v6-flips-tile320", 224: "zeroshot-224-v6-flips-tile224"}
PART = "parts/deeppcb__pcb__anomalyvfm__k0__s0.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--good", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tiling-calibration")
    args = parser.parse_args()
    pool = sorted((Path(args.data) / "deeppcb" / "pcb" / "train" / "good").iterdir())
    rng = np.random.default_rng(args.seed)
    good = [str(pool[i]) for i in sorted(rng.choice(len(pool), args.good, replace=False))]
    model = load_default()
    rows = []
    for tile_size, folder in RUNS.items():
        model.config.tile_size = tile_size
        scores = [p.scores[model.config.image_score] for p in model.predict(good, resolution=224, errors="raise")]
        threshold = calibrate(scores, 0.01, bounded=True).threshold
        part = ROOT / "benchmarks" / "results" / folder / PART
        rows.append({"tile_size": tile_size, "threshold": threshold, "good_max": max(scores),
                     **part_rates(threshold, part), "stored": part_rates(model.config.threshold, part)})
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"good": [Path(g).name for g in good], "seed": args.seed, "fpr_target": 0.01, "rows": rows}
    (args.out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [f"| input | threshold from {args.good} good boards | FPR / recall there | FPR / recall at the stored "
             f"{model.config.threshold} |", "|---|---|---|---|"]
    for r in rows:
        label = f"tile_size {r['tile_size']}" if r["tile_size"] else "whole image"
        lines.append(f"| {label} | {r['threshold']:.4f} | {100 * r['FPR']:.1f}% / {100 * r['recall']:.1f}% | "
                     f"{100 * r['stored']['FPR']:.1f}% / {100 * r['stored']['recall']:.1f}% |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
