"""Where the threshold comes from: the profile's own normal-only calibration vs `anomalyvfm calibrate` on a few
good images the profile has not seen.

    python benchmarks/calibration_holdout.py [--data ../shared/data] [--shots 4] [--unseen 8,16,32] [--seeds 0] [--model M]

Per category and seed: a k-shot profile is fine-tuned from the shipped checkpoint on the harness's draw of k good
images; its test images are scored once; then its threshold is re-chosen (target FPR 1%) from m further good images
of train/good (not among the k), with the plain 99% quantile (for m < 100: their maximum) and with the normal
prediction bound that ``recalibrate`` uses (``calibrate``). Each threshold's false-positive rate on test/good and recall on the
defective test images are reported. Writes benchmarks/results/calibration-holdout/results.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomalyvfm.benchmark import draw_shots  # noqa: E402
from anomalyvfm.calibration import calibrate  # noqa: E402
from anomalyvfm.data import scan  # noqa: E402
from anomalyvfm.fewshot import FinetuneConfig, finetune  # noqa: E402
from anomalyvfm.model import load_default  # noqa: E402
from anomalyvfm.outputs import atomic_write_bytes  # noqa: E402


def raw_scores(profile, paths, resolution: int) -> np.ndarray:
    return np.array([p.scores[profile.config.image_score] for p in
                     profile.predict(paths, resolution=resolution, errors="raise")])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--unseen", default="8,16,32")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--fpr", type=float, default=0.01)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "calibration-holdout")
    parser.add_argument("--model", help="base checkpoint (folder, hub id or shipped name; default: the default)")
    args = parser.parse_args(argv)
    base = load_default(args.model)
    unseen_sizes = [int(m) for m in args.unseen.split(",")]
    rows = []
    for cat in scan(args.data):
        for seed in map(int, args.seeds.split(",")):
            shots = draw_shots(cat.train, args.shots, seed)
            tic = time.perf_counter()
            profile, _ = finetune(base, [s.path for s in shots], FinetuneConfig(resolution=args.resolution,
                                                                               seed=seed, fpr=args.fpr),
                                  progress=False)
            fit_s = time.perf_counter() - tic
            labels = np.array([s.label for s in cat.test], bool)
            test = raw_scores(profile, [s.path for s in cat.test], args.resolution)
            rest = [s.path for s in cat.train if s.path not in {x.path for x in shots}]
            order = np.random.default_rng([seed, 11]).permutation(len(rest))
            extra = raw_scores(profile, [rest[i] for i in order[:max(unseen_sizes)]], args.resolution)

            def row(how: str, m: int, threshold: float) -> dict:
                return {"category": cat.key, "seed": seed, "shots": args.shots, "calibration": how, "unseen": m,
                        "threshold": threshold, "FPR@thr": float(np.mean(test[~labels] > threshold)),
                        "recall@thr": float(np.mean(test[labels] > threshold)), "fit_s": fit_s}

            rows.append(row("profile (leave-one-out views)", 0, profile.profile.calibration.threshold))
            for m in tqdm(unseen_sizes, desc=f"{cat.key} seed {seed}"):
                rows.append(row("unseen, quantile", m, float(np.quantile(extra[:m], 1 - args.fpr, method="higher"))))
                rows.append(row("unseen, calibrate", m, calibrate(extra[:m], args.fpr, bounded=True).threshold))
            for r in rows[-1 - 2 * len(unseen_sizes):]:
                print(f"{r['category']:28s} {r['calibration']:30s} m={r['unseen']:2d} FPR {100 * r['FPR@thr']:5.1f}"
                      f"  recall {100 * r['recall@thr']:5.1f}")
    out = {"config": {k: str(v) for k, v in vars(args).items()}, "weights_sha256": base.config.weights_sha256,
           "rows": rows}
    atomic_write_bytes(args.out / "results.json", json.dumps(out, indent=1).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
