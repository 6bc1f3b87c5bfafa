"""Batch (mutual) scoring on ../shared/data: each part's contribution, and the inputs for the fusion study.

    python benchmarks/mutual_ablation.py [--categories deeppcb/pcb ...] [--backbone adapted|plain] [--bf16]
    python benchmarks/mutual_ablation.py --report

Per category, the batch is the category's whole test split (as in MuSc). One pass of the shipped checkpoint gives its
own scores and maps and the patch tokens of blocks 5, 8, 11 (``--backbone adapted``: its LoRA-merged backbone;
``plain``: the embedded DINOv2 without adapters, a second pass); each (layer, r) mutual map is computed once and
stored in ``cache/`` (not committed), and the variants are averages of those maps. 224 px, 2-core CPU, no seeds
(deterministic; references subsampled with seed 0 when a split has more than ``--max-references`` images).
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
from anomalyvfm.metrics import image_metrics, pixel_metrics  # noqa: E402
from anomalyvfm.model import load_default  # noqa: E402
from anomalyvfm.mutual import aggregate, mutual_scores, rscin  # noqa: E402
from anomalyvfm.outputs import atomic_write_bytes  # noqa: E402
from anomalyvfm.preprocess import normalize, read_image, resize_square  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "mutual-ablation"
LAYERS, RADII, RES = (5, 8, 11), (1, 3, 5), 224


def _batches(images, mean, std, size=8):
    for s in range(0, len(images), size):
        yield normalize(np.stack([resize_square(im, RES) for im in images[s:s + size]]), mean, std)


@torch.inference_mode()
def extract_all(model, images, backbone: str):
    """Model scores/maps and (per layer) patch tokens + CLS of every image."""
    from anomalyvfm.backbones import load_backbone
    from anomalyvfm.features import extract

    model.prepare_for_inference()
    plain = load_backbone("embedded") if backbone == "plain" else None
    cls_s, maps, layers, cls = [], [], [[] for _ in LAYERS], []
    for x in _batches(images, model.config.mean, model.config.std):
        out = model(x, extra_layers=LAYERS)
        scores, m = model.scores(out, RES)
        cls_s.append(scores["cls"])
        maps.append(m.half())
        feats = out.features if plain is None else extract(plain, x, LAYERS)
        for store, t in zip(layers, feats.layers):
            store.append(t.half())
        cls.append(feats.cls)
    return (torch.cat(cls_s), torch.cat(maps), [torch.cat(t) for t in layers], torch.cat(cls))


def run_category(cat, model, args) -> dict:
    refs = "" if args.max_references == 200 else f"__refs{args.max_references}"
    tag = f"{cat.dataset}__{cat.name}__{args.backbone}{'__bf16' if args.bf16 else ''}{refs}"
    cache = OUT / "cache" / f"{tag}.pt"
    if cache.is_file():
        return torch.load(cache, weights_only=True)
    images = [read_image(s.path) for s in cat.test]
    tic = time.perf_counter()
    model_cls, model_maps, layers, cls = extract_all(model, images, args.backbone)
    t_feat = time.perf_counter() - tic
    maps, times = {}, {}
    for li, tokens in zip(LAYERS, layers):
        for r in RADII:
            tic = time.perf_counter()
            z = aggregate(tokens.float(), r)
            maps[f"{li}_{r}"] = mutual_scores(z, 0.3, args.max_references, 0, 256,
                                              torch.bfloat16 if args.bf16 else torch.float32).view(len(images), 16, 16)
            times[f"{li}_{r}"] = time.perf_counter() - tic
            print(f"{cat.key} layer {li} r {r}: {times[f'{li}_{r}']:.1f} s", flush=True)
    record = {"labels": torch.tensor([s.label for s in cat.test]), "model_cls": model_cls, "model_maps": model_maps,
              "cls": cls, **{f"map_{k}": v for k, v in maps.items()},
              "seconds": torch.tensor([t_feat, sum(times.values())])}
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, cache)
    return record


VARIANTS = {  # name: (layers, radii, image score, RsCIN ks)
    "MuSc (ours: 3 layers, r 1/3/5, max, RsCIN)": (LAYERS, RADII, "max", (1, 2, 3)),
    "- RsCIN": (LAYERS, RADII, "max", ()),
    "- LNA (r = 1 only)": (LAYERS, (1,), "max", (1, 2, 3)),
    "- multi-layer (block 11 only)": ((11,), RADII, "max", (1, 2, 3)),
    "image score top 1% instead of max": (LAYERS, RADII, "top1", (1, 2, 3)),
    "probe (block 11, r 1, top 1%, no RsCIN)": ((11,), (1,), "top1", ()),
}


def variant_scores(rec: dict, layers, radii, image_score, ks) -> tuple[torch.Tensor, torch.Tensor]:
    patch = torch.stack([rec[f"map_{li}_{r}"] for li in layers for r in radii]).mean(0)
    flat = patch.flatten(1)
    raw = flat.amax(1) if image_score == "max" else flat.topk(max(1, round(0.01 * flat.shape[1])), 1).values.mean(1)
    return rscin(raw, rec["cls"], ks), patch


def evaluate(cat, rec: dict, scores: torch.Tensor, patch: torch.Tensor | None) -> dict:
    import cv2

    y = rec["labels"].tolist()
    row = {"I-AUROC": image_metrics(y, scores.tolist())["I-AUROC"]}
    if cat.has_masks and patch is not None:
        masks, maps = [], []
        for s, p in zip(cat.test, patch):
            h, w = read_image(s.path).shape[:2]
            m = cv2.imread(str(s.mask), cv2.IMREAD_GRAYSCALE) > 0 if s.label else np.zeros((h, w), bool)
            masks.append(m)
            maps.append(cv2.resize(p.float().numpy(), (w, h), interpolation=cv2.INTER_LINEAR))
        px = pixel_metrics(masks, maps, 0.3, 256)
        row.update({"P-AUROC": px["P-AUROC"], "AUPRO@0.3": px["AUPRO@0.3"]})
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--categories", nargs="*")
    parser.add_argument("--backbone", choices=("adapted", "plain"), default="adapted")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--max-references", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = load_default()
    results = {}
    for cat in scan(args.data, args.categories or None):
        rec = run_category(cat, model, args)
        rows = {name: evaluate(cat, rec, *variant_scores(rec, *v)) for name, v in VARIANTS.items()}
        model_maps = rec["model_maps"].float()
        rows["single-image model (cls)"] = evaluate(cat, rec, rec["model_cls"], model_maps)
        results[cat.key] = {"n": len(rec["labels"]), "seconds": rec["seconds"].tolist(), "rows": rows}
        print(cat.key, json.dumps({k: round(100 * v["I-AUROC"], 1) for k, v in rows.items()}), flush=True)
    tag = f"{args.backbone}{'-bf16' if args.bf16 else ''}" + \
        ("" if args.max_references == 200 else f"-refs{args.max_references}")
    atomic_write_bytes(OUT / f"results-{tag}.json", json.dumps(results, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
