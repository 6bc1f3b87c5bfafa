"""How many reference images and aggregation degrees batch mode needs: chosen on a declared validation category.

    python benchmarks/mutual_budget.py        # -> benchmarks/results/mutual-budget/

Validation split: magnetic_tile's test split (its batch), declared before this run; the other categories are the
report split (``python benchmarks/mutual_ablation.py --bf16 --max-references 64``). Each row: I-AUROC of the full
mutual score (blocks 5, 8, 11, RsCIN) with at most N reference images per image and the given degrees r, and the
wall time of its mutual maps (features excluded) on the 2-core CPU, bfloat16 similarities, 224 px. Rule: the
cheapest setting that keeps MuSc's three degrees and stays within 1 point of the 200-reference setting.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from anomalyvfm.data import scan  # noqa: E402
from anomalyvfm.metrics import image_metrics  # noqa: E402
from anomalyvfm.model import load_default  # noqa: E402
from anomalyvfm.mutual import aggregate, mutual_scores, rscin  # noqa: E402
from anomalyvfm.preprocess import read_image  # noqa: E402
from mutual_ablation import extract_all  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "mutual-budget"
SETTINGS = [(200, (1, 3, 5)), (64, (1, 3, 5)), (32, (1, 3, 5)), (64, (1, 3)), (200, (3,)), (64, (3,)), (64, (1,))]


def main() -> int:
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    [cat] = scan(ROOT.parent / "shared" / "data", ["magnetic_tile"])
    y = [s.label for s in cat.test]
    _, _, layers, cls = extract_all(load_default(), [read_image(s.path) for s in cat.test], "adapted")
    rows = []
    for refs, radii in SETTINGS:
        tic = time.perf_counter()
        total = sum(mutual_scores(aggregate(t.float(), r), 0.3, refs, 0, 256, torch.bfloat16)
                    for t in layers for r in radii)
        scores = rscin((total / (len(layers) * len(radii))).amax(1), cls, (1, 2, 3))
        rows.append({"max_references": refs, "radii": list(radii), "seconds": time.perf_counter() - tic,
                     "I-AUROC": image_metrics(y, scores.tolist())["I-AUROC"]})
        print(rows[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps({"validation": cat.key, "n": len(y), "rows": rows}, indent=1))
    lines = ["| reference images | degrees r | magnetic_tile I-AUROC | mutual maps (s) |", "|---|---|---|---|"]
    lines += [f"| {r['max_references']} | {', '.join(map(str, r['radii']))} | {100 * r['I-AUROC']:.1f} | "
              f"{r['seconds']:.0f} |" for r in rows]
    (OUT / "table.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
