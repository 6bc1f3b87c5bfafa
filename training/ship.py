"""Ship a trained run as the package's default checkpoint and write its model card from the harness results.

    python -m training.ship --install --run runs/anomalyvfm-vits14-v3    # copy the run's final model into the package
    python -m training.ship --install --run runs/anomalyvfm-vits14-v6-imaging --step 750 --keep-as anomalyvfm-vits14-v2
    anomalyvfm benchmark --data ../shared/data --methods anomalyvfm,knn --shots 1,4,16 --resolution 224 \
        --out benchmarks/results/zeroshot-224-v3                            # measure the shipped checkpoint
    python -m training.ship --run runs/anomalyvfm-vits14-v3 --results benchmarks/results/zeroshot-224-v3   # the card

``--install`` copies ``RUN/final`` (or, with ``--step N``, the checkpoint the selection chose) into
``anomalyvfm/weights/anomalyvfm-vits14/`` (through a temporary folder, so the package never holds half a checkpoint)
and the run's ``config.json``, ``log.jsonl`` (up to that step) and ``loss.png`` into
``benchmarks/results/training/anomalyvfm-vits14/``. With ``--keep-as NAME`` the previous default and its training
record stay in the package under NAME (loadable by name), its inference settings (self-similarity variant and weight)
carry over, and the new checkpoint gets its own synthetic default threshold (``benchmarks/default_threshold.py``'s
rule) and the scale of its z-scores (``benchmarks/self_similarity.py``'s ``apply``); its batch-mode fusion constants
start at ``BatchConfig``'s defaults until ``python benchmarks/batch_lots.py && python benchmarks/batch_fusion.py
--write`` measures its own. Then it writes ``model_cards/anomalyvfm-vits14.md``: the training
recipe and time from that record, and the zero-shot results next to kNN at k = 1 and 4 on the same backbone and
resolution from ``RESULTS/results.json`` (one ``anomalyvfm benchmark --methods anomalyvfm,knn`` run).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from anomalyvfm.cards import build_card
from anomalyvfm.checkpoint import MEMBERS_NAME, MODEL_FILES
from anomalyvfm.model import shipped_checkpoint
from anomalyvfm.outputs import atomic_write_bytes
from anomalyvfm.synth.defects import DEFAULT_DEFECTS
from anomalyvfm.synth.textures import DEFAULT_TEXTURES

ROOT = Path(__file__).resolve().parents[1]


def install(final: Path, target: Path) -> None:
    """Replace ``target`` with the checkpoint files of ``final``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".ship-"))
    for name in (*MODEL_FILES, MEMBERS_NAME):
        if name in MODEL_FILES or (final / name).is_file():  # an ensemble's members too
            shutil.copy2(final / name, tmp / name)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def keep_previous(target: Path, record: Path, name: str) -> dict:
    """Keep the current default and its training record under ``name``; return its inference settings."""
    config = json.loads((target / "config.json").read_text())
    if not (target.parent / name).exists():
        install(target, target.parent / name)  # every model file, config.json included
    if record.is_dir() and not (record.parent / name).exists():
        shutil.copytree(record, record.parent / name)
    return {k: config[k] for k in ("self_similarity", "self_weight") if k in config}


def settle(target: Path, settings: dict) -> dict:
    """The new default's own synthetic threshold and z-scale, with ``settings`` carried over."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from default_threshold import store, synthetic_threshold
    from self_similarity import apply

    threshold = store(target, synthetic_threshold(model_dir=str(target))[0], trained=True)
    return {"threshold": threshold, **apply(target, settings)}


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return 100 * float(np.mean(values)) if values else float("nan")


def comparison_table(rows: list[dict]) -> str:
    """Per category: zero-shot I-AUROC (default rule, and each rule), P-AUROC, AUPRO, next to kNN k = 1 and 4."""
    zs, knn = {}, defaultdict(list)
    for r in rows:
        key = (r["dataset"], r["category"])
        if r["method"] == "anomalyvfm":
            zs[key] = r
        elif r["method"] == "knn":
            knn[(key, r["shots"])].append(r)
    head = ("| category | zero-shot I-AUROC | cls | topk | fused | zero-shot P-AUROC | zero-shot AUPRO@0.3 | "
            "kNN 1-shot I-AUROC | kNN 4-shot I-AUROC | kNN 16-shot I-AUROC |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    cols = defaultdict(list)
    for key in sorted(zs):
        r = zs[key]
        cells = {"zs": 100 * r["I-AUROC"], "cls": 100 * r.get("I-AUROC[cls]", float("nan")),
                 "topk": 100 * r.get("I-AUROC[topk]", float("nan")),
                 "fused": 100 * r.get("I-AUROC[fused]", float("nan")), "p": 100 * r["P-AUROC"],
                 "pro": 100 * r["AUPRO@0.3"], "k1": _mean([x["I-AUROC"] for x in knn[(key, 1)]]),
                 "k4": _mean([x["I-AUROC"] for x in knn[(key, 4)]]),
                 "k16": _mean([x["I-AUROC"] for x in knn[(key, 16)]])}
        for c, v in cells.items():
            cols[c].append(v)
        lines.append(f"| {key[0]}/{key[1]} | " + " | ".join("–" if math.isnan(v) else f"{v:.1f}"
                                                             for v in cells.values()) + " |")
    means = [np.nanmean(v) if not all(math.isnan(x) for x in v) else float("nan") for v in cols.values()]
    lines.append("| **mean** | " + " | ".join("–" if math.isnan(v) else f"**{v:.1f}**" for v in means) + " |")
    return "\n".join(lines) + "\n"


def recipe_text() -> str:
    """README's table of our recipe next to the published one (one copy of the text, shown in both places)."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Our recipe next to the published one")
    body = readme[start:readme.index("\n\n`python -m training.train", start)]
    return body.split("\n", 1)[1].strip()


