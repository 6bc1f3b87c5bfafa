"""The batch fusion constants of a checkpoint, chosen on the validation category (magnetic_tile) and synthetic lots.

    python benchmarks/batch_lots.py --model M           # the synthetic lots: level_zero
    python benchmarks/batch_fusion.py --model M --write # the validation batch: level_full, max_weight -> M/config.json

Prints the validation batch's level (its median mutual patch distance, which sets ``BatchConfig.level_full``) and
the fused I-AUROC for a maximum weight of 0.5–1.0 at that level (weight 1.0 = mutual alone). ``level_zero`` is the
lowest level of the synthetic mixed lots that ``batch_lots.py`` measured with the same checkpoint. ``--write`` stores
the three in the checkpoint's ``config.json`` (``batch_fusion``), which ``BatchConfig.for_model`` applies. Whole test
split as the batch, 224 px, default ``MutualConfig``; no report category is read. M defaults to the default
checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
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
from mutual_speed import VALIDATION, per_image, tokens_of  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "batch-fusion"
LOTS = ROOT / "benchmarks" / "results" / "batch-lots" / "results.json"


def level_zero(sha: str) -> float:
    """The lowest level of the synthetic mixed lots, measured by batch_lots.py with the checkpoint ``sha``."""
    rows = json.loads(LOTS.read_text()) if LOTS.is_file() else []
    levels = [r["level"] for r in rows if r["kind"] == "mixed" and r.get("weights_sha256") == sha]
    if not levels:
        raise SystemExit(f"{LOTS}: no synthetic lots measured with this checkpoint; run "
                         "python benchmarks/batch_lots.py --model M first")
    return math.floor(100 * min(levels)) / 100  # two decimals, never above a mixed lot


def main(argv=None) -> int:
    from scipy.special import logit

    from anomalyvfm.checkpoint import update_config
    from anomalyvfm.data import scan
    from anomalyvfm.model import load_default, shipped_checkpoint, shipped_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="anomalyvfm-vits14", help="shipped checkpoint name or folder")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--write", action="store_true", help="store the chosen constants in the checkpoint's config")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = load_default(args.model).prepare_for_inference()
    sha = model.config.weights_sha256
    zero = level_zero(sha)
    rec = tokens_of({c.key: c for c in scan(args.data)}[VALIDATION], model)
    result = score_batch(rec["tokens"], rec["cls"], MutualConfig())
    level = float(result.patch_scores.median())
    model_s, mutual = per_image(rec, rec["model"]), per_image(rec, result.image_scores)
    zm, zu = robust_z(logit(np.clip(model_s, 1e-6, 1 - 1e-6))), robust_z(mutual)
    y = rec["labels"].tolist()
    rows = {f"{w:.1f}": 100 * image_metrics(y, ((1 - w) * zm + w * zu).tolist())["I-AUROC"]
            for w in (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)}
    best = max((w for w in rows if 0.0 < float(w) < 1.0), key=rows.get)
    chosen = {"level_full": math.floor(100 * min(level, zero - 0.01)) / 100, "level_zero": zero, "max_weight": float(best)}
    lines = [f"Checkpoint {args.model} (weights {sha[:12]}). Validation category {VALIDATION}: level {level:.3f}; "
             f"lowest synthetic mixed lot {zero:.2f}; chosen level_full {chosen['level_full']:.2f}, "
             f"level_zero {zero:.2f}, max_weight {best}", "",
             "| mutual weight | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|",
             "| I-AUROC | " + " | ".join(f"{v:.1f}" for v in rows.values()) + " |"]
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(OUT / "results.json", json.dumps({"model": args.model, "weights_sha256": sha, "level": level,
                                                         "rows": rows, "chosen": best,
                                                         "batch_fusion": chosen}).encode())
    atomic_write_bytes(OUT / "table.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    if args.write:
        folder = shipped_checkpoint(args.model) if args.model in shipped_names() else Path(args.model)
        update_config(folder, batch_fusion=chosen)
        print(f"wrote batch_fusion {chosen} to {folder / 'config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
