"""Where the normal-only threshold goes wrong with few images: the raw scores behind it, per component.

    python benchmarks/calibration_study.py [--data ../shared/data] [--shots 1,2,4,8] [--seeds 0] [--model M]

Per category, k and seed, the harness's profile (the same draw of k good images from train/good, the same
fine-tune) is rebuilt, and two sets of raw scores are kept:

- ``views``: the calibration views ``finetune`` uses (each good image and 7 augmentations), each against the memory
  without its own image (with k = 1: the image itself), split into the two parts of the `memory` rule (image-head
  logit and kNN top-k score), with ``image_of_view``;
- ``test_raw``: every test image's raw profile score as ``predict`` gives it (the harness's scores), and its label.

From these any threshold rule can be evaluated offline: `--report` writes the false-positive rate on test/good and
the recall on the defective test images of the threshold rules below, per category and k, mean over seeds.
Writes OUT/raw.json (default benchmarks/results/calibration-study) and (with --report) results.md. Each run records
the base checkpoint's weights sha256 and its ``test_views``; a folder holds the runs of one checkpoint only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm
from scipy.special import expit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomalyvfm import fewshot  # noqa: E402
from anomalyvfm.benchmark import draw_shots  # noqa: E402
from anomalyvfm.calibration import MIN_IMAGES, _logit, calibrate  # noqa: E402
from anomalyvfm.data import scan  # noqa: E402
from anomalyvfm.fewshot.views import forward_all  # noqa: E402
from anomalyvfm.model import load_default  # noqa: E402
from anomalyvfm.outputs import atomic_write_bytes  # noqa: E402
from anomalyvfm.preprocess import read_image, resize_square  # noqa: E402
from anomalyvfm.scoring import topk_mean  # noqa: E402


def parts(model, views: np.ndarray, res: int, memory) -> tuple[list[float], list[float]]:
    """(image-head logits, kNN top-k scores) of views against ``memory``, as the ``memory`` rule takes them."""
    out = forward_all(model, views, 8, model.device, scored=True)
    knn = topk_mean(memory.distance_map(out.patch_tokens, res) / model.profile.knn_scale, model.config.top_k)
    return out.image_logits.flatten().tolist(), knn.tolist()


def run(base, cat, k: int, seed: int, res: int) -> dict:
    shots = [read_image(s.path) for s in draw_shots(cat.train, k, seed)]
    cfg = fewshot.FinetuneConfig(resolution=res)
    model, _ = fewshot.finetune(base, shots, cfg, progress=False)
    images = [resize_square(im, res) for im in shots]
    rng = np.random.default_rng([cfg.seed, 2])
    rec = {"views": [[], []], "image_of_view": []}
    for i, image in enumerate(images):
        views = np.stack([image] + [fewshot.augment(rng, image) for _ in range(cfg.augmentations - 1)])
        for dst, src in zip(rec["views"], parts(model, views, res, model.profile.memory.leave_one_out(i))):
            dst += src
        rec["image_of_view"] += [i] * len(views)
    # test images as the harness scores them (``predict``: long images are tiled, the score is the worst tile)
    test = [p.scores[model.config.image_score] for p in
            model.predict([str(s.path) for s in cat.test], resolution=res, errors="raise")]
    state = model.profile.to_json()
    return {"category": cat.key, "shots": k, "seed": seed, "weights_sha256": base.config.weights_sha256,
            "test_views": base.config.test_views,
            "score_stats": state["score_stats"],
            "calibration": state["calibration"], **rec, "test_raw": test,
            "labels": [int(s.label) for s in cat.test]}


def memory_score(parts: list[list[float]], stats: dict) -> np.ndarray:
    """The `memory` rule's raw score from its two parts, as ``AnomalyVFM.scores`` computes it."""
    logits, knn = map(np.asarray, parts)
    return expit(((logits - stats["cls"][0]) / stats["cls"][1] + (knn - stats["knn"][0]) / stats["knn"][1]) / 2)


FAR_OUT = 3.0  # Tukey's far-out fence, in interquartile ranges beyond the quartiles


def within_fences(scores: list[float] | np.ndarray, fence: float = FAR_OUT, bounded: bool = True) -> np.ndarray:
    """Mask of the scores inside Tukey's far-out fences (the quartiles ∓ ``fence`` interquartile ranges, on logits
    when ``bounded``). Augmented views of a few good images beyond them are artefacts of the augmentation (a view
    scoring like a gross defect), not evidence of how good parts vary."""
    values = np.asarray(scores, dtype=np.float64)
    values = _logit(values) if bounded else values
    q1, q3 = np.quantile(values, [0.25, 0.75])
    return (values >= q1 - fence * (q3 - q1)) & (values <= q3 + fence * (q3 - q1))


def far_out_dropped(views: np.ndarray, groups, fpr: float) -> float:
    """Candidate: the views beyond Tukey's far-out fences dropped, then ``calibrate`` with the image of each view."""
    keep = within_fences(views)
    return calibrate(views[keep], fpr, groups=np.asarray(groups)[keep], bounded=True).threshold


