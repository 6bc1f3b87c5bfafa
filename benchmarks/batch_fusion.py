"""The batch fusion's maximum mutual weight, chosen on the validation category (magnetic_tile) only.

    python benchmarks/batch_fusion.py         # after benchmarks/mutual_speed.py has cached the tokens

Prints the validation batch's level (its median mutual patch distance, which sets ``BatchConfig.level_full``) and
the fused I-AUROC for a maximum weight of 0.5–1.0 at that level (weight 1.0 = mutual alone). Whole test split as
the batch, 224 px, default ``MutualConfig``; no report category is read.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from anomalyvfm.batch import robust_z  # noqa: E402
from anomalyvfm.metrics import image_metrics  # noqa: E402
from anomalyvfm.mutual import MutualConfig, score_batch  # noqa: E402
from anomalyvfm.outputs import atomic_write_bytes  # noqa: E402
from mutual_speed import VALIDATION, per_image  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "batch-fusion"


def main() -> int:
    from scipy.special import logit

    torch.set_num_threads(2)
    cache = ROOT / "benchmarks" / "results" / "mutual-speed" / "cache" / f"{VALIDATION.replace('/', '__')}.pt"
    rec = torch.load(cache, weights_only=True)
    result = score_batch(rec["tokens"], rec["cls"], MutualConfig())
    level = float(result.patch_scores.median())
    model, mutual = per_image(rec, rec["model"]), per_image(rec, result.image_scores)
    zm, zu = robust_z(logit(np.clip(model, 1e-6, 1 - 1e-6))), robust_z(mutual)
    y = rec["labels"].tolist()
    rows = {f"{w:.1f}": 100 * image_metrics(y, ((1 - w) * zm + w * zu).tolist())["I-AUROC"]
            for w in (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)}
    best = max((w for w in rows if 0.0 < float(w) < 1.0), key=rows.get)
    lines = [f"Validation category {VALIDATION}: level {level:.3f}; chosen max_weight {best}", "",
             "| mutual weight | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|",
             "| I-AUROC | " + " | ".join(f"{v:.1f}" for v in rows.values()) + " |"]
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(OUT / "results.json", json.dumps({"level": level, "rows": rows, "chosen": best}).encode())
    atomic_write_bytes(OUT / "table.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
