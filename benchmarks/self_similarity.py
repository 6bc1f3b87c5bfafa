"""Zero-shot self-similarity scoring: is a patch unlike the rest of its own image? Chosen on the validation split.

    python benchmarks/self_similarity.py            # -> benchmarks/results/self-similarity/

One image at a time, no good reference and no batch: each patch's score is the mean distance to its nearest
patches of the same image (a defect is rare within its image; a normal patch has twins elsewhere in it). The
variants (layers, neighbourhood degrees, how many nearest patches, the image statistic) and the weight of its
fusion with the model's image score are chosen on the validation split only: the generator's 150 held-out pairs
(seed 999) and magnetic_tile; deeppcb/pcb, elpv/mono and elpv/poly are scored once, with the chosen variant, after
the choice. Tokens of blocks 5, 8, 11 of the default checkpoint's adapted backbone, 224 px, tiled as ``predict``
tiles (an image's score is its most anomalous tile's), cached in ``cache/`` (not committed).

Outcome (BENCHMARKS.md, "Self-similarity image score"): the fusion won on validation but lost on elpv/mono, where the
self score is inverted, so the default rule stays ``cls``; ``--apply`` writes the chosen settings and their scale into
a checkpoint's config.json for the opt-in rules ``self`` and ``cls+self``.
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

from anomalyvfm.config import SelfSimilarityConfig  # noqa: E402
from anomalyvfm.mutual import image_statistic  # noqa: E402
from anomalyvfm.self_similarity import self_map  # noqa: E402
from mutual_speed import per_image  # noqa: E402

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
    """The report categories (``report``), or the generator's normals, its validation pairs and ``VALIDATION``."""
    from anomalyvfm.data import scan
    from anomalyvfm.synth import SynthConfig
    from anomalyvfm.synth.generator import normal_image
    from synthetic_validation import validation_pairs

    sets = {}
    if not report:
        rng = np.random.default_rng(NORMALS_SEED)
        sets["normals"] = ([normal_image(rng, SynthConfig(size=224))[0] for _ in range(400)], [0] * 400)
        pairs = validation_pairs()
        sets["synthetic"] = ([p["good"] for p in pairs] + [p["bad"] for p in pairs],
                             [0] * len(pairs) + [1] * len(pairs))
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


def shipped_settings(chosen: SelfSimilarityConfig, weight: float) -> dict:
    """The chosen variant as the checkpoint's config fields (layer ids counted from the end of the 12 blocks)."""
    layers = tuple(i - 12 for i in chosen.layers)
    return {"self_similarity": {"layers": list(layers), "radii": list(chosen.radii), "nearest": chosen.nearest,
                                "exclude": chosen.exclude, "statistic": chosen.statistic},
            "self_weight": weight}


@torch.inference_mode()
def apply(checkpoint: Path, settings: dict) -> dict:
    """Write ``settings`` into ``checkpoint/config.json`` with the scale of the z-scores: mean and std of the image
    logit and the self score over the 400 generator normals (seed 101), scored through the package. The verdict's
    rule and threshold are left as they are (the rule lost on the report categories: see BENCHMARKS.md); the
    threshold ``cls+self`` would need (the normals' 99th percentile, as benchmarks/default_threshold.py sets it) is
    returned for the record."""
    from anomalyvfm.checkpoint import update_config
    from anomalyvfm.config import AnomalyVFMConfig
    from anomalyvfm.model import load_default
    from anomalyvfm.preprocess import normalize
    from anomalyvfm.synth import SynthConfig
    from anomalyvfm.synth.generator import normal_image

    config = json.loads((checkpoint / "config.json").read_text())
    config.update(settings, normal_stats={})
    model = load_default(str(checkpoint)).prepare_for_inference()
    model.config = AnomalyVFMConfig.from_dict({**config, "image_score": "cls+self"})  # so that forward computes it
    rng = np.random.default_rng(NORMALS_SEED)
    images = np.stack([normal_image(rng, SynthConfig(size=224))[0] for _ in range(400)])
    outs = [model(normalize(images[s:s + 8], model.config.mean, model.config.std)) for s in range(0, 400, 8)]
    logits, own = torch.cat([o.image_logits for o in outs]), torch.cat([o.self_scores for o in outs])
    config["normal_stats"] = {"cls": [float(logits.mean()), float(logits.std())],
                              "self": [float(own.mean()), float(own.std())]}
    model.config = AnomalyVFMConfig.from_dict({**config, "image_score": "cls+self"})
    scores = torch.cat([model.scores(o, 224)[0]["cls+self"] for o in outs])
    update_config(checkpoint, **settings, normal_stats=config["normal_stats"])
    return {"normal_stats": config["normal_stats"], "cls+self threshold": float(torch.quantile(scores, 0.99))}