def selection_text(version: str) -> str:
    """How this checkpoint was chosen: the declared validation split, and what each candidate scored there
    (``benchmarks/checkpoint_selection.py``)."""
    table = (ROOT / "benchmarks" / "results" / f"{version}-selection" / "table.md").read_text().strip()
    return ("**Selection protocol.** Validation = the generator's held-out pairs (150, seed 999) and magnetic_tile, the "
            "../shared/data category declared as validation; report = deeppcb/pcb, elpv/mono and elpv/poly, which "
            "chose nothing. The design arms (photographs as normals, focal α 0.25, thresholded and area targets, the "
            "5×5 mean filter) were decided on the same split (BENCHMARKS.md, \"Ablations for v3\"); then the run's "
            "checkpoints competed with the previous default on the validation score (mean of image and pixel AUROC on "
            "both halves; `python benchmarks/checkpoint_selection.py`). The row `anomalyvfm/weights/anomalyvfm-vits14` is the "
            "default at the time of the selection, the previous checkpoint (now shipped under its version's name):\n\n"
            + table + "\n")


def views_text() -> str:
    """Why the shipped config averages several views of each image, if it does: the mirror (the flip selection
    again under the threshold protocol, ``benchmarks/threshold_protocol.py``) and then the views selection."""
    views = json.loads((shipped_checkpoint() / "config.json").read_text()).get("test_views", "single")
    if views == "single":
        return ""
    study = json.loads((ROOT / "benchmarks" / "results" / "threshold-protocol" / "results.json").read_text())
    row = next(r for r in study["reapplied_veto"] if r["selection"] == "flip")
    (_, c), = row["candidates"].items()
    text = (f"\n**Test-time views (`test_views`).** The same weights score each image through several of the "
            f"square's symmetries and average the logits, each view's map turned back first. First the left-right "
            f"mirror (\"mirror\", twice the cost), declared before scoring and chosen on the validation split: "
            f"validation score {100 * c['score']:.1f} vs {100 * row['compared_score']:.1f} without it; at each one's "
            f"own synthetic threshold ({study['chosen']} normals) it flags {100 * c['FPR']:.1f}% of good "
            f"magnetic_tile parts vs {100 * row['compared_FPR']:.1f}%, within the 5-point veto (with the earlier "
            "clean normals it was 20.5% vs 14.7%, over it).")
    if views != "mirror":
        sel = json.loads((ROOT / "benchmarks" / "results" / "views-selection" / "summary.json").read_text())
        base, new = sel["anomalyvfm/weights/anomalyvfm-vits14"], sel[f"runs/v6-{views}/model"]
        d4 = sel["runs/v6-d4/model"]
        text += (f" Then \"{views}\" (the image, its left-right and up-down mirrors and its half turn; four passes), "
                 f"declared with the eight-view \"d4\" before scoring, with only sets of at most four passes eligible "
                 f"for the default: validation score {100 * new['validation_score']:.1f} vs "
                 f"{100 * base['validation_score']:.1f} for the mirror, magnetic_tile FPR at its own threshold "
                 f"{100 * new['validation_FPR']:.1f}% vs {100 * base['validation_FPR']:.1f}%, within the veto "
                 f"(\"d4\" scored {100 * d4['validation_score']:.1f} at {100 * d4['validation_FPR']:.1f}%, at twice "
                 "the cost again; set `model.config.test_views = \"d4\"` to use it and calibrate, since the stored "
                 "threshold belongs to the default's views).")
    return text + (" For the single pass (four times as fast), load `anomalyvfm-vits14-v6`: the same weights with "
                   "one view and their own threshold (BENCHMARKS.md, \"Test-time views\", \"Test-time mirror "
                   "averaging\" and \"Which synthetic normals set the default threshold\").\n")


