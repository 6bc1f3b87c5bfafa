"""Independent check of the harness's kNN baseline: the same recipe written separately (PIL bicubic resize as torchvision does it,
scikit-learn nearest neighbours and AUROC, no anomalyvfm preprocessing, method or metric code), on the same
reference images the harness drew, so that the two must agree per seed, not only within the spread of the seeds.

    python benchmarks/knn_check.py [--data ../shared/data] [--shots 1,4,16] [--seeds 0,1,2]

Recipe: embedded DINOv2 ViT-S/14, 224×224 square PIL bicubic resize, ImageNet normalisation, last-layer
patch tokens L2-normalised, cosine nearest neighbour to the k references, image score = mean of the top 1% patch
distances, no masking or augmentation. Writes benchmarks/results/knn-224-check/independent.json, which
make_benchmarks_md.py puts next to the harness numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomalyvfm.backbones import load_backbone  # noqa: E402
from anomalyvfm.benchmark import draw_shots  # noqa: E402  (the same reference draw as the harness)
from anomalyvfm.data import scan  # noqa: E402

CATEGORIES = ("magnetic_tile/magnetic_tile", "elpv/mono")
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@torch.inference_mode()
def patch_features(backbone, paths: list[Path], resolution: int = 224) -> np.ndarray:
    """(n, patches, D) L2-normalised last-layer patch tokens."""
    out = []
    for start in tqdm(range(0, len(paths), 8), desc="features", leave=False):
        batch = []
        for p in paths[start:start + 8]:
            rgb = Image.open(p).convert("RGB").resize((resolution, resolution), Image.Resampling.BICUBIC)
            x = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float() / 255.0
            batch.append((x - MEAN) / STD)
        tokens = backbone(pixel_values=torch.stack(batch)).last_hidden_state[:, 1:]
        out.append(F.normalize(tokens, dim=-1).numpy())
    return np.concatenate(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--shots", default="1,4,16")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "knn-224-check" / "independent.json")
    args = parser.parse_args(argv)
    backbone = load_backbone("embedded").eval()
    rows = []
    for cat in scan(args.data, list(CATEGORIES)):
        labels = np.array([s.label for s in cat.test])
        test = patch_features(backbone, [s.path for s in cat.test])
        for k in map(int, args.shots.split(",")):
            for seed in map(int, args.seeds.split(",")):
                refs = draw_shots(cat.train, k, seed)
                memory = patch_features(backbone, [s.path for s in refs]).reshape(-1, test.shape[-1])
                nn = NearestNeighbors(n_neighbors=1, metric="cosine").fit(memory)
                dist = nn.kneighbors(test.reshape(-1, test.shape[-1]))[0].reshape(len(test), -1)
                top = max(1, int(round(dist.shape[1] * 0.01)))
                scores = np.sort(dist, axis=1)[:, -top:].mean(axis=1)
                auroc = 100 * roc_auc_score(labels, scores)
                rows.append({"dataset": cat.dataset, "category": cat.name, "shots": k, "seed": seed,
                             "I-AUROC": auroc})
                print(f"{cat.key} k={k} seed={seed}: I-AUROC {auroc:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"recipe": __doc__.split("Recipe: ")[1].split(" Writes")[0], "rows": rows},
                                   indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
