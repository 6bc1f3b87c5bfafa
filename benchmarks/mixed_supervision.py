"""Mixed supervision: what a few real defective images add to a k-shot profile.

    python benchmarks/mixed_supervision.py [--data ../shared/data] [--categories magnetic_tile/magnetic_tile elpv/mono]
        [--shots 4] [--defective 4] [--seeds 0] [--resolution 224]

Per category and seed: k good images drawn from train/good (as the harness draws them) and n defective images drawn
from test (with their masks where the data set has them). Three profiles are fitted from the shipped checkpoint:
good images only; good + defective in fine-tuning and calibration; and the same plus the positive (defect) memory.
All three are scored on the test images that remain once the n defective ones are taken out. Writes
benchmarks/results/mixed-supervision/results.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomalyvfm.benchmark import _read_mask, draw_shots  # noqa: E402
from anomalyvfm.data import scan  # noqa: E402
from anomalyvfm.fewshot import FinetuneConfig, finetune  # noqa: E402
from anomalyvfm.metrics import image_metrics, pixel_metrics  # noqa: E402
from anomalyvfm.model import load_default  # noqa: E402
from anomalyvfm.outputs import atomic_write_bytes  # noqa: E402
from anomalyvfm.preprocess import read_image  # noqa: E402

ARMS = {"good only": {}, "+ defective (fine-tune, calibration)": {"defect_memory": False},
        "+ defective and defect memory": {"defect_memory": True}}


def evaluate(profile, test, resolution: int) -> dict:
    images = [read_image(s.path) for s in test]
    return metrics_of(test, images, profile.predict(images, resolution=resolution, errors="raise"))


def metrics_of(test, images, results) -> dict:
    """Image metrics, the verdicts' FPR and recall, and (where the data set has masks) pixel metrics."""
    labels = np.array([s.label for s in test], bool)
    verdicts = np.array([r.is_anomalous for r in results], bool)
    row = {**image_metrics(labels.astype(int).tolist(), [r.score for r in results]),
           "FPR@thr": float(verdicts[~labels].mean()), "recall@thr": float(verdicts[labels].mean())}
    masks = [(_read_mask(s, im.shape[:2], lambda m: None), r.anomaly_map) for s, im, r in zip(test, images, results)]
    masks = [(m, a) for m, a in masks if m is not None]
    if any(s.label and s.mask is not None for s in test):
        pix = pixel_metrics([m for m, _ in masks], [a for _, a in masks], 0.3)
        row.update({k: pix[k] for k in ("P-AUROC", "AUPRO@0.3")})
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--categories", nargs="+", default=["magnetic_tile/magnetic_tile", "elpv/mono"])
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--defective", type=int, default=4)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mixed-supervision")
    args = parser.parse_args(argv)
    base = load_default()
    cats = {c.key: c for c in scan(args.data, args.categories)}
    rows = []
    for key in args.categories:
        cat = cats[key]
        for seed in map(int, args.seeds.split(",")):
            good = [s.path for s in draw_shots(cat.train, args.shots, seed)]
            bad_pool = [s for s in cat.test if s.label]
            taken = sorted(np.random.default_rng([seed, 7]).permutation(len(bad_pool))[:args.defective])
            defective = [(bad_pool[i].path, bad_pool[i].mask) for i in taken]
            test = [s for s in cat.test if s.path not in {p for p, _ in defective}]
            for arm, extra in tqdm(ARMS.items(), desc=f"{key} seed {seed}"):
                cfg = FinetuneConfig(resolution=args.resolution, seed=seed, **{k: v for k, v in extra.items()})
                tic = time.perf_counter()
                profile, report = finetune(base, good, cfg, defective=defective if extra else None, progress=False)
                fit_s = time.perf_counter() - tic
                row = {"category": key, "seed": seed, "arm": arm, "shots": args.shots,
                       "defective": len(defective) if extra else 0, "with_masks": sum(m is not None for _, m in
                                                                                     defective) if extra else 0,
                       "fit_s": fit_s, "n_test": len(test), **evaluate(profile, test, args.resolution)}
                rows.append(row)
                tqdm.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    payload = {"config": {k: str(v) for k, v in vars(args).items()}, "finetune": dataclasses.asdict(FinetuneConfig()),
               "rows": rows}
    atomic_write_bytes(args.out / "results.json", json.dumps(payload, indent=1).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