def threshold_text() -> str:
    """The stored threshold, where it came from, and what it does on real test sets
    (``python benchmarks/default_threshold.py``)."""
    path = ROOT / "benchmarks" / "results" / "default-threshold" / "results.json"
    config = json.loads((shipped_checkpoint() / "config.json").read_text())
    text = (f"The stored score threshold ({config['threshold']:g}) is the 99th percentile of this checkpoint's scores "
            "on 400 synthetic good images, each seen through imaging conditions (uneven light, exposure, noise, blur; "
            "the protocol chosen on the validation split by `benchmarks/threshold_protocol.py`); it is not calibrated "
            "for any real product, and `anomalyvfm predict` says so. Set it from good images of your product "
            "(`anomalyvfm calibrate`, or a few-shot profile), or use `--batch-mode mutual`.")
    if not path.is_file():
        return text
    rates = json.loads(path.read_text())["at_synthetic"]
    rows = "\n".join(f"| {k} | {100 * v['FPR']:.1f}% | {100 * v['recall']:.1f}% |" for k, v in rates.items())
    return (text + " Measured at that threshold on the test splits (224 px):\n\n| category | good images flagged "
            "(FPR) | defective images flagged (recall) |\n|---|---|---|\n" + rows + "\n\nRe-run: "
            "`python benchmarks/default_threshold.py`.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "anomalyvfm-vits14-v3")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "zeroshot-224-v3")
    parser.add_argument("--card", type=Path, default=ROOT / "model_cards" / "anomalyvfm-vits14.md")
    parser.add_argument("--install", action="store_true", help="copy RUN/final into the package and stop")
    parser.add_argument("--step", type=int, help="with --install: ship this checkpoint of the run, not its final one")
    parser.add_argument("--keep-as", help="with --install: keep the previous default in the package under this name")
    args = parser.parse_args(argv)
    target = shipped_checkpoint()
    record = ROOT / "benchmarks" / "results" / "training" / target.name  # the run's config, log and loss curve
    if args.install:
        source = args.run / "checkpoints" / f"step_{args.step:07d}" / "model" if args.step else args.run / "final"
        settings = keep_previous(target, record, args.keep_as) if args.keep_as else None
        install(source, target)
        record.mkdir(parents=True, exist_ok=True)
        cfg = json.loads((args.run / "config.json").read_text())
        if args.step:
            cfg["shipped_step"] = args.step
        if args.keep_as and Path(cfg.get("init_from") or "").name == target.name:  # warm-started from the default
            cfg["init_from"] = str(Path(cfg["init_from"]).parent / args.keep_as)  # that is now kept under keep_as
        atomic_write_bytes(record / "config.json", json.dumps(cfg, indent=2).encode())
        lines = (args.run / "log.jsonl").read_text().splitlines()
        kept = [line for line in lines if not args.step or json.loads(line)["step"] <= args.step]
        atomic_write_bytes(record / "log.jsonl", ("\n".join(kept) + "\n").encode())
        shutil.copy2(args.run / "loss.png", record / "loss.png")
        print(f"installed {source} as {target}; training record in {record}")
        if settings is not None:
            print(f"kept the previous default as {target.parent / args.keep_as}; settled: {settle(target, settings)}")
            print("batch mode uses BatchConfig's default fusion constants for it until: python benchmarks/"
                  "batch_lots.py && python benchmarks/batch_fusion.py --write")
        return 0
    cfg = json.loads((record / "config.json").read_text())
    log = [json.loads(line) for line in (record / "log.jsonl").read_text().splitlines()]
    steps = cfg.get("shipped_step", cfg["steps"])
    chosen = (f" (the checkpoint at step {steps} of a {cfg['steps']}-step run, chosen on the validation split)"
              if steps != cfg["steps"] else "")
    payload = json.loads((args.results / "results.json").read_text())
    env = payload["environment"]
    version = re.search(r"-(v\d+)", Path(cfg["out"]).name).group(1)  # runs/anomalyvfm-vits14-v6-imaging -> v6
    hours = log[-1]["elapsed_s"] / 3600
    lineage = ""
    if cfg.get("init_from"):  # a warm start: the seed checkpoint's own training comes first
        seed = Path(cfg["init_from"]).name
        lineage = (f"Warm-started from `{seed}` (its card, model_cards/{seed}.md, says how it was trained), then ")
    textures = tuple(cfg["synth"].get("textures", DEFAULT_TEXTURES))  # the run's own families
    families = tuple(cfg["synth"].get("defects", DEFAULT_DEFECTS))
    defects = ", ".join(d.replace("_", " ") for d in families)
    training = (
        f"Only synthetic data. {lineage}"
        f"{steps} AdamW steps{chosen} (lr {cfg['lr']}, weight decay {cfg['weight_decay']}, "
        f"{cfg['warmup']} warm-up steps, cosine decay) of batch {cfg['batch_size']} × "
        f"{cfg['grad_accum']} (half good, half defective pairs) at {cfg['resolution']} px, seed {cfg['seed']}: "
        f"{steps * cfg['batch_size'] * cfg['grad_accum']} procedurally generated images "
        f"(`anomalyvfm.synth`: {len(textures)} texture families ({', '.join(textures)}"
        f"{'' if 'photo' in textures else '; photographs are opt-in and were not used'}), shaded parts in eight silhouettes and scenes of 2–9 components, colour and "
        f"grey; {len(families)} defect families ({defects}) blended with random opacity, 30% faint; each mask is the "
        "set of pixels that visibly changed, ≥ 8 grey levels)"
        + (f"; {100 * cfg['synth']['imaging_fraction']:.0f}% of pairs seen through imaging conditions (uneven light, "
           "exposure, sensor noise, defocus, JPEG; the same on both images of a pair)"
           if cfg["synth"].get("imaging_fraction") else "") + ". "
        f"Decoder on layers {cfg['model'].get('decoder', {}).get('layers', [-1])}, image head on "
        f"{cfg['model'].get('decoder', {}).get('image_head', 'cls')}. "
        f"Loss: 5·focal + clipped L1 per pixel under the confidence weighting mean(c·L − α·log c), α = {cfg['alpha']}, "
        f"plus an image focal loss (weight {cfg['image_weight']}). Mean loss over the last 100 steps "
        f"{np.mean([h['loss'] for h in log[-100:]]):.3f}. "
        f"{'These steps' if lineage else 'Training'} took {hours:.2f} h on {env['cpu']} ({env['cpu_count']} cores, "
        f"CPU only, {env['torch_threads']} torch threads). No real image, and none of the "
        f"evaluation data, was used. Re-run: `python -m training.train --config "
        f"training/configs/{Path(cfg['out']).name.replace('anomalyvfm-vits14-', '')}.json`.")
    bench = payload["config"]
    evaluation = (
        "Zero-shot on real data the model never saw (`../shared/data`: magnetic_tile, DeepPCB, ELPV), "
        f"{bench['resolution'] or 224} px square input, pixel metrics at the ground-truth resolution (ELPV has no "
        "masks). Image AUROC in % under the default image score rule (and under each rule), next to the training-free "
        "kNN baseline (AnomalyDINO) with k = 1, 4 and 16 good references from `train/good` on the same backbone and "
        "resolution, mean over seeds 0, 1, 2. magnetic_tile is the validation category; the other three are the "
        "report categories.\n\n" + comparison_table(payload["rows"]) +
        f"\nMeasured on {env['cpu']} ({env['cpu_count']} cores), torch {env['packages']['torch']}. Re-run: "
        f"`anomalyvfm benchmark --data ../shared/data --methods anomalyvfm,knn --shots 1,4,16 --resolution 224 "
        f"--out {args.results.relative_to(ROOT) if args.results.is_relative_to(ROOT) else args.results}`.")
    evaluation += "\n\n" + selection_text(version) + views_text()
    limitations = (
        "Departures from the published AnomalyVFM recipe:\n\n" + recipe_text() + "\n\n"
        "Trained for about an hour on a 2-core CPU on procedural data only; it is a starting point, not a finished "
        "inspector. Pixel maps come from 16×16 patch tokens at 224 px, so defects smaller than a patch are blurred; "
        "use `--mode accurate` or tiling for fine defects.\n\n" + threshold_text())
    card = build_card(target, args.results / "results.json", repo_or_path="anomalyvfm/weights/anomalyvfm-vits14",
                      summary="The default zero-shot AnomalyVFM checkpoint shipped inside the `anomalyvfm` package: "
                              "embedded DINOv2 ViT-S/14 with LoRA adapters, decoder and image head, trained only on "
                              "synthesised anomalies.",
                      training=training, evaluation=evaluation, limitations=limitations)
    atomic_write_bytes(args.card, str(card).encode())
    print(f"checkpoint: {target}\ncard: {args.card}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