def median_mad(views: np.ndarray, groups, fpr: float) -> float:
    """Candidate: ``calibrate``'s two prediction bounds with the median and 1.4826 × MAD in place of the mean and
    standard deviation (of the views' logits, and of the images' medians with the median within-image MAD), no
    quantile term."""
    from scipy.stats import t

    def mad(x):
        return 1.4826 * np.median(np.abs(x - np.median(x)))

    values, groups = _logit(views), np.asarray(groups)
    bound = np.median(values) + t.ppf(1 - fpr, values.size - 1) * mad(values) * np.sqrt(1 + 1 / values.size)
    images = np.unique(groups)
    if images.size >= MIN_IMAGES:
        medians = np.array([np.median(values[groups == g]) for g in images])
        spread = np.sqrt(mad(medians) ** 2 + np.median([mad(values[groups == g]) ** 2 for g in images]))
        bound = max(bound, np.median(medians) + t.ppf(1 - fpr, images.size - 1) * spread * np.sqrt(1 + 1 / images.size))
    return float(expit(bound))


RULES = {
    "quantile of the views (before)": lambda v, g, fpr: float(np.quantile(v, 1 - fpr, method="higher")),
    "calibrate, views as independent draws": lambda v, g, fpr: calibrate(v, fpr, bounded=True).threshold,
    "calibrate with the image of each view (profiles now)":
        lambda v, g, fpr: calibrate(v, fpr, groups=g, bounded=True).threshold,
    "far-out views dropped, then as profiles now (candidate)": far_out_dropped,
    "median and MAD in place of mean and sd (candidate)": median_mad,
}


PRESENT = tuple(RULES)[:3]  # the rules the calibration sections compare; the candidates have their own section


def report(runs: list[dict], fpr: float = 0.01, rules: tuple[str, ...] = tuple(RULES)) -> str:
    """Markdown: per threshold rule (of ``rules``) and k, FPR on test/good and recall on defective test images (%),
    mean over seeds per category, then the mean over categories."""
    cells = {(r["category"], r["shots"]) for r in runs}
    seeds = sorted(s for s in {r["seed"] for r in runs}  # only seeds with every category and k
                   if cells <= {(r["category"], r["shots"]) for r in runs if r["seed"] == s})
    runs = [r for r in runs if r["seed"] in seeds]
    table: dict = {}
    for r in runs:
        views = memory_score(r["views"], r["score_stats"])
        test = np.asarray(r["test_raw"]) if "test_raw" in r else memory_score(r["test"], r["score_stats"])
        good = np.asarray(r["labels"]) == 0
        for rule in rules:
            thr = RULES[rule](views, r["image_of_view"], fpr)
            cell = table.setdefault((rule, r["shots"]), {}).setdefault(r["category"], [])
            cell.append((100 * np.mean(test[good] > thr), 100 * np.mean(test[~good] > thr)))
    cats = sorted({r["category"] for r in runs})
    lines = [f"Seeds {', '.join(map(str, seeds))}; target FPR {100 * fpr:g}%. Cells: FPR / recall (%).", "",
             "| rule | k | " + " | ".join(cats) + " | mean FPR | mean recall |", "|---|---|" + "---|" * (len(cats) + 2)]
    for (rule, k), by_cat in sorted(table.items(), key=lambda x: (x[0][1], list(RULES).index(x[0][0]))):
        means = {c: np.mean(v, axis=0) for c, v in by_cat.items()}
        cells = [f"{means[c][0]:.1f} / {means[c][1]:.1f}" if c in means else "–" for c in cats]
        lines.append(f"| {rule} | {k} | " + " | ".join(cells) + f" | {np.mean([m[0] for m in means.values()]):.1f} | "
                     f"{np.mean([m[1] for m in means.values()]):.1f} |")
    return "\n".join(lines) + "\n"


def _views(run: dict) -> str:
    """A run's test views; runs recorded before ``test_views`` carry ``flip_average`` or nothing (a single pass)."""
    return run.get("test_views", "mirror" if run.get("flip_average") else "single")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--shots", default="1,2,4,8")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "calibration-study")
    parser.add_argument("--report", action="store_true", help="only write results.md from the runs so far")
    parser.add_argument("--model", help="base checkpoint (folder, hub id or shipped name; default: the default)")
    parser.add_argument("--datasets", nargs="+", help="only these data sets under --data (default: all)")
    args = parser.parse_args(argv)
    path = args.out / "raw.json"
    runs = json.loads(path.read_text()) if path.is_file() else []
    if args.report:
        atomic_write_bytes(args.out / "results.md", report(runs).encode())
        return 0
    base = load_default(args.model)
    # a checkpoint = its weights and the views it averages (runs before that setting: a single pass)
    others = ({(r.get("weights_sha256"), _views(r)) for r in runs}
              - {(base.config.weights_sha256, base.config.test_views)})
    if others:
        parser.error(f"{path} holds runs of another checkpoint ({', '.join(map(str, others))}); give another --out")
    done = {(r["category"], r["shots"], r["seed"]) for r in runs}
    todo = [(cat, int(k), int(s)) for s in args.seeds.split(",") for cat in scan(args.data, args.datasets)
            for k in args.shots.split(",") if (cat.key, int(k), int(s)) not in done]  # one whole seed at a time
    for cat, k, seed in tqdm(todo, desc="calibration study", unit="run"):
        runs.append(run(base, cat, k, seed, args.resolution))
        atomic_write_bytes(path, json.dumps(runs).encode())  # resumable: one run at a time
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
