"""Zero-shot self-similarity scoring: is a patch unlike the rest of its own image? Chosen on the validation split.

    python benchmarks/self_similarity.py            # -> benchmarks/results/self-similarity/

One image at a time, no good reference and no batch: each patch's score is the mean distance to its nearest
patches of the same image (a defect is rare within its image; a normal patch has twins elsewhere in it). The
variants (layers, neighbourhood degrees, how many nearest patches, the image statistic) and the weight of its
fusion with the model's image score are chosen on the validation split only: the generator's 150 held-out pairs
(seed 999) and magnetic_tile; deeppcb/pcb, elpv/mono and elpv/poly are scored once, with the chosen variant, after
the choice. Tokens of blocks 5, 8, 11 of the default checkpoint's adapted backbone, 224 px, tiled as ``predict``
tiles (an image's score is its most anomalous tile's), cached in ``cache/`` (not committed).
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from anomalyvfm.self_similarity import SelfSimilarityConfig, image_statistic, self_map  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "self-similarity"
VALIDATION = "magnetic_tile/magnetic_tile"
LAYERS = (5, 8, 11)
NORMALS_SEED = 101  # the generator's normals that set the default threshold: here they set the z-scores' scale


@torch.inference_mode()
def extract(model, images: list, labels: list[int], name: str, batch_size: int = 8) -> dict:
    """Per tile: the model's image logit and top-k score, and the patch tokens of ``LAYERS`` (cached by ``name``)."""
    from tqdm import tqdm

    from anomalyvfm.predict import _load
    from anomalyvfm.preprocess import normalize

    cache = OUT / "cache" / f"{name.replace('/', '__')}.pt"
    if cache.is_file():
        return torch.load(cache, weights_only=True)
    loaded = [_load(item, i, 224, model.config.max_aspect) for i, item in enumerate(images)]
    crops = [c for item in loaded for c in item.crops]
    logits, topk, tokens = [], [], [[] for _ in LAYERS]
    tic = time.perf_counter()
    for start in tqdm(range(0, len(crops), batch_size), desc=name, unit="batch"):
        x = normalize(np.stack(crops[start:start + batch_size]), model.config.mean, model.config.std)
        out = model(x, extra_layers=LAYERS)
        scores, _ = model.scores(out, 224)
        logits.append(out.image_logits.float())
        topk.append(scores["topk"].float())
        for store, t in zip(tokens, out.features.layers):
            store.append(t.half())
    rec = {"labels": torch.tensor(labels), "crops": torch.tensor([len(item.crops) for item in loaded]),
           "logits": torch.cat(logits), "topk": torch.cat(topk), "tokens": [torch.cat(t) for t in tokens],
           "forward_s": torch.tensor(time.perf_counter() - tic)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(rec, cache)
    return rec


def datasets(data: str, report: bool) -> dict[str, tuple[list, list[int]]]:
    from anomalyvfm.data import scan
    from synthetic_validation import validation_pairs

    from anomalyvfm.synth import SynthConfig
    from anomalyvfm.synth.generator import normal_image

    rng = np.random.default_rng(NORMALS_SEED)
    sets = {"normals": ([normal_image(rng, SynthConfig(size=224))[0] for _ in range(400)], [0] * 400)}
    pairs = validation_pairs()
    sets["synthetic"] = ([p["good"] for p in pairs] + [p["bad"] for p in pairs], [0] * len(pairs) + [1] * len(pairs))
    for cat in scan(data):
        if (cat.key == VALIDATION) != report:
            sets[cat.key] = ([str(s.path) for s in cat.test], [s.label for s in cat.test])
    return sets


GRID = [SelfSimilarityConfig(layers, radii, nearest, exclude, statistic)
        for layers in ((5, 8, 11), (8, 11), (11,)) for radii in ((1,), (1, 3)) for nearest in (0.01, 0.05, 0.2)
        for exclude in (0, 1) for statistic in ("max", "top1")]
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # weight of the self-similarity z-score in the fused score


def name_of(cfg: SelfSimilarityConfig) -> str:
    return (f"layers {'/'.join(map(str, cfg.layers))}, r {'/'.join(map(str, cfg.radii))}, nearest {cfg.nearest:g}, "
            f"exclude {cfg.exclude}, {cfg.statistic}")


def per_image(rec: dict, tiles: torch.Tensor) -> np.ndarray:
    """Tile scores -> image scores: an image's most anomalous tile."""
    out, k = [], 0
    for n in rec["crops"].tolist():
        out.append(float(tiles[k:k + n].max()))
        k += n
    return np.array(out)


def self_scores(rec: dict, cfg: SelfSimilarityConfig) -> torch.Tensor:
    """Per tile: the variant's self-similarity image score."""
    tokens = [rec["tokens"][LAYERS.index(i)].float() for i in cfg.layers]
    out = [image_statistic(self_map([t[s:s + 64] for t in tokens], cfg), cfg.statistic)
           for s in range(0, len(tokens[0]), 64)]
    return torch.cat(out)


def auroc(rec: dict, tiles: torch.Tensor) -> float:
    from anomalyvfm.metrics import image_metrics

    return 100 * image_metrics(rec["labels"].tolist(), per_image(rec, tiles).tolist())["I-AUROC"]


def standardise(values: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    return (values - normals.mean()) / normals.std().clamp_min(1e-6)


def fused(rec: dict, normals: dict, cfg: SelfSimilarityConfig, weight: float) -> torch.Tensor:
    """Per tile: (1 − w)·z(image logit) + w·z(self score), z-scores against the synthetic normals."""
    zl = standardise(rec["logits"], normals["logits"])
    zs = standardise(self_scores(rec, cfg), self_scores(normals, cfg))
    return (1 - weight) * zl + weight * zs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--extract-only", action="store_true")
    args = parser.parse_args(argv)
    from anomalyvfm.model import load_default

    torch.set_num_threads(2)
    model = load_default().prepare_for_inference()
    val = {name: extract(model, images, labels, name) for name, (images, labels) in
           datasets(args.data, report=False).items()}
    if args.extract_only:
        return 0
    normals = val.pop("normals")
    rows = {}
    for cfg in GRID:
        rows[name_of(cfg)] = {k: auroc(rec, self_scores(rec, cfg)) for k, rec in val.items()}
        print(name_of(cfg), {k: round(v, 1) for k, v in rows[name_of(cfg)].items()}, flush=True)
    chosen = max(GRID, key=lambda c: np.mean(list(rows[name_of(c)].values())))
    fusion = {w: {k: auroc(rec, fused(rec, normals, chosen, w)) for k, rec in val.items()} for w in WEIGHTS}
    for w, r in fusion.items():
        print("weight", w, {k: round(v, 1) for k, v in r.items()}, flush=True)
    weight = max(WEIGHTS, key=lambda w: np.mean(list(fusion[w].values())))
    print("chosen", name_of(chosen), "weight", weight)
    return 0


if __name__ == "__main__":
    sys.exit(main())
