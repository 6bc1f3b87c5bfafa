"""Can a batch statistic tell a lot of one product from a mixed batch? Studied on synthetic lots only.

    python benchmarks/batch_lots.py        # -> benchmarks/results/batch-lots/

Same-product lots: one synthetic good image (generator, 320 px) seen N times as random 224 px crops with small
photometric jitter (a product in a roughly fixed view), 10% of them given a synthetic defect. Mixed lots: N
independent synthetic good images (different textures and parts), 10% with a defect. For each lot: the shipped
model's and the mutual scores' image AUROC, and label-free batch statistics that a fusion rule could use: the current
pseudo-label agreement, the median mutual patch distance, and the tail of the mutual robust z-scores. 224 px,
N = 32, 12 lots of each kind, seeds fixed; no ../shared/data image is used. ``--model``: a shipped checkpoint's name
or a folder (default: the default checkpoint); each row records the checkpoint's weights sha256, and
``batch_fusion.py`` takes ``level_zero`` from the lots of the checkpoint it is choosing for.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "batch-lots"


def lot(rng: np.random.Generator, same: bool, n: int = 32, defective: float = 0.1):
    from anomalyvfm.synth import SynthConfig
    from anomalyvfm.synth.generator import defect_on, normal_image

    big, small = SynthConfig(size=320), SynthConfig(size=224)
    base, fg, family = normal_image(rng, big)
    images, labels = [], []
    for i in range(n):
        if same:
            y, x = rng.integers(0, 320 - 224, 2)
            img = base[y:y + 224, x:x + 224]
            img = np.clip(img.astype(np.float32) * rng.uniform(0.95, 1.05) + rng.uniform(-5, 5), 0, 255)
            img, mask = img.astype(np.uint8), fg[y:y + 224, x:x + 224]
        else:
            img, mask, family = normal_image(rng, small)
        bad = i < round(defective * n)
        if bad:
            img = defect_on(rng, np.ascontiguousarray(img), small, mask, family)["bad"]
        images.append(np.ascontiguousarray(img))
        labels.append(int(bad))
    return images, labels


def statistics(model, images, labels) -> dict:
    from anomalyvfm.batch import BatchConfig, agreement, robust_z
    from anomalyvfm.batch_predict import _forward
    from anomalyvfm.metrics import image_metrics
    from anomalyvfm.mutual import score_batch
    from anomalyvfm.predict import _load
    from scipy.special import logit

    cfg = BatchConfig()
    loaded = [_load(im, i, 224, 2.0) for i, im in enumerate(images)]
    model_s, _, tokens, cls = _forward(model, loaded, 224, 8, cfg.mutual.layers, False)
    mutual = score_batch(tokens, cls, cfg.mutual)
    zm, zu = robust_z(logit(np.clip(model_s.numpy(), 1e-6, 1 - 1e-6))), robust_z(mutual.image_scores.numpy())
    auroc = lambda s: image_metrics(labels, list(s))["I-AUROC"]  # noqa: E731
    return {"model": auroc(zm), "mutual": auroc(zu), "agreement": agreement(zm, zu, cfg.teacher_top),
            "level": float(mutual.patch_scores.median()), "tail": float(np.sort(zu)[-max(1, len(zu) // 10):].mean())}


def main(argv=None) -> int:
    from anomalyvfm.model import load_default

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="shipped checkpoint name or folder (default: the default)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    model = load_default(args.model).prepare_for_inference()
    sha = model.config.weights_sha256
    rows = []
    for kind in ("same", "mixed"):
        for seed in range(12):
            images, labels = lot(np.random.default_rng([7, seed, kind == "same"]), kind == "same")
            rows.append({"kind": kind, "seed": seed, "weights_sha256": sha, **statistics(model, images, labels)})
            print(rows[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    keys = ("model", "mutual", "agreement", "level", "tail")
    lines = ["| lots | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for kind in ("same", "mixed"):
        sel = [r for r in rows if r["kind"] == kind]
        lines.append(f"| {kind} (12) | " + " | ".join(
            f"{np.mean([r[k] for r in sel]):.3f} ({np.min([r[k] for r in sel]):.3f}–{np.max([r[k] for r in sel]):.3f})"
            for k in keys) + " |")
    (OUT / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