@torch.inference_mode()
def cost(repeats: int = 5, batch: int = 8) -> dict:
    """Seconds for ``repeats`` forward passes of a batch at 224 px with the default rule (cls: no self-similarity)
    and with ``cls+self``, in one run, and their ratio."""
    from anomalyvfm.model import load_default

    model = load_default().prepare_for_inference()
    x = torch.randn(batch, 3, 224, 224)
    out = {}
    for rule in ("cls", "cls+self", "cls", "cls+self"):  # each timed twice, the second kept (warm)
        model.config.image_score = rule
        model(x)
        tic = time.perf_counter()
        for _ in range(repeats):
            model(x)
        out[rule] = time.perf_counter() - tic
    out["ratio"] = out["cls+self"] / out["cls"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--extract-only", action="store_true", help="only fill the token cache")
    parser.add_argument("--report", action="store_true", help="after the choice, score the report categories")
    parser.add_argument("--apply", type=Path, help="write the chosen settings into this checkpoint's config.json")
    parser.add_argument("--cost", action="store_true", help="only time a forward pass with and without the rule")
    args = parser.parse_args(argv)
    if args.cost:
        torch.set_num_threads(2)
        result = cost()
        print(f"5 forward passes of 8 images at 224 px, 2 threads: cls {result['cls']:.2f} s, cls+self "
              f"{result['cls+self']:.2f} s, ratio {result['ratio']:.3f}")
        return 0
    from anomalyvfm.model import load_default
    from anomalyvfm.outputs import atomic_write_bytes

    torch.set_num_threads(2)
    model = load_default().prepare_for_inference()
    val = {name: extract(model, images, labels, name) for name, (images, labels) in
           datasets(args.data, report=False).items()}
    if args.extract_only:
        return 0
    normals = val.pop("normals")
    rows = {name_of(cfg): {k: auroc(rec, self_scores(rec, cfg)) for k, rec in val.items()} for cfg in GRID}
    chosen = max(GRID, key=lambda c: np.mean(list(rows[name_of(c)].values())))
    fusion = {w: {k: auroc(rec, fused(rec, normals, chosen, w)) for k, rec in val.items()} for w in WEIGHTS}
    weight = max(WEIGHTS, key=lambda w: np.mean(list(fusion[w].values())))
    result = {"validation": rows, "chosen": name_of(chosen), "fusion": fusion, "weight": weight,
              "settings": shipped_settings(chosen, weight), "report": {}}
    if args.report:  # scored once, after the choice
        for name, (images, labels) in datasets(args.data, report=True).items():
            rec = extract(model, images, labels, name)
            result["report"][name] = {"cls": auroc(rec, rec["logits"]), "topk": auroc(rec, rec["topk"]),
                                      "self": auroc(rec, self_scores(rec, chosen)),
                                      "cls+self": auroc(rec, fused(rec, normals, chosen, weight))}
    halves = list(next(iter(rows.values())))
    lines = ["Validation: self-similarity score alone, per variant (image AUROC; chosen: best mean of the two "
             "validation halves):", "", "| variant | " + " | ".join(halves) + " | mean |", "|---" * (len(halves) + 2) + "|"]
    lines += [f"| {n}{' **(chosen)**' if n == name_of(chosen) else ''} | " + " | ".join(f"{r[h]:.1f}" for h in halves)
              + f" | {np.mean(list(r.values())):.1f} |" for n, r in rows.items()]
    lines += ["", "Validation: fusion weight of the self-similarity z-score (0: the image head alone, 1: self-similarity "
              "alone), chosen variant:", "", "| weight | " + " | ".join(halves) + " | mean |",
              "|---" * (len(halves) + 2) + "|"]
    lines += [f"| {w:g}{' **(chosen)**' if w == weight else ''} | " + " | ".join(f"{r[h]:.1f}" for h in halves)
              + f" | {np.mean(list(r.values())):.1f} |" for w, r in fusion.items()]
    if result["report"]:
        lines += ["", "Report categories, scored once after the choice (image AUROC, 224 px, from the token cache):", "",
                  "| category | cls | topk | self | cls+self |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {r['cls']:.1f} | {r['topk']:.1f} | {r['self']:.1f} | {r['cls+self']:.1f} |"
                  for k, r in result["report"].items()]
    if args.apply:
        result["applied"] = apply(args.apply, result["settings"])
        stats = {k: [round(v, 4) for v in pair] for k, pair in result["applied"]["normal_stats"].items()}
        lines += ["", f"Written into {args.apply}/config.json (its rule stays `cls`): the chosen settings and the "
                      f"normals' (mean, std) {stats}; `cls+self` at the normals' 99th percentile would need threshold "
                      f"{result['applied']['cls+self threshold']:.4f}."]
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(OUT / "results.json", json.dumps(result, indent=1, default=str).encode())
    atomic_write_bytes(OUT / "table.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
