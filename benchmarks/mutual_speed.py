"""Cheaper mutual scoring: which approximation keeps the AUROC? Chosen on the validation category only.

    python benchmarks/mutual_speed.py                 # -> benchmarks/results/mutual-speed/

The validation category is magnetic_tile (declared in BENCHMARKS.md; the same split the reference-budget study
used); deeppcb/pcb, elpv/mono and elpv/poly are reported with the chosen variant only, after the choice. The rule:
the variant with the best validation I-AUROC among those whose mutual step costs at most half of the model's forward
pass on the same images (so that batch mode stays within 1.5× single-image predict). Each category's patch tokens
(blocks 5, 8, 11 of the shipped checkpoint's adapted backbone) are extracted once into ``cache/`` (not committed),
one file per category and checkpoint (named by the first 12 hex digits of its weights' sha256).
224 px, 2-core CPU, bfloat16 products where the CPU has them, deterministic (projection and references seeded 0).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomalyvfm.data import scan  # noqa: E402
from anomalyvfm.metrics import image_metrics  # noqa: E402
from anomalyvfm.mutual import MutualConfig, score_batch  # noqa: E402
from anomalyvfm.outputs import atomic_write_bytes  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "mutual-speed"
VALIDATION = "magnetic_tile/magnetic_tile"
VARIANTS = {  # name: MutualConfig overrides
    "full (r 1/3/5, 384-d per layer)": {"radii": (1, 3, 5), "project": None},
    "r 1/3/5, projected to 128": {"radii": (1, 3, 5), "project": 128},
    "r 1/3/5, projected to 96": {"radii": (1, 3, 5), "project": 96},
    "r 1/3/5, projected to 64": {"radii": (1, 3, 5), "project": 64},
    "r 1/3, projected to 128": {"radii": (1, 3), "project": 128},
    "r 1/3/5, projected to 64, 100 references": {"radii": (1, 3, 5), "project": 64, "max_references": 100},
    "r 1/3, projected to 128, 100 references": {"radii": (1, 3), "project": 128, "max_references": 100},
    "r 1/3, projected to 128, 64 references": {"radii": (1, 3), "project": 128, "max_references": 64},
}


@torch.inference_mode()
def tokens_of(cat, model) -> dict:
    from anomalyvfm.batch_predict import _forward
    from anomalyvfm.predict import _load

    cache = cache_path(cat.key, model)
    if cache.is_file():
        return torch.load(cache, weights_only=True)
    loaded = [_load(str(s.path), i, 224, model.config.max_aspect) for i, s in enumerate(cat.test)]
    tic = time.perf_counter()
    model_scores, _, tokens, cls = _forward(model, loaded, 224, 8, (5, 8, 11), False)
    rec = {"labels": torch.tensor([s.label for s in cat.test]), "tokens": tokens, "cls": cls, "model": model_scores,
           "crops": torch.tensor([len(item.crops) for item in loaded]),
           "forward_s": torch.tensor(time.perf_counter() - tic)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(rec, cache)
    return rec


def cache_path(key: str, model) -> Path:
    """Where a category's tokens under ``model`` are cached: the tokens change with every checkpoint."""
    return OUT / "cache" / f"{key.replace('/', '__')}__{(model.config.weights_sha256 or 'untrained')[:12]}.pt"


def per_image(rec: dict, tiles: torch.Tensor) -> np.ndarray:
    """Tile scores of a cached category -> image scores: a tiled image's most anomalous tile."""
    out, k = [], 0
    for n in rec["crops"].tolist():
        out.append(float(tiles[k:k + n].max()))
        k += n
    return np.array(out)


def evaluate(rec: dict, overrides: dict) -> dict:
    tic = time.perf_counter()
    result = score_batch(rec["tokens"], rec["cls"], MutualConfig(**overrides))
    seconds = time.perf_counter() - tic
    auroc = image_metrics(rec["labels"].tolist(), per_image(rec, result.image_scores).tolist())["I-AUROC"]
    return {"I-AUROC": 100 * auroc, "mutual_s": seconds, "forward_s": float(rec["forward_s"])}


def main(argv=None) -> int:
    from anomalyvfm.model import load_default

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = load_default().prepare_for_inference()
    cats = {c.key: c for c in scan(args.data)}
    val = tokens_of(cats[VALIDATION], model)
    rows = {name: evaluate(val, o) for name, o in VARIANTS.items()}
    for name, row in rows.items():
        print(f"{VALIDATION} {name}: {row['I-AUROC']:.1f}, {row['mutual_s']:.0f} s", flush=True)
    within = {n: r for n, r in rows.items() if r["mutual_s"] <= 0.5 * r["forward_s"]}
    chosen = max(within, key=lambda n: within[n]["I-AUROC"])
    report = {}
    for key, cat in cats.items():
        if key == VALIDATION:
            continue
        rec = tokens_of(cat, model)
        report[key] = {"chosen": evaluate(rec, VARIANTS[chosen])}
        print(key, {k: round(v["I-AUROC"], 1) for k, v in report[key].items()}, flush=True)
    lines = [f"Validation ({VALIDATION}, {int(val['labels'].numel())} images; forward pass "
             f"{float(val['forward_s']):.0f} s):", "",
             "| variant | I-AUROC | mutual step (s) | / forward |", "|---|---|---|---|"]
    lines += [f"| {n}{' **(chosen)**' if n == chosen else ''} | {r['I-AUROC']:.1f} | {r['mutual_s']:.0f} | "
              f"{r['mutual_s'] / r['forward_s']:.2f} |" for n, r in rows.items()]
    lines += ["", "Report categories, the chosen variant only (the full recipe's numbers there: "
              "benchmarks/mutual_ablation.py):", "",
              "| category | images | I-AUROC | mutual step (s) | forward (s) |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {len(cats[k].test)} | {r['chosen']['I-AUROC']:.1f} | {r['chosen']['mutual_s']:.0f} | "
              f"{r['chosen']['forward_s']:.0f} |" for k, r in report.items()]
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(OUT / "results.json", json.dumps({"validation": rows, "chosen": chosen,
                                                         "report": report}, indent=1).encode())
    atomic_write_bytes(OUT / "table.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
