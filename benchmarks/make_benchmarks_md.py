"""Generate BENCHMARKS.md from the harness JSON files under benchmarks/results/ (never edit BENCHMARKS.md by hand).

    python benchmarks/make_benchmarks_md.py            # writes BENCHMARKS.md at the repository root

Each results folder was produced by the command recorded in its results.json ("config"); the commands are repeated
below each table so that anyone can re-run them.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from anomalyvfm.report import summary_markdown  # noqa: E402
from training.ship import comparison_table  # noqa: E402

from batch_sections import batch_sections  # noqa: E402


def fewshot_section(folders: tuple[str, ...] = ("fewshot-224",),
                    title: str = "Few-shot: fine-tuned and fused vs kNN at the same k (v1 checkpoint)", note: str = "",
                    commands: str | None = None) -> list[str]:
    """Few-shot (issue 5): zero-shot, fine-tuned, fine-tuned + fused memory and kNN at the same k, per category,
    from the harness rows of ``folders`` under benchmarks/results (the first holds the few-shot runs). Each
    (category, method, k) comes from the first folder that has it; ``"folder:method"`` takes only that method's
    rows from a folder."""
    specs = [f.partition(":")[::2] for f in folders]
    paths = [RESULTS / f / "results.json" for f, _ in specs]
    if not all(p.is_file() for p in paths):
        return []
    payloads = [json.loads(p.read_text()) for p in paths]
    payload = payloads[0]
    groups: dict[tuple, list[dict]] = {}
    for (_, only), p in zip(specs, payloads):
        found = defaultdict(list)
        for r in p["rows"]:
            if not only or r["method"] == only:
                found[(r["dataset"], r["category"], r["method"], r["shots"])].append(r)
        for key, rows in found.items():
            groups.setdefault(key, rows)

    def cell(rows: list[dict], key: str) -> str:
        vals = [100 * r[key] for r in rows if key in r and r[key] == r[key]]
        return f"{np.mean(vals):.1f} ± {np.std(vals):.1f}" if vals else "–"

    cats = sorted({(d, c) for d, c, m, _ in groups if m == "anomalyvfm-fewshot"})
    shots = sorted({k for _, _, m, k in groups if m == "anomalyvfm-fewshot"})
    top = max((k for _, _, m, k in groups if m == "knn"), default=0)
    seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in payload["rows"] if r["method"] == "anomalyvfm-fewshot"}))
    lines = [f"## {title}", "", *([note, ""] if note else []),
             "`anomalyvfm-fewshot` fine-tunes the shipped checkpoint on the k good references (synthetic defects made "
             "on them, early stopping on held-out synthetic pairs), fuses a kNN map of their adapted patch features "
             "into the map (weight chosen by pixel AUROC on the held-out pairs) and scores each image by the "
             "`memory` rule (image head and kNN score, each standardised by the good views' statistics), then "
             "calibrates its threshold from the good references alone (target FPR 1%). `fine-tuned` is the "
             "fine-tuned model without its memory (I-AUROC[model]); `+ fused` is the profile as shipped; `kNN` is "
             f"AnomalyDINO on the same backbone at the same k, and at k = {top} for reference. Mean ± std over the "
             f"few-shot seeds {seeds} (kNN: seeds 0, 1, 2). The calibrated threshold's false-positive rate and recall "
             "are in \"Calibration\" below. fit s: "
             "fine-tuning wall time per run (2-core CPU).", "",
             f"| category | k | zero-shot | fine-tuned | + fused | kNN | kNN k={top} | fit s |",
             "|---|---|---|---|---|---|---|---|"]

    def mean_of(rows: list[dict], key: str) -> float:
        vals = [r[key] for r in rows if key in r and r[key] == r[key]]
        return float(np.mean(vals)) if vals else float("nan")

    means = defaultdict(list)
    for k in shots:
        for d, c in cats:
            ft = groups.get((d, c, "anomalyvfm-fewshot", k), [])
            zs, knn, ref = (groups.get((d, c, m, n), []) for m, n in (("anomalyvfm", 0), ("knn", k), ("knn", top)))
            fit = f"{np.mean([r['fit_s'] for r in ft]):.0f}" if ft and "fit_s" in ft[0] else "–"
            lines.append(f"| {d}/{c} | {k} | {cell(zs, 'I-AUROC')} | {cell(ft, 'I-AUROC[model]')} | "
                         f"{cell(ft, 'I-AUROC')} | {cell(knn, 'I-AUROC')} | {cell(ref, 'I-AUROC')} | {fit} |")
            for name, rows, key in (("zs", zs, "I-AUROC"), ("ft", ft, "I-AUROC[model]"), ("fused", ft, "I-AUROC"),
                                    ("knn", knn, "I-AUROC"), ("ref", ref, "I-AUROC")):
                means[(k, name)].append(mean_of(rows, key))
        row = [f"{100 * np.mean(means[(k, n)]):.1f}" for n in ("zs", "ft", "fused", "knn", "ref")]
        lines.append(f"| **mean** | {k} | " + " | ".join(row) + " | |")
    setup = _setup(payload).split(" Wall time")[0]  # the folder gathers several invocations: no single wall time
    rerun = ("Re-run (zero-shot and kNN rows, then the few-shot rows, into one folder):" if commands is None else
             f"Re-run (the few-shot rows; the others come from {', '.join(f.split(':')[0] for f in folders[1:])}):")
    lines += ["", setup, "", rerun, "",
              "```bash", commands or FEWSHOT_COMMANDS, "```", ""]
    return lines


def fewshot_v6_section() -> list[str]:
    return fewshot_section(
        ("fewshot-224-v6", "zeroshot-224-v6", "fewshot-224:knn"), "Few-shot on v6 (the default's weights, single pass)",
        "The section below was measured on v1. Here the same harness fine-tunes v6, the default's weights, on k = 1, "
        "2, 4 and 8 good images (seeds 0, 1, 2); the zero-shot and kNN rows are those of 'Zero-shot AnomalyVFM v6', "
        "and kNN at k = 2 and 8 those of the v1 section below (kNN does not depend on the checkpoint; same backbone, "
        "224 px). fit s at k = 1, 2 and 8 was measured while another job shared the 2-core CPU for part of the run "
        "(see 'Few-shot fine-tuning time' for clean timings). The calibrated thresholds' false-positive rate and recall "
        "are in 'Calibration ... (v6 checkpoint)' below. These runs (and both calibration sections on v6) predate "
        "mirror averaging in the default, so profiles here score a single pass. They also predate "
        "float64 image scores: a float32 sigmoid tied a profile's most anomalous images (up to 188 of 582 "
        "magnetic_tile test images at the top score, some good) and showed them as ~0.500. Re-run after the fix, "
        "magnetic_tile k = 2 seed 2 keeps its verdicts (FPR 18.4%, recall 65.6%) and its ranking barely moves "
        "(I-AUROC 80.0 → 80.1, no ties; median defective score 0.500 → 0.942; `anomalyvfm benchmark --data "
        "../shared/data --datasets magnetic_tile --methods anomalyvfm-fewshot --shots 2 --seeds 2 --resolution 224 "
        "--out benchmarks/results/score-precision-check`).",
        "anomalyvfm benchmark --data ../shared/data --methods anomalyvfm-fewshot --shots 1,2,4,8 --seeds 0,1,2 "
        "--resolution 224 --model anomalyvfm-vits14-v6 --out benchmarks/results/fewshot-224-v6")


FEWSHOT_COMMANDS = (
    "anomalyvfm benchmark --data ../shared/data --methods anomalyvfm,knn --shots 1,2,4,8,16 --resolution 224 "
    "--out benchmarks/results/fewshot-224\n"
    "anomalyvfm benchmark --data ../shared/data --methods anomalyvfm-fewshot --shots 1,2,4,8 --resolution 224 "
    "--out benchmarks/results/fewshot-224")


STUDY_V1_CLOSING = ("Below 4 images no rule gets near the target: a single image, or two, do not show how much good "
                    "parts differ (DeepPCB's test boards each show another region). `finetune` says so and points to "
                    "`anomalyvfm calibrate` (next section).")


def study_section(folder: str = "calibration-study", checkpoint: str = "v1", closing: str = STUDY_V1_CLOSING,
                  rerun: str = "python benchmarks/calibration_study.py --seeds 0,1,2 --model anomalyvfm-vits14-v1 && "
                               "python benchmarks/calibration_study.py --report") -> list[str]:
    """benchmarks/calibration_study.py: each threshold rule's FPR and recall on the few-shot profiles of a checkpoint."""
    path = RESULTS / folder / "raw.json"
    if not path.is_file():
        return []
    from calibration_study import PRESENT, report

    return [f"## Calibration: the threshold rule, from k good images alone ({checkpoint} checkpoint)", "",
            f"The few-shot profiles of {checkpoint} (the same draws and fine-tune as its few-shot table; 224 px, 2-core "
            "CPU), target FPR 1%. Each "
            "profile scores 8 views of each of its k good images (the image and 7 augmentations; each view against "
            "the memory without its own image; with k = 1 the image itself), and a rule turns those scores into a "
            "threshold. `quantile`: their 99% quantile, i.e. nearly their maximum; `views as independent draws`: "
            "at least the normal prediction bound on their logits; `with the image of each view`: from 4 images on, "
            "also the bound over image means with the spread between images, since views of one image do not show "
            "how much the next image differs (anomalyvfm.calibration.calibrate). FPR on test/good / recall on the "
            "defective test images:", "", report(json.loads(path.read_text()), rules=PRESENT).strip(), "", closing, "",
            f"Re-run: `{rerun}`.", ""]


def candidate_rules_section() -> list[str]:
    """benchmarks/calibration_study.py's candidate rules on the validation category alone (v6 profiles)."""
    path = RESULTS / "calibration-validation-v6" / "results.md"
    if not path.is_file():
        return []
    return ["## Calibration: rules that one outlying view cannot move, on the validation category (v6 checkpoint)",
            "", "Declared before scoring (commit 75aeeeb). On magnetic_tile, k = 8, seed 0, one of the eight good "
            "images had a view (of its 8: the image and 7 augmentations) that scored like a gross defect (that "
            "image's views: mean logit 7.3, sd 8.4); the bound over image means rose to logit 18.4 and the profile "
            "flagged nothing, good or defective. Candidates: views beyond Tukey's far-out fences (quartiles ∓ 3 "
            "interquartile ranges of the views' logits, `within_fences` in the study script) dropped before the "
            "present rule; and the present rule's bounds with the median and 1.4826 × MAD in place of mean and sd, "
            "no quantile term. Rule: magnetic_tile only (the validation category), seeds 0, 1, 2; a candidate is "
            "vetoed if at any k its mean FPR on test/good exceeds the present rule's by more than 5 points; of the "
            "rest, the highest mean recall over k = 4 and 8 replaces the present rule. Both are vetoed: dropping "
            "far-out views flags 17.9% of good parts at k = 2 (present 8.1%) and 13.0% at k = 4 (present 2.8%); "
            "median and MAD 64.4% at k = 1. The present rule stays. Read once afterwards, as declared, from the "
            "v6 study's seed-0 runs of deeppcb, elpv/mono and elpv/poly: dropping far-out views would flag a mean "
            "4.3% / 2.0% of good parts at k = 4 / 8 (present 2.4% / 0.3%) and find 19.6% / 10.7% of defects "
            "(present 16.0% / 1.0%); it stays unused, as the validation split vetoed it, and profiles of 8 images "
            "still flag almost nothing there. Seed 0's k = 8 profile was the unlucky draw: over three seeds the present rule flags 3.7% of good "
            "parts and finds 17.1% of defects at k = 8. Profiles of v6 (single pass), 224 px, 2-core CPU; seed 0 "
            "runs are those of the v6 calibration study.", "", path.read_text().strip(), "",
            "Re-run: `python benchmarks/calibration_study.py --datasets magnetic_tile --seeds 0,1,2 --model "
            "anomalyvfm-vits14-v6 --out benchmarks/results/calibration-validation-v6 && python "
            "benchmarks/calibration_study.py --report --out benchmarks/results/calibration-validation-v6`.", ""]


def memory_stats_section() -> list[str]:
    """benchmarks/memory_stats.py: the `memory` rule's standardising statistics, and wrong inputs, on v6 profiles."""
    path = RESULTS / "memory-stats" / "results.md"
    if not path.is_file():
        return []
    return ["## Few-shot profiles: what standardises the `memory` rule, and inputs of another product", "",
            "Declared before scoring (docstring of `benchmarks/memory_stats.py`, commit 2ee629f). A k = 4 "
            "magnetic_tile profile had called 25 of 26 wrong inputs normal (other products' good parts, noise, a "
            "black frame). Suspected cause: the `memory` rule divides the kNN score by the sd of the held-out good "
            "views' kNN scores, which a few augmented views can inflate. Candidate: median and 1.4826 × MAD "
            "in place of mean and sd (same floors). Rule: on magnetic_tile (validation), k = 4 and 8, seeds 0, 1, 2, "
            "the candidate replaces mean and sd if its mean I-AUROC is at most 0.5 lower, its FPR on test/good at "
            "the profile's own threshold at most 2 points higher, and it flags at least 10 points more of the wrong "
            "inputs (8 train/good images of each category of the other data sets, 5 noise images, one black "
            "frame). Each profile is the harness's draw and fine-tune of the default (v6's weights, four test "
            "views), fitted twice, once per variant; 224 px; 2-core AMD EPYC, 2 torch threads, torch 2.14.1, no "
            "GPU; 9–16 minutes per profile with both variants (the first two shared the CPU with tests). The "
            "validation runs predate the refusal of blank input (commit "
            "a30a4a2): they scored the black frame, which neither variant flagged; a re-run counts it as caught "
            "(refused), 3.3 points more for both.", "", path.read_text().strip(), "",
            "The candidate loses on validation (I-AUROC −0.6, wrong inputs +1.7 points), and the suspected cause was "
            "not the cause. In these profiles the sd of the views' kNN scores is 0.30–0.69, and 1.4826 × MAD is "
            "0.05–0.25, so the candidate weighs the kNN part 1.3–14 times more, yet it flags hardly more wrong "
            "inputs. Under both statistics a profile passes most inputs of another product as normal. "
            "Of the 30 wrong inputs, only PCB boards were flagged with any regularity (0–7 of 8 per profile), and "
            "elpv/mono "
            "cells in one profile only (2 of 8 under mean and sd, 5 under the candidate). No noise image, no elpv/poly "
            "cell and not the black frame was ever flagged. "
            "The profile's threshold, set from augmented views of its references, sits above the combined score of "
            "such inputs. "
            "So the package now refuses blank frames as input, and the README says that a profile is no check that "
            "the right product is in front of the camera. The report categories were read once afterwards, for the "
            "record, at k = 4, seed 0 only (k = 8 was not run, for time); these runs refuse the black frame, "
            "which counts as caught. Their wrong inputs are 30 for deeppcb and 22 for elpv (the other data sets' "
            "categories). How well a profile notices another product depends on the product: the deeppcb profile "
            "flagged none of the 29 it scored (its 3.3% is the refused black frame), elpv/mono 6 of 22 (the black "
            "frame among them), elpv/poly 21 of 22 (all but one magnetic tile).", "",
            "Re-run: `python benchmarks/memory_stats.py` (validation; writes results.md) and `python "
            "benchmarks/memory_stats.py --datasets deeppcb elpv --shots 4 --seeds 0` (report rows).", ""]


HOLDOUT_V1_CLOSING = ("Unseen images set a better threshold only as far as they look like the good parts to come: "
                      "magnetic_tile's test/good has 8.4% of its images above every one of 32 further train/good "
                      "images, and 8 or 16 further elpv/poly images give a looser threshold than the profile's own. "
                      "Calibrate on good images from the line the profile will watch, as many as can be had.")


HOLDOUT_V6_CLOSING = ("On v6 the profile's own threshold (mean FPR 2.1%) is nearer the target than 8 or 16 unseen "
                      "images: magnetic_tile's test/good has 20% of its images above 8 or 16 further train/good images "
                      "and 6.8% above all 32, and 8 further elpv images set a looser threshold than the profile's own "
                      "(mono 7.1%, poly 13.0%). Unseen images help only as far as they look like the good parts to "
                      "come: calibrate on good images from the line the profile will watch, as many as can be had.")


def calibration_section(folder: str = "calibration-holdout", checkpoint: str = "v1", closing: str = HOLDOUT_V1_CLOSING,
                        flags: str = "--model anomalyvfm-vits14-v1") -> list[str]:
    """benchmarks/calibration_holdout.py: the profile's own threshold vs re-calibration on unseen good images."""
    path = RESULTS / folder / "results.json"
    if not path.is_file():
        return []
    payload = json.loads(path.read_text())
    cfg, groups = payload["config"], defaultdict(list)
    for r in payload["rows"]:
        groups[(r["calibration"], r["unseen"])].append(r)
    cats = sorted({r["category"] for r in payload["rows"]})
    lines = [f"## Calibration: the profile's threshold vs a few unseen good images ({checkpoint} checkpoint)", "",
             f"k = {cfg['shots']} profiles of {checkpoint} (seed(s) {cfg['seeds']}, {cfg['resolution']} px, target FPR "
             f"{100 * float(cfg['fpr']):g}%). The profile's own threshold comes from leave-one-out augmented views of "
             "its k references, which its head was fine-tuned on (the rule of the section above); `anomalyvfm calibrate PROFILE --good DIR` re-chooses "
             "it from m good images it has not seen, here further images of train/good. `quantile`: their 99% "
             "quantile, i.e. their maximum for m < 100 (a new good image exceeds it with probability ≈ 1/(m + 1)); "
             "`calibrate`: what `recalibrate` uses, at least the normal one-sided prediction bound on the scores' "
             "logits (exact for independent normal draws). FPR on test/good / recall on "
             "the defective test images, %:", "",
             "| threshold from | m | " + " | ".join(cats) + " | mean FPR | mean recall |",
             "|---|---|" + "---|" * (len(cats) + 2)]
    for (how, m), rows in groups.items():
        by = defaultdict(list)
        for r in rows:
            by[r["category"]].append(r)
        cells = [f"{100 * np.mean([r['FPR@thr'] for r in by[c]]):.1f} / {100 * np.mean([r['recall@thr'] for r in by[c]]):.1f}"
                 for c in cats]
        lines.append(f"| {how} | {m or '–'} | " + " | ".join(cells) + f" | {100 * np.mean([r['FPR@thr'] for r in rows]):.1f}"
                     f" | {100 * np.mean([r['recall@thr'] for r in rows]):.1f} |")
    return lines + ["", closing, "", f"Re-run: `python benchmarks/calibration_holdout.py --shots {cfg['shots']} "
                                     f"--unseen {cfg['unseen']} --seeds {cfg['seeds']} {flags}`.", ""]


def onnx_accuracy_section() -> list[str]:
    """benchmarks/onnx_accuracy.py: eager vs float32 vs int8 ONNX on real test images."""
    path = RESULTS / "onnx-accuracy" / "results.json"
    if not path.is_file():
        return []
    payload = json.loads(path.read_text())
    cfg = payload["config"]
    lines = ["## ONNX export: what it changes on real images", "",
             f"The shipped checkpoint on every test image of each category, {cfg['resolution']} px ({cfg['mode']} "
             f"mode), {cfg['hardware']}: largest absolute difference from eager PyTorch (0–1 score, anomaly map), "
             "verdicts that flip at the 0.5 threshold, and the harness metrics.", "",
             "| category | backend | max abs score diff | max abs map diff | verdicts changed | I-AUROC | P-AUROC | "
             "AUPRO@0.3 |", "|---|---|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        pix = [f"{100 * r[k]:.2f}" if k in r else "–" for k in ("P-AUROC", "AUPRO@0.3")]
        lines.append(f"| {r['category']} | {r['backend']} | {r['max_abs_score']:.1e} | {r['max_abs_map']:.1e} | "
                     f"{r['verdicts_changed']} / {r['n_test']} | {100 * r['I-AUROC']:.2f} | {pix[0]} | {pix[1]} |")
    return lines + ["", "Re-run: `python benchmarks/onnx_accuracy.py`.", ""]


def mixed_section() -> list[str]:
    """Mixed supervision (benchmarks/mixed_supervision.py): good-only vs good + a few real defective images."""
    path = RESULTS / "mixed-supervision" / "results.json"
    if not path.is_file():
        return []
    payload = json.loads(path.read_text())
    cfg = payload["config"]
    groups = defaultdict(list)
    for r in payload["rows"]:
        groups[(r["category"], r["arm"])].append(r)

    def cell(rows: list[dict], key: str) -> str:
        vals = [100 * r[key] for r in rows if key in r and r[key] == r[key]]
        return f"{np.mean(vals):.1f}" if vals else "–"

    lines = ["## Mixed supervision: a few real defective images added", "",
             f"k = {cfg['shots']} good images from train/good plus {cfg['defective']} defective images drawn from test "
             "(with their masks where the data set has them), taken out of the evaluation; all arms are scored on "
             f"the same remaining test images at {cfg['resolution']} px, seed(s) {cfg['seeds']}, 2-core CPU. The "
             "defective images join fine-tuning (real_fraction 0.5 of the pairs) and calibration, and in the last arm "
             "also the positive memory of defect patches. fit s is the wall time of one fine-tune, taken while other "
             "jobs may have shared the CPU (benchmarks/finetune_speed.py is the timing to quote).", "",
             "| category | arm | I-AUROC | I-AP | P-AUROC | AUPRO@0.3 | FPR@thr | recall@thr | fit s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (cat, arm), rows in groups.items():
        lines.append(f"| {cat} | {arm} | {cell(rows, 'I-AUROC')} | {cell(rows, 'I-AP')} | {cell(rows, 'P-AUROC')} | "
                     f"{cell(rows, 'AUPRO@0.3')} | {cell(rows, 'FPR@thr')} | {cell(rows, 'recall@thr')} | "
                     f"{np.mean([r['fit_s'] for r in rows]):.0f} |")
    return lines + ["", f"Re-run: `python benchmarks/mixed_supervision.py --shots {cfg['shots']} --defective "
                        f"{cfg['defective']} --seeds {cfg['seeds']}`.", ""]


def golden_section() -> list[str]:
    """Golden-reference mode on DeepPCB pairs (benchmarks/golden_deeppcb.py), one row per map and resolution."""
    found = sorted(RESULTS.glob("golden-deeppcb*/results.json"))
    if not found:
        return []
    lines = ["## Golden-reference mode on DeepPCB pairs", "",
             "Each defective DeepPCB test image against the defect-free template of the same board region (the "
             "pairs whose template is in ../shared/data), with the shipped checkpoint and no fine-tuning: its own "
             "zero-shot map, the golden-reference map (ECC alignment, patch-by-patch comparison within ± one patch) "
             "and a plain kNN map against the same template. Pixel metrics against the box masks, over the defective "
             "images only (the good test images are the templates themselves).", "",
             "| resolution | pairs | map | P-AUROC | AUPRO@0.3 |", "|---|---|---|---|---|"]
    for path in found:
        payload = json.loads(path.read_text())
        for label, m in payload["metrics"].items():
            lines.append(f"| {payload['resolution']} | {payload['n_pairs']} | {label} | {100 * m['P-AUROC']:.1f} | "
                         f"{100 * m['AUPRO@0.3']:.1f} |")
    return lines + ["", "Re-run: `python benchmarks/golden_deeppcb.py [--resolution 448 --out "
                    "benchmarks/results/golden-deeppcb-448]`.", ""]


TILING_RUNS = (("whole image", "zeroshot-224-v6-flips"), ("tile_size 320", "zeroshot-224-v6-flips-tile320"),
               ("tile_size 224", "zeroshot-224-v6-flips-tile224"))
TILING_TEXT = (
    "The default (v6's weights, four test views, 224 px input) with `tile_size` set: an image whose shorter side exceeds "
    "it is cut into the fewest overlapping squares of that side that cover it, each resized to 224 px, the maps "
    "stitched back and the image scored as its most anomalous tile. 224 cuts a 640 px DeepPCB board into 3 × 3 tiles "
    "(each seen at about its own pixel size) and an elpv cell (300 px) into 2 × 2; 320 cuts a board into 2 × 2 and "
    "leaves elpv whole (not re-run: the same as the whole image). magnetic_tile images range from 105 to 512 px, so "
    "some are cut. An opt-in setting measured once on every category; nothing was chosen on these numbers and the "
    "default stays whole images, which magnetic_tile, the validation category, prefers. The last column uses the "
    "default's stored threshold, set on whole synthetic images: a tiled image scores as its worst tile, so with tiles "
    "the threshold must be calibrated on good images (`anomalyvfm calibrate MODEL --tile-size N`). Deterministic; "
    "2-core AMD EPYC, 2 torch threads, torch 2.14.1, no GPU; img/s as measured by the harness (the two tiled runs "
    "shared the CPU with other work for part of the time). Tiles help where defects are a few pixels on a large image "
    "(DeepPCB: image AUROC +4.2, AUPRO +10.4 at 224) and hurt where a tile loses the part: on elpv/mono the cut "
    "corners of each cell become the hottest spot of their tiles (the grid's top images are good cells lit at the "
    "corners), 83.1 → 62.3; poly 72.3 → 66.4; magnetic_tile 79.5 → 71.6.")


def tiling_section() -> list[str]:
    """The default scored whole vs cut into tiles (``tile_size``), per category: AUROCs, throughput, and the FPR and
    recall at the default's stored threshold."""
    from batch_sections import _pct
    from default_threshold import part_rates

    from anomalyvfm.model import shipped_checkpoint

    runs = [(label, RESULTS / folder) for label, folder in TILING_RUNS if (RESULTS / folder / "results.json").is_file()]
    if len(runs) < 2:
        return []
    threshold = json.loads((shipped_checkpoint() / "config.json").read_text())["threshold"]
    lines = ["## Tiling large images (`tile_size`), the default's weights and views, 224 px", "", TILING_TEXT, "",
             f"| category | input | I-AUROC | P-AUROC | AUPRO@0.3 | img/s | FPR / recall at {threshold} |",
             "|---|---|---|---|---|---|---|"]
    for key in ("deeppcb/pcb", "elpv/mono", "elpv/poly", "magnetic_tile/magnetic_tile"):
        for label, folder in runs:
            part = folder / "parts" / f"{key.replace('/', '__')}__anomalyvfm__k0__s0.json"
            if not part.is_file():
                continue
            row, rates = json.loads(part.read_text())["row"], part_rates(threshold, part)
            lines.append(f"| {key} | {label} | {_pct(row.get('I-AUROC'))} | {_pct(row.get('P-AUROC'))} | "
                         f"{_pct(row.get('AUPRO@0.3'))} | "
                         f"{row['img/s']:.2f} | {100 * rates['FPR']:.1f}% / {100 * rates['recall']:.1f}% |")
    calibrated = RESULTS / "tiling-calibration" / "table.md"
    if calibrated.is_file():
        lines += ["", "With a threshold calibrated on good boards, as README advises for tiles "
                  "(`python benchmarks/tiling_calibration.py`: 16 boards drawn from deeppcb/pcb train/good, seed 0, "
                  "scored with each tiling, `calibrate`'s rule at a 1% target; FPR and recall over the test images "
                  "above). Calibration brings the share of good boards flagged from 53-99% down to 0-6% (target 1%), "
                  "but then no setting catches more than a tenth of the defective boards: tiling sharpens DeepPCB's "
                  "maps (AUPRO) more than its image verdict.", "", calibrated.read_text().strip()]
    return lines + ["", "Re-run (each folder's `results.json` holds its command; `runs/tile-N` is a copy of the "
                    "default with `tile_size` N set by `anomalyvfm.checkpoint.update_config`):", "", "```bash",
                    "anomalyvfm benchmark --data ../shared/data --datasets deeppcb/pcb elpv magnetic_tile/magnetic_tile "
                    "--methods anomalyvfm --model runs/tile-224 --out benchmarks/results/zeroshot-224-v6-flips-tile224",
                    "anomalyvfm benchmark --data ../shared/data --datasets deeppcb/pcb magnetic_tile/magnetic_tile "
                    "--methods anomalyvfm --model runs/tile-320 --out benchmarks/results/zeroshot-224-v6-flips-tile320",
                    "```", ""]


def ablation_section() -> list[str]:
    """The training ablations (training/ablate.py): the same short budget per arm, then zero-shot on all data."""
    path = RESULTS / "ablations" / "summary.json"
    if not path.is_file():
        return []
    arms = json.loads(path.read_text())
    cats = sorted({c for a in arms.values() for c in a["per_category"]})
    steps = sorted({a["steps"] for a in arms.values()})
    lines = ["## Ablations that decide the design", "",
             f"Each arm trains from the default config (`training/configs/default.json`) with one change for "
             f"{', '.join(map(str, steps))} steps (batch 8, 224 px, seed 0, 2-core CPU), then runs zero-shot on all of "
             "../shared/data at 224 px (never trained on). I-AUROC is under the default rule; cls / topk / fused "
             "are the three image-score rules of the same run. Mean over categories. A flaw to know: these arms (v1 "
             "generator) were compared on all four categories, report ones included, so the choices they made "
             "(LoRA, texture swaps, the multi-layer decoder that v2 took) were not made on a validation split alone. "
             "Per category no rule won everywhere: topk won deeppcb in 4 of 5 arms, fused magnetic_tile in all 5.", "",
             "| arm | change | train min | I-AUROC | cls | topk | fused | P-AUROC | AUPRO@0.3 | "
             + " | ".join(cats) + " |", "|" + "---|" * (9 + len(cats))]
    for name, a in arms.items():
        change = json.dumps(a["overrides"]) if a["overrides"] else "reference (LoRA, last layer, all defects)"
        cells = [a[k] for k in ("I-AUROC", "I-AUROC[cls]", "I-AUROC[topk]", "I-AUROC[fused]", "P-AUROC",
                                "AUPRO@0.3")] + [a["per_category"].get(c, float("nan")) for c in cats]
        lines.append(f"| {name} | `{change}` | {a['train_s'] / 60:.1f} | "
                     + " | ".join("–" if v != v else f"{100 * v:.1f}" for v in cells) + " |")
    return lines + ["", "Re-run: `python -m training.ablate --steps " + str(steps[-1]) + "` then "
                    "`python benchmarks/make_benchmarks_md.py`.", ""]

def ablation_v3_section() -> list[str]:
    """The v3 ablations (training/ablate.py): arms warm-started from v2, chosen on the validation split only."""
    path = RESULTS / "ablations-v3" / "summary.json"
    if not path.is_file():
        return []
    arms = json.loads(path.read_text())
    steps = sorted({a["steps"] for a in arms.values() if a["steps"]})
    val, syn = "magnetic_tile/magnetic_tile", "synthetic"
    report = sorted({c for a in arms.values() for v in ("as_trained", "smooth5") for c in a[v]["report"]})
    lines = ["## Ablations for v3: chosen on the validation split", "",
             f"Each arm continues v2 (`training/configs/v3-ablation.json`: warm start from the shipped v2, lr 2e-4, seed 2, "
             f"batch 8, 224 px, 2-core CPU) with one change for {', '.join(map(str, steps))} steps; `baseline` is v2 "
             "itself, untrained further. The arms drew from the generator with photographs among the normals "
             "(`continue`) or without them (`no_photo`), before misprint and bend were added. Every arm is scored "
             "as trained and with the published evaluation's 5×5 mean filter on the map (`map_smoothing` 5). "
             "**Validation (chooses): the generator's 150 held-out pairs (seed 999) and magnetic_tile.** "
             + ("Report categories (never read by the choice): " + ", ".join(report) + "." if report else
                "The report categories were not scored for the arms.") + " `continue` crashed near step 200 (a generator bug, "
             "fixed) and resumed exactly from its last checkpoint, so its train time counts only the steps after the resume.", "",
             "| arm | change | filter | train min | synthetic I-AUROC cls | synthetic I-AUROC topk | synthetic "
             "P-AUROC | magnetic_tile I-AUROC cls | topk | fused | P-AUROC | AUPRO@0.3 |"
             + "".join(f" {c} I-AUROC |" for c in report), "|" + "---|" * (12 + len(report))]
    for name, a in arms.items():
        change = json.dumps(a["overrides"]) if a["overrides"] else ("none (v2)" if name == "baseline" else "none")
        for variant, label in (("as_trained", "none"), ("smooth5", "5×5 mean")):
            v = a[variant]
            m = v["validation"].get(val, {})
            cells = [v[syn].get(k, float("nan")) for k in ("I-AUROC[cls]", "I-AUROC[topk]", "P-AUROC")]
            cells += [m.get(k, float("nan")) for k in ("I-AUROC[cls]", "I-AUROC[topk]", "I-AUROC[fused]",
                                                        "P-AUROC", "AUPRO@0.3")]
            cells += [v["report"].get(c, {}).get("I-AUROC", float("nan")) for c in report]
            lines.append(f"| {name} | `{change}` | {label} | {a['train_s'] / 60:.1f} | "
                         + " | ".join("–" if x != x else f"{100 * x:.1f}" for x in cells) + " |")
    return lines + ["", "Re-run: `python -m training.ablate --steps " + str(steps[-1] if steps else 250)
                    + "` then `python benchmarks/make_benchmarks_md.py`.", ""]


# Image AUROC of an independent kNN check (same embedded backbone, 224 px square bicubic resize, ImageNet
# normalisation, last-layer normalised patch tokens, top-1% mean, no masking or augmentation), from the issue.
REFERENCE_224 = {("magnetic_tile", "magnetic_tile"): {1: 59.7, 4: 65.6, 16: 67.8},
                 ("elpv", "mono"): {1: 64.6, 4: 81.6, 16: 87.8}}


def _command(cfg: dict) -> str:
    parts = ["anomalyvfm benchmark", f"--data {cfg['data']}", f"--methods {','.join(cfg['methods'])}",
             f"--shots {','.join(map(str, cfg['shots']))}", f"--seeds {','.join(map(str, cfg['seeds']))}"]
    if cfg.get("datasets"):
        parts.append("--datasets " + " ".join(cfg["datasets"]))
    for key, flag in (("mode", "--mode"), ("resolution", "--resolution"), ("pixel_max_side", "--pixel-max-side"),
                      ("model", "--model")):
        if cfg.get(key):
            parts.append(f"{flag} {cfg[key]}")
    return " ".join(parts + [f"--out {cfg['out']}"])


def _setup(payload: dict) -> str:
    env = payload["environment"]
    pk = env["packages"]
    wall = payload.get("wall_s")
    return (f"Hardware: {env['cpu']}, {env['cpu_count']} cores, {env['torch_threads']} torch threads, no GPU. "
            f"torch {pk['torch']}, transformers {pk['transformers']}, numpy {pk['numpy']}. "
            f"Pixel metrics at {'the ground-truth resolution' if not payload['config'].get('pixel_max_side') else 'reduced resolution'}. "
            + (f"Wall time of the run: {wall / 60:.1f} min." if wall else ""))


def _check_table(rows: list[dict], independent: list[dict]) -> str:
    """Harness vs the independent re-implementation (benchmarks/knn_check.py, same reference draws: must agree per
    seed) vs the issue's reference figures (other seeds: ±3 expected)."""
    got, ind = defaultdict(dict), defaultdict(dict)
    for r in rows:
        got[(r["dataset"], r["category"], r["shots"])][r["seed"]] = 100 * r["I-AUROC"]
    for r in independent:
        ind[(r["dataset"], r["category"], r["shots"])][r["seed"]] = r["I-AUROC"]
    lines = ["| category | k | harness (mean ± std, 3 seeds) | independent, same references | largest per-seed "
             "difference | issue's reference | harness − reference |", "|---|---|---|---|---|---|---|"]
    for (ds, cat), refs in REFERENCE_224.items():
        for k, ref in refs.items():
            ours, theirs = got.get((ds, cat, k), {}), ind.get((ds, cat, k), {})
            if not ours:
                continue
            mean = float(np.mean(list(ours.values())))
            same = sorted(set(ours) & set(theirs))
            diff = max(abs(ours[s] - theirs[s]) for s in same) if same else float("nan")
            indep = (f"{np.mean([theirs[s] for s in same]):.1f} ± {np.std([theirs[s] for s in same]):.1f}"
                     if same else "–")
            lines.append(f"| {ds}/{cat} | {k} | {mean:.1f} ± {float(np.std(list(ours.values()))):.1f} | {indep} | "
                         f"{diff:.2f} | {ref:.1f} | {mean - ref:+.1f} |")
    return "\n".join(lines) + "\n"


SECTIONS = [
    ("knn-448", "kNN baseline (AnomalyDINO) at 448 px, k = 1, 4, 16, seeds 0, 1, 2, all of ../shared/data",
     "Faithful AnomalyDINO defaults: 448×448 bicubic resize, last-layer DINOv2 patch tokens (embedded ViT-S/14), "
     "cosine nearest neighbour against the k references, image score = mean of the top 1% patch distances, "
     "map smoothed with a Gaussian (σ = 4 px); no masking or rotation augmentation."),
    ("zeroshot-224-v6-flips", "Zero-shot AnomalyVFM v6 with four test views (the default) next to kNN at k = 1, 4 "
     "and 16, 224 px, all of ../shared/data",
     "`anomalyvfm` is the default: v6's weights with `test_views` \"flips\" (each image scored as it is, mirrored "
     "left-right, mirrored up-down and turned by half a turn, the logits averaged with each map turned back; four "
     "times the cost of a pass), scored zero-shot at 224 px with `--model runs/v6-flips/model` (a copy of v6 with that "
     "one config field set, since shipped; the kNN parts are those of the v6 section, and the magnetic_tile part that "
     "of the views selection, the same model and harness, copied into the folder, which the harness reuses). "
     "magnetic_tile is the validation category (with the generator's held-out pairs): it chose the setting ('Test-time "
     "views' below). deeppcb/pcb and elpv/mono and poly report; they chose nothing and were scored once after the "
     "choice: their mean image AUROC is 69.3 against 67.7 with the mirror alone and 66.1 for v6's single pass (every "
     "one of the three rises again: 51.3 → 52.6, 82.2 → 83.1, 69.7 → 72.3). elpv/poly is still 0.5 below kNN with one "
     "good image (72.8), and the mean is 3.6 short of the 72.9 issue 19 asks for."),
    ("zeroshot-224-v6-flip", "Zero-shot AnomalyVFM v6 with mirror averaging (the default before four views) next to "
     "kNN at k = 1, 4 and 16, 224 px, all of ../shared/data",
     "`anomalyvfm` was the default: v6's weights with `test_views` \"mirror\" (`flip_average` when it was scored; each image scored with its left-right mirror, "
     "the logits averaged; twice the cost of a pass, hence half the img/s), scored zero-shot at 224 px with `--model "
     "runs/v6-flip/model` (a copy of v6 with that one config field set; the kNN parts are those of the v6 section "
     "below, copied into the folder, which the harness reuses). magnetic_tile is the validation category (with the "
     "generator's held-out pairs): it chose the setting ('Test-time mirror averaging' and 'Which synthetic normals set "
     "the default threshold' below). deeppcb/pcb and elpv/mono and poly report; they chose nothing and were scored "
     "once after the choice: their mean image AUROC is 67.7 against 66.1 for v6 without the setting (every one of the "
     "three rises: 49.8 → 51.3, 80.5 → 82.2, 68.1 → 69.7). elpv/poly is still below kNN with one good image (72.8)."),
    ("zeroshot-224-v6", "Zero-shot AnomalyVFM v6 (now `anomalyvfm-vits14-v6`, without mirror averaging) next to kNN at k = 1, 4 and 16, 224 px, "
     "all of ../shared/data",
     "`anomalyvfm` is v6, the default checkpoint from v6 until mirror averaging was turned on (`training/configs/v6-imaging.json`: v2 "
     "continued on the current generator with half of the pairs seen through imaging conditions, the step-750 "
     "checkpoint of a 1000-step run, seed 3; trained only on synthetic data; see model_cards/anomalyvfm-vits14.md), "
     "scored zero-shot at 224 px with `--model runs/anomalyvfm-vits14-v6-imaging/checkpoints/step_0000750/model` "
     "(the same weights); `knn` is AnomalyDINO on the same embedded backbone and resolution with k good references "
     "from `train/good` (seeds 0, 1, 2; the kNN parts are those of the v2 run, which the harness reuses). "
     "magnetic_tile is the validation category (with the generator's held-out pairs): it chose v6 over v2 "
     "('Checkpoint selection with imaging conditions (v6-imaging)' below). deeppcb/pcb and elpv/mono and poly report; "
     "they chose nothing, were scored once after the choice, and do not confirm it: their mean image AUROC is 66.1 "
     "against v2's 67.4."),
    ("zeroshot-224-v3", "Zero-shot AnomalyVFM v3 candidate (not shipped) next to kNN at k = 1, 4 and 16, 224 px, "
     "all of ../shared/data",
     "`anomalyvfm` is the v3 candidate (`python -m training.train --config training/configs/v3.json`: v2 continued "
     "for 1000 steps on the current generator, seed 3; trained only on synthetic data), scored zero-shot at 224 px "
     "with `--model runs/anomalyvfm-vits14-v3/final`; `knn` is AnomalyDINO on the same embedded backbone and "
     "resolution with k good references from `train/good` (seeds 0, 1, 2; the kNN parts are those of the v2 run, "
     "which the harness reuses: kNN does not depend on the checkpoint). It won the validation score over v2 (86.3 vs "
     "85.0, 'Checkpoint selection for v3' below) but was held back as the default: on the same validation category "
     "its synthetic default threshold flags 51.6% of good magnetic_tile images (v2: 27.4%). deeppcb/pcb and "
     "elpv/mono and poly report; they chose nothing."),
    ("zeroshot-224-v2", "Zero-shot AnomalyVFM v2 (now `anomalyvfm-vits14-v2`) next to kNN at k = 1, 4 and 16, 224 px, "
     "all of ../shared/data",
     "`anomalyvfm` is v2, the default from v2 until v6 (trained only on synthetic data, never "
     "on these data sets; see model_cards/anomalyvfm-vits14-v2.md), scored zero-shot at 224 px; `knn` is AnomalyDINO on "
     "the same embedded backbone and resolution with k good references from `train/good` (seeds 0, 1, 2). "
     "magnetic_tile is the validation category (with the generator's held-out pairs, below): it chose v2 over v1; "
     "deeppcb/pcb and elpv/mono and poly report. I-AUROC[cls], [topk] and [fused] are the image AUROC of the three "
     "image-score rules (the default, cls, is recorded in the checkpoint's config.json)."),
    ("zeroshot-224", "Zero-shot AnomalyVFM v1 (now `anomalyvfm-vits14-v1`) next to kNN at k = 1 and 4, 224 px, all "
     "of ../shared/data",
     "`anomalyvfm` is the v1 checkpoint, the default before v2 (trained only on synthetic data, never on these "
     "data sets; see model_cards/anomalyvfm-vits14.md), scored zero-shot at 224 px; `knn` is AnomalyDINO on the same "
     "embedded backbone and resolution with k good references from `train/good` (seeds 0, 1, 2). I-AUROC[cls], "
     "[topk] and [fused] are the image AUROC of the three image-score rules (the default is recorded in the "
     "checkpoint's config.json)."),
    ("knn-224-check", "kNN agreement check at 224 px",
     "The same method at 224 px, compared with an independent computation on the same backbone "
     "(issue 3's reference figures; ±3 points expected since the seeds differ)."),
]


WINCLIP_SECTION = """## CLIP prompt baseline (WinCLIP / WinCLIP+)

Not measured here: this machine has no CLIP weights and no network, so `winclip` and `winclipplus` are reported by
the harness as "skipped: weights unavailable". The implementation (`anomalyvfm/methods/winclip.py`) follows the paper:
7 normal and 4 anomalous state words in 21 templates, softmax at T = 0.07, 2×2 and 3×3 patch windows with harmonic
aggregation, the final map the harmonic mean with the image-level map; WinCLIP+ adds reference association on
penultimate patch tokens and windows. Its unit tests run on tiny random open_clip models.

To reproduce the paper's MVTec AD numbers (target: 0-shot I-AUROC 91.8, P-AUROC 85.1) where the weights and the data
are present, download `ViT-B-16-plus-240` / `laion400m_e31` (open_clip fetches it when online, or pass the file path)
and run, at the model's 240 px:

```bash
anomalyvfm benchmark --data /path/to/mvtec_ad --methods winclip,winclipplus --shots 1,2,4 \\
    --clip-model ViT-B-16-plus-240 --clip-pretrained /path/to/open_clip_pytorch_model.bin --out results/winclip
```
"""


def _v2_sections() -> list[str]:
    """What v2 changed and how it was chosen: label quality, the synthetic validation pairs, region overlap."""
    from batch_sections import _table_section

    return (_table_section("synth-labels/labels.md", "Synthetic labels: do masks mark what changed?",
                           "Per defect family over 400 generated pairs (seed 3): the median change inside the mask, "
                           "masks whose mean change is under 5 grey levels, and pairs with changes over 8 levels "
                           "outside the mask. The v1 generator's figures are in "
                           "benchmarks/results/synth-labels/labels_before.md (83 invisible masks, 30 pairs with "
                           "visible changes outside).", "python benchmarks/synth_labels.py")
            + _table_section("synthetic-validation/table.md", "Validation on held-out synthetic pairs",
                             "The generator's validation pairs (never drawn by training), one half of the "
                             "validation split that chose v2 (magnetic_tile is the other).",
                             "python benchmarks/synthetic_validation.py --models anomalyvfm/weights/anomalyvfm-vits14-v1 "
                             "anomalyvfm/weights/anomalyvfm-vits14")
            + _table_section("v3-selection/table.md", "Checkpoint selection for v3",
                             "The v3 run's checkpoints against v2 on the validation split only (the generator's 150 "
                             "held-out pairs, seed 999, and magnetic_tile). Validation score = mean of image and "
                             "pixel AUROC on both halves; a new default must win by 0.5 points. The best checkpoint "
                             "won on this score but was not shipped: its default threshold, below, flags far more "
                             "good parts. That criterion was added after seeing it (said so) and is now part of the "
                             "script, checked first: at most 5 points more magnetic_tile FPR at the candidate's own "
                             "synthetic threshold (last two columns); every v3 checkpoint fails it.",
                             "python benchmarks/checkpoint_selection.py --clean-normals --run runs/anomalyvfm-vits14-v3 --steps "
                             "250,500,750,1000 --compare anomalyvfm/weights/anomalyvfm-vits14")
            + _table_section("v4-selection/table.md", "Checkpoint selection for a low-learning-rate run (v4-lowlr)",
                             "Hypothesis declared before training: v3's verdict drift (at its own synthetic "
                             "threshold every v3 checkpoint flags 43.7-60.5% of good magnetic_tile parts, v2 27.4%) "
                             "comes from the step size. `training/configs/v4-lowlr.json`: v2 continued for 750 steps at a quarter of "
                             "v3's learning rate (5e-5), seed 4, on the current generator (bend labels fixed); 15.9 "
                             "min on the 2-core CPU (1.27 s/step). Same validation split and rule as above, veto "
                             "first; v2 re-scored on the current generator's pairs. The drift is smaller (FPR 28.9, 33.7, 37.4% at "
                             "steps 250, 500, 750) but grows with every checkpoint; the one eligible "
                             "checkpoint (step 250) does not beat v2, so nothing was shipped and the report "
                             "categories were not scored.",
                             "python -m training.train --config training/configs/v4-lowlr.json && python "
                             "benchmarks/checkpoint_selection.py --clean-normals --run runs/anomalyvfm-vits14-v4-lowlr --steps "
                             "250,500,750 --compare anomalyvfm/weights/anomalyvfm-vits14 --out "
                             "benchmarks/results/v4-selection")
            + _table_section("synth-labels-imaging/labels.md", "Synthetic labels under imaging conditions",
                             "The same count as 'Synthetic labels' with half the pairs seen through imaging "
                             "conditions (`anomalyvfm.synth.imaging`: uneven light, exposure, sensor noise, defocus, "
                             "JPEG; one to three per pair, drawn once and applied alike to the good and the "
                             "defective image, the label re-derived from what still visibly differs). Off by "
                             "default (`imaging_fraction` 0 leaves every earlier pair unchanged); the runs below "
                             "turn it on. Preview: benchmarks/results/synth-labels-imaging/preview_imaging.png.",
                             "python benchmarks/synth_labels.py --imaging-fraction 0.5 --out "
                             "benchmarks/results/synth-labels-imaging")
            + _table_section("synth-labels-v12/labels.md", "Synthetic labels with v12's mix (layouts and stroke faults)",
                             "The same count with the generator settings of `training/configs/v12-circuit.json`: "
                             "the default families plus the opt-in `circuit` normals (traces at 0/45/90 degrees, "
                             "pads, vias, rows of component pads; binarised or metal on a solder mask) and "
                             "`trace_fault` defects (break, pin-hole, bite, bridge, spur, speck; the material is the "
                             "image's minority tone), half the pairs through imaging conditions. Preview per family: "
                             "benchmarks/results/synth-labels-v12/preview_*.png.",
                             "python benchmarks/synth_labels.py --synth-from training/configs/v12-circuit.json --out "
                             "benchmarks/results/synth-labels-v12")
            + _table_section("v5-selection/table.md", "Checkpoint selection with imaging conditions (v5-imaging)",
                             "Hypothesis declared before training: v4-lowlr's verdict drift comes from synthetic "
                             "normals being cleaner than real good parts. `training/configs/v5-imaging.json` is "
                             "v4-lowlr with `imaging_fraction` 0.5 (same seed 4, so the same pairs underneath); "
                             "16.3 min on the 2-core CPU (1.3 s/step; a 6-second label count ran alongside for a "
                             "minute). Same validation split and rule as above. The drift is gone (FPR 32.6, 26.8, "
                             "29.5% at steps 250, 500, 750, against v4-lowlr's 28.9, 33.7, 37.4% and v2's 27.4%) and "
                             "magnetic_tile AUPRO rises 9.5 points, but the best eligible checkpoint (step 750, 85.5) "
                             "beats v2 (85.1) by less than the 0.5-point margin: not shipped, report categories not "
                             "scored.",
                             "python -m training.train --config training/configs/v5-imaging.json && python "
                             "benchmarks/checkpoint_selection.py --clean-normals --run runs/anomalyvfm-vits14-v5-imaging --steps "
                             "250,500,750 --compare anomalyvfm/weights/anomalyvfm-vits14 --out "
                             "benchmarks/results/v5-selection")
            + _table_section("v6-selection/table.md", "Checkpoint selection with imaging conditions (v6-imaging)",
                             "Declared before training: v6-imaging = v3's recipe (v2 continued for 1000 steps at lr "
                             "2e-4, seed 3) with `imaging_fraction` 0.5; same validation split and rule (veto first, "
                             "then the 0.5-point margin), checkpoints 500, 750 and 1000. 20.2 min on the 2-core CPU "
                             "(1.21 s/step). Step 750 wins: validation score 87.7 vs v2's 85.1, and it flags fewer "
                             "good magnetic_tile parts at its own synthetic threshold (14.7% vs 27.4%); without the "
                             "imaging conditions the same recipe (v3, above) reached 86.3 but flagged 43.7-60.5%. "
                             "Shipped as v6 (`python -m training.ship --install --run runs/anomalyvfm-vits14-v6-imaging "
                             "--step 750 --keep-as anomalyvfm-vits14-v2`); the report categories, scored once "
                             "afterwards, are in 'Zero-shot AnomalyVFM v6' above. The row "
                             "`anomalyvfm/weights/anomalyvfm-vits14` is v2 (the default at the time).",
                             "python -m training.train --config training/configs/v6-imaging.json && python "
                             "benchmarks/checkpoint_selection.py --clean-normals --run runs/anomalyvfm-vits14-v6-imaging --steps "
                             "500,750,1000 --compare anomalyvfm/weights/anomalyvfm-vits14-v2 --out "
                             "benchmarks/results/v6-selection")
            + _table_section("v7-selection/table.md", "Checkpoint selection for a run from scratch (v7-scratch)",
                             "Hypothesis declared before training: every checkpoint since v1 descends from 2000 steps "
                             "on the first generator's labels (21% of masks marked invisible change), so a run from "
                             "the embedded backbone on the current generator alone generalises better. "
                             "`training/configs/v7-scratch.json`: v6's architecture (decoder layers 3/7/-1, cls+map "
                             "head), visible-change labels, 15 defect families, `imaging_fraction` 0.5, 3000 steps "
                             "at lr 3e-4, seed 7; 74 min on the 2-core CPU (1.22 s/step; a 5-minute batch "
                             "study shared the CPU early on; record in benchmarks/results/training/v7-scratch). Same "
                             "validation split and rule (veto first, then the 0.5-point margin), compared with the "
                             "default v6 (the row `anomalyvfm/weights/anomalyvfm-vits14`). Rejected on both counts: "
                             "its synthetic scores are the best so far but magnetic_tile is worse (I-AUROC 75.2 vs "
                             "77.8 at step 3000) and it flags 64-84% of good magnetic_tile parts at its own "
                             "synthetic threshold against v6's 14.7%. Not shipped; report categories not scored.",
                             "python -m training.train --config training/configs/v7-scratch.json && python "
                             "benchmarks/checkpoint_selection.py --clean-normals --run runs/anomalyvfm-vits14-v7-scratch --steps "
                             "2000,2500,3000 --compare anomalyvfm/weights/anomalyvfm-vits14 --out "
                             "benchmarks/results/v7-selection")
            + _table_section("v8-selection/table.md", "Checkpoint selection with every pair through imaging "
                             "conditions (v8-imaging-all)",
                             "Hypothesis declared before training: the imaging conditions gave the largest validation "
                             "gain so far (v3 to v6), so every pair seen through them helps further. "
                             "`training/configs/v8-imaging-all.json`: the default v6 continued for 750 steps at lr "
                             "2e-4, seed 8, `imaging_fraction` 1.0; 15.3 min on the 2-core CPU (1.23 s/step; record "
                             "in benchmarks/results/training/v8-imaging-all). Same validation split and rule, "
                             "compared with v6 (the row `anomalyvfm/weights/anomalyvfm-vits14`; its entry is copied "
                             "from the v7 selection, the same weights and data). Rejected on both counts: validation "
                             "score 87.3-87.5 vs 87.7, and 48-62% of good magnetic_tile parts flagged at its own "
                             "synthetic threshold vs 14.7%, although magnetic_tile AUPRO rises from 74.3 to 80.1. "
                             "Not shipped; report categories not scored.",
                             "python -m training.train --config training/configs/v8-imaging-all.json && python "
                             "benchmarks/checkpoint_selection.py --clean-normals --run runs/anomalyvfm-vits14-v8-imaging-all --steps "
                             "250,500,750 --compare anomalyvfm/weights/anomalyvfm-vits14 --out "
                             "benchmarks/results/v8-selection")
            + _table_section("v9-selection/table.md", "Checkpoint selection for model soups (v9-soup)",
                             "Hypothesis declared before scoring: a uniform average of checkpoints fine-tuned from v2 "
                             "(a model soup, Wortsman et al., 2022) reduces the run-to-run variance that makes the "
                             "verdict swing (magnetic_tile FPR 15-84% between runs) and wins on validation. Two soups, "
                             "declared in `training/configs/`: `v9-soup-trajectory` (v6-imaging steps 500, 750 and "
                             "1000) and `v9-soup-runs` (the last checkpoint of each run from v2: v3 step 1000, "
                             "v4-lowlr 750, v5-imaging 750, v6-imaging 1000); `training/soup.py` averages every "
                             "adapter, decoder and head tensor, no training (seconds). Same validation split and "
                             "rule, compared with v6 (its entry copied from the v7 selection). Rejected: neither "
                             "passes the veto (23.2% and 34.2% of good magnetic_tile parts flagged vs 14.7%) and "
                             "neither scores higher (87.6 and 86.6 vs 87.7); on magnetic_tile the soup of different "
                             "recipes (I-AUROC 75.2) lands between its members (74.0-78.0 in their selections), not "
                             "above them. Not shipped; "
                             "report categories not scored.",
                             "python -m training.soup --config training/configs/v9-soup-trajectory.json && python -m "
                             "training.soup --config training/configs/v9-soup-runs.json && python "
                             "benchmarks/checkpoint_selection.py --clean-normals --models runs/anomalyvfm-vits14-v9-soup/trajectory "
                             "runs/anomalyvfm-vits14-v9-soup/runs --compare anomalyvfm/weights/anomalyvfm-vits14 "
                             "--out benchmarks/results/v9-selection")
            + _table_section("v10-selection/table.md", "Checkpoint selection at 448 px (v10-448)",
                             "Hypothesis declared before training: the published recipe trains and evaluates at high "
                             "resolution (672 px); v2, trained at 224 px and scored at 448, won validation but lost "
                             "elpv, perhaps because it never saw that scale. `training/configs/v10-448.json`: the "
                             "default v6 continued at 448 px for 750 steps (batch 4, lr 1e-4, seed 10, "
                             "`imaging_fraction` 0.5, `mode` accurate); 46.5 min on the 2-core CPU (3.72 s/step; "
                             "record in benchmarks/results/training/v10-448). Same validation split and rule, each "
                             "checkpoint at its own resolution: the candidates at 448 px, v6 at 224 px; the 150 "
                             "synthetic pairs (seed 999) drawn at 448 px for all (`--pairs-size 448`, hence v6's "
                             "synthetic 88.0 here against 92.1 on pairs drawn at 224), each threshold from 400 "
                             "normals (seed 101) drawn at the model's own resolution. Rejected on both counts: "
                             "validation score 84.8-86.6 vs 86.6, and 54.7-64.7% of good magnetic_tile parts flagged "
                             "at its own synthetic threshold vs 14.7%. As with v8, magnetic_tile AUPRO rises (74.3 to "
                             "78.5-80.0) while its image AUROC and pixel AUROC fall. Not shipped; report categories "
                             "not scored.",
                             "python -m training.train --config training/configs/v10-448.json && python "
                             "benchmarks/checkpoint_selection.py --clean-normals --run runs/anomalyvfm-vits14-v10-448 --steps "
                             "250,500,750 --compare anomalyvfm/weights/anomalyvfm-vits14 --pairs-size 448 --out "
                             "benchmarks/results/v10-selection")
            + _table_section("v11-selection/table.md", "Checkpoint selection with symmetry augmentation (v11-symmetry)",
                             "Hypothesis declared before training (commit 7521af7): test-time views helped on "
                             "every split, so the single pass depends on orientation; training pairs seen through "
                             "random symmetries of the square should make the model itself more robust. "
                             "`training/configs/v11-symmetry.json`: the default's weights (v6) continued for 750 "
                             "steps with `symmetry_augment` (each pair through one random d4 view, alike for good, bad "
                             "and mask), lr 1e-4, seed 11, `imaging_fraction` 0.5; 16.1 min on the 2-core CPU (1.29 "
                             "s/step; record in benchmarks/results/training/v11-symmetry; the loss is flat). Each "
                             "checkpoint scored with the default's four views (`test_views` \"flips\") against the "
                             "default (its entry and harness folder copied from the views selection: same weights, "
                             "pairs, data and threshold protocol). Same validation split and rule. Rejected on both "
                             "counts: validation score 88.2-88.7 vs 89.4, and 30.5-37.9% of good magnetic_tile parts "
                             "flagged at its own synthetic threshold vs 15.3%. Not shipped; report categories not "
                             "scored. 224 px, deterministic; 27 min for the three candidates.",
                             "python -m training.train --config training/configs/v11-symmetry.json && python -c \"from "
                             "anomalyvfm.checkpoint import update_config as u; [u(f'runs/anomalyvfm-vits14-v11-symmetry/"
                             "checkpoints/step_{s:07d}/model', test_views='flips') for s in (250, 500, 750)]\" && python "
                             "benchmarks/checkpoint_selection.py --run runs/anomalyvfm-vits14-v11-symmetry --steps "
                             "250,500,750 --compare runs/v6-flips/model --out benchmarks/results/v11-selection  # with "
                             "views-selection's runs/v6-flips/model entry and harness folder copied in first")
            + _table_section("v12-selection/table.md", "Checkpoint selection with layouts and stroke faults (v12-circuit)",
                             "Hypothesis declared before training (commit 2368f00): layouts (circuit boards, "
                             "photomasks) are a missing normal family and the faults of thin strokes (break, "
                             "pin-hole, bite, bridge, spur, speck) a missing defect family. Both are opt-in "
                             "(`circuit`, `trace_fault`), so the validation pairs stay the same draw (checked by "
                             "hash). `training/configs/v12-circuit.json`: the default's weights (v6) continued for "
                             "750 steps with both added to the mix (31 of 400 normals are layouts, 23 of 400 defects "
                             "stroke faults; 'Synthetic labels with v12's mix'), lr 1e-4, seed 12, `imaging_fraction` "
                             "0.5, otherwise v11's recipe without symmetry; 16.8 min on the 2-core CPU (1.34 s/step; "
                             "record in benchmarks/results/training/v12-circuit; the loss is flat). Scored with the "
                             "default's four views against the default, as for v11. Rejected on both counts: "
                             "validation score 87.9-88.8 vs 89.4, and 30.5-47.9% of good magnetic_tile parts flagged "
                             "at its own synthetic threshold vs 15.3% (magnetic_tile AUPRO rises, 78.9 to 80.9-81.4, "
                             "as with v8 and v10). Not shipped; report categories not scored. 224 px, deterministic; "
                             "27 min for the three candidates.",
                             "python -m training.train --config training/configs/v12-circuit.json && python -c \"from "
                             "anomalyvfm.checkpoint import update_config as u; [u(f'runs/anomalyvfm-vits14-v12-circuit/"
                             "checkpoints/step_{s:07d}/model', test_views='flips') for s in (250, 500, 750)]\" && python "
                             "benchmarks/checkpoint_selection.py --run runs/anomalyvfm-vits14-v12-circuit --steps "
                             "250,500,750 --compare runs/v6-flips/model --out benchmarks/results/v12-selection  # with "
                             "views-selection's runs/v6-flips/model entry and harness folder copied in first")
            + _table_section("v13-selection/table.md", "Checkpoint selection with outputs on good images anchored (v13-anchor)",
                             "Hypothesis declared before training (commit 78e6862): the veto failures of every CPU "
                             "continuation of v6 come from its verdict on good images drifting, so holding the good "
                             "half of each batch near v6's image and mask probabilities (`anchor_to`, Bernoulli KL, "
                             "`anchor_weight` 1.0) keeps that verdict within the veto while v12's mix is learnt. "
                             "`training/configs/v13-anchor.json`: v12-circuit with seed 13 and the anchor; 35.2 min "
                             "on the 2-core CPU (2.82 s/step against v12's 1.34: the anchor adds a forward pass of its "
                             "own, and a plain step was slower on the machine that day; record in "
                             "benchmarks/results/training/v13-anchor: the anchor term averages 0.006 against a loss "
                             "of 0.27). Scored with the default's four views against the default, as for v11 and "
                             "v12. Rejected on both counts: validation score 88.5-89.0 vs 89.4, and 26.3-45.3% of good "
                             "magnetic_tile parts flagged at its own synthetic threshold vs 15.3%. The anchor held "
                             "what it sees: each candidate's synthetic threshold (the 99th percentile of 400 "
                             "generator normals) stays within 0.016 of v6's 0.5977, yet real good parts score higher, "
                             "so synthetic normals are no proxy for real ones here. Not shipped; report categories not "
                             "scored. 224 px, deterministic; 41 min for the three candidates.",
                             "python -m training.train --config training/configs/v13-anchor.json && python -c \"from "
                             "anomalyvfm.checkpoint import update_config as u; [u(f'runs/anomalyvfm-vits14-v13-anchor/"
                             "checkpoints/step_{s:07d}/model', test_views='flips') for s in (250, 500, 750)]\" && python "
                             "benchmarks/checkpoint_selection.py --run runs/anomalyvfm-vits14-v13-anchor --steps "
                             "250,500,750 --compare runs/v6-flips/model --out benchmarks/results/v13-selection  # with "
                             "v12-selection's runs/v6-flips/model entry and harness folder copied in first")
            + _table_section("v14-selection/table.md", "Checkpoint selection for ensembles of checkpoints (v14-ensemble)",
                             "Hypothesis declared before scoring (commit 3637c78): averaging the outputs of several "
                             "checkpoints reduces the same variance that test views reduce, so at the default's cost "
                             "(4 passes) an ensemble beats v6 with four views. An ensemble checkpoint holds its other "
                             "members' adapters and heads (`config.members`, members.safetensors) and averages every "
                             "member's view-averaged logits; `python -m training.ensemble --config ...` builds one, no "
                             "training. Candidates (`training/configs/v14-ensemble-*.json`): v6 and v13-anchor step "
                             "750, two views each (`anchor`); v6 and v2, two views each (`v2`); v6, v2 and v13-anchor "
                             "steps 250 and 750, one pass each (`four`). Same validation split and rule, against the "
                             "default (its entry and harness folder copied from the v13 selection). Rejected: every "
                             "ensemble scores lower (87.3-88.4 vs 89.4) and is worse on magnetic_tile's image AUROC "
                             "(76.0-78.3 vs 79.5); the passes spent on other checkpoints buy less than the same passes "
                             "spent on views of v6. Not shipped; report categories not scored; ensembles stay an "
                             "opt-in format. 224 px, deterministic; 44 min for the three candidates on the 2-core CPU "
                             "(the test suite shared it for the first 12).",
                             "for c in anchor v2 four; do python -m training.ensemble --config "
                             "training/configs/v14-ensemble-$c.json; done && python benchmarks/checkpoint_selection.py "
                             "--models runs/v14-ensemble/anchor runs/v14-ensemble/v2 runs/v14-ensemble/four --compare "
                             "runs/v6-flips/model --out benchmarks/results/v14-selection  # v13-anchor's checkpoints "
                             "from its training command above; v13-selection's runs/v6-flips/model entry and harness "
                             "folder copied in first")
            + _table_section("views4-selection/table.md", "Test-time views: the other four-pass sets (turns, diagonals)",
                             "Declared before scoring (commit d2a60cd): d4 won the views selection (89.6) but costs 8 "
                             "passes; its gain over flips may come from the quarter turns, which a four-pass set can "
                             "hold. The square's symmetries have three subgroups of four: `flips` (the default: "
                             "mirrors in the two axes, half turn), `turns` (the four quarter turns) and `diagonals` "
                             "(mirrors in the two diagonals, half turn); the two new ones are copies of the default "
                             "with that one config field, through the unchanged selection (validation only, "
                             "imaging-400 thresholds, FPR veto, 0.5-point margin) against the default (its entry and "
                             "harness folder copied from the v13 selection). Rejected by the margin: both tie the "
                             "default's score (89.42 and 89.38 vs 89.37). They trade pixel for image AUROC on "
                             "magnetic_tile (image 81.7 and 82.2 vs 79.5; pixel 84.2 and 84.4 vs 85.9) and flag fewer "
                             "good parts at their own threshold (11.1% and 9.5% vs 15.3%), but the rule asks for 0.5 "
                             "points on the mean of the four AUROCs, so the default keeps `flips`; both are opt-in "
                             "sets (`--views turns`, `--views diagonals`). Report categories not scored. 224 px, "
                             "deterministic; 27 min for the two candidates on the 2-core CPU.",
                             "mkdir -p runs/v6-turns runs/v6-diagonals && cp -r anomalyvfm/weights/anomalyvfm-vits14 "
                             "runs/v6-turns/model && cp -r anomalyvfm/weights/anomalyvfm-vits14 runs/v6-diagonals/model "
                             "&& python -c \"from anomalyvfm.checkpoint import update_config as u; "
                             "u('runs/v6-turns/model', test_views='turns'); u('runs/v6-diagonals/model', "
                             "test_views='diagonals')\" && python benchmarks/checkpoint_selection.py --models "
                             "runs/v6-turns/model runs/v6-diagonals/model --compare runs/v6-flips/model --out "
                             "benchmarks/results/views4-selection  # with v13-selection's runs/v6-flips/model entry "
                             "and harness folder copied in first")
            + _table_section("shift-selection/table.md", "Test-time views shifted by half a patch (shifted-flips)",
                             "Declared before scoring (commit 4c204a5): the patch grid's phase is a nuisance the views' "
                             "average could cancel at no extra cost (on 24 magnetic_tile images, no labels read, a 7 px "
                             "shift moved v6's image logit by 0.38 on average, the left-right mirror by 0.24). "
                             "`shifted-flips` is the flips set with each of its three other views first shifting the "
                             "content down and right by whole cells of the decoder's map (half a patch, 7 px at 224: "
                             "(0, 1), (1, 0), (1, 1) cells), so the four passes see the grid's four half-patch phases; "
                             "the edge a shift uncovers is mirrored in and its map cells filled from their neighbours. A "
                             "copy of the default with that one config field went through the unchanged selection "
                             "(validation only, imaging-400 thresholds, FPR veto, 0.5-point margin) against the default "
                             "(its entry and harness folder copied from the v18 selection). Rejected on both counts: "
                             "88.3 vs 89.4, and 22.1% of good magnetic_tile parts flagged vs 15.3% (veto 20.3%). The "
                             "shifts lower image AUROC on both halves (synthetic 91.7 vs 93.3, magnetic_tile 76.5 vs "
                             "79.5) while the maps gain a little (magnetic_tile pixel AUROC 86.2 vs 85.9, AUPRO 79.4 vs "
                             "78.9). The default keeps `flips`; `shifted-flips` stays an opt-in set (`--views "
                             "shifted-flips`). Report categories not scored. 224 px, deterministic; 8 min on the 2-core "
                             "CPU.",
                             "mkdir -p runs/v6-shifted && cp -r anomalyvfm/weights/anomalyvfm-vits14 "
                             "runs/v6-shifted/model && python -c \"from anomalyvfm.checkpoint import update_config as "
                             "u; u('runs/v6-shifted/model', test_views='shifted-flips')\" && python "
                             "benchmarks/checkpoint_selection.py --models runs/v6-shifted/model --compare "
                             "runs/v6-flips/model --out benchmarks/results/shift-selection  # with v18-selection's "
                             "runs/v6-flips/model entry and harness folder copied in first")
            + _table_section("edgepad-selection/table.md", "Test-time mirrored border (edge_pad)",
                             "Declared before scoring (commit 8e351d6): the default's maps are hottest at the image's "
                             "edge on good parts (102 of 190 good magnetic_tile test images, 53.7%, peak in the outer "
                             "ring one patch wide, which is 23% of the area; the commit message said 103, a rounding "
                             "slip); if part of that comes from the image's edge meeting the edge of the patch grid "
                             "and the decoder's zero padding, a mirrored border of one patch around the input "
                             "(`edge_pad` 1: 252 px seen, every map and token grid cropped back to the image's own, "
                             "the image head reading the cropped map) moves the edge inside the network's field. A "
                             "copy of the default with that one config field went through the unchanged selection "
                             "(validation only, imaging-400 thresholds, FPR veto, 0.5-point margin) against the "
                             "default (its entry and harness folder copied from the shift selection). Rejected on "
                             "both counts: 87.3 vs 89.4, and 32.1% of good magnetic_tile parts flagged vs 15.3% (veto "
                             "20.3%); magnetic_tile image AUROC falls 6.5 points (73.0 vs 79.5) while the synthetic "
                             "half barely moves (93.1 vs 93.3). The label-free check below says why: with the border "
                             "the good parts peak at the edge more often, not less (86.8% vs 53.7%), consistent "
                             "with the mirror seam itself looking like a defect to the model. The declared cost rule (at most 1.35x the "
                             "default's time) held: 1.19x. The default keeps `edge_pad` 0; the field stays, opt-in. "
                             "Report categories not scored. 224 px, deterministic; 10 min on the 2-core CPU.",
                             "mkdir -p runs/v6-edgepad && cp -r anomalyvfm/weights/anomalyvfm-vits14 "
                             "runs/v6-edgepad/model && python -c \"from anomalyvfm.checkpoint import update_config as "
                             "u; u('runs/v6-edgepad/model', edge_pad=1)\" && python "
                             "benchmarks/checkpoint_selection.py --models runs/v6-edgepad/model --compare "
                             "runs/v6-flips/model --out benchmarks/results/edgepad-selection  # with shift-selection's "
                             "runs/v6-flips/model entry and harness folder copied in first")
            + _table_section("edge-pad/table.md", "Where good parts are hot, with and without the mirrored border",
                             "Label-free (good images of the validation category only; no defective image, no AUROC): "
                             "the share of magnetic_tile's 190 good test images whose map peaks in the outer ring one "
                             "patch wide, the mean map by distance to the edge, and `predict`'s speed with each "
                             "`edge_pad` in one run (48 of the images, batch 8, best of 3).",
                             "python benchmarks/edge_pad.py")
            + _table_section("v15-selection/table.md", "Checkpoint selection with v6's adapters frozen (v15-frozen)",
                             "Hypothesis declared before training (commit f8d8bc9): every CPU continuation of v6 "
                             "failed the veto; if the drift on real good parts comes from the adapters (the "
                             "features), continuing with v6's adapters frozen (`freeze_adapters`) lets decoder and head "
                             "learn v12's mix (layouts, stroke faults) and stay within the veto. "
                             "`training/configs/v15-frozen.json`: v12-circuit with seed 15 and `freeze_adapters`; "
                             "15.3 min on the 2-core CPU (1.22 s/step; the adapters end bit-identical to v6's; record "
                             "in benchmarks/results/training/v15-frozen, the loss is flat). Scored with the default's "
                             "four views against the default, as for v11 to v13. Both candidates pass the veto, the "
                             "first continuations of v6 to do so (16.8% and 16.3% of good magnetic_tile parts flagged "
                             "vs 15.3%), which says the earlier drift came from the adapters; but both score lower "
                             "(88.8 and 88.7 vs 89.4; magnetic_tile image AUROC 78.4 and 78.3 vs 79.5), so the head "
                             "alone learns nothing the validation split rewards. Not shipped; report categories not "
                             "scored. 224 px, deterministic; 26 min for the two candidates.",
                             "python -m training.train --config training/configs/v15-frozen.json && python -c \"from "
                             "anomalyvfm.checkpoint import update_config as u; [u(f'runs/anomalyvfm-vits14-v15-frozen/"
                             "checkpoints/step_{s:07d}/model', test_views='flips') for s in (375, 750)]\" && python "
                             "benchmarks/checkpoint_selection.py --run runs/anomalyvfm-vits14-v15-frozen --steps 375,750 "
                             "--compare runs/v6-flips/model --out benchmarks/results/v15-selection  # with "
                             "v13-selection's runs/v6-flips/model entry and harness folder copied in first")
            + _table_section("v16-selection/table.md", "Checkpoint selection for v6's recipe with another seed (v16-reseed)",
                             "Hypothesis declared before training (commit acc0976): v6 is the one winner among a dozen "
                             "runs, so part of its validation lead may be its seed's. `training/configs/v16-reseed.json` "
                             "is v6's recipe (v2 continued for 1000 steps at lr 2e-4, `imaging_fraction` 0.5) on "
                             "today's generator with seed 16 instead of 3; 20.5 min on the 2-core CPU (1.23 s/step; "
                             "record in benchmarks/results/training/v16-reseed, the loss is flat). Scored with the "
                             "default's four views against the default, as for v11 to v15. Rejected on both counts: "
                             "validation score 87.8-88.7 vs 89.4, and 28-37% of good magnetic_tile parts flagged at "
                             "its own synthetic threshold vs 15.3%. The same recipe with another seed lands where the "
                             "failed continuations of v6 landed (v11-v13: 87.9-89.0, 26-48%), so much of v6's lead "
                             "over them is its seed's, not their recipes' loss (on magnetic_tile, the bootstrap below "
                             "puts v16's differences from v6 at the size of theirs). Not shipped; report categories "
                             "not scored. 224 px, deterministic; 40 min for the three candidates.",
                             "python -m training.train --config training/configs/v16-reseed.json && python -c \"from "
                             "anomalyvfm.checkpoint import update_config as u; [u(f'runs/anomalyvfm-vits14-v16-reseed/"
                             "checkpoints/step_{s:07d}/model', test_views='flips') for s in (500, 750, 1000)]\" && "
                             "python benchmarks/checkpoint_selection.py --run runs/anomalyvfm-vits14-v16-reseed --steps "
                             "500,750,1000 --compare runs/v6-flips/model --out benchmarks/results/v16-selection  # with "
                             "v15-selection's runs/v6-flips/model entry and harness folder copied in first")
            + _table_section("v17-selection/table.md", "Checkpoint selection for a soup of two seeds (v17-seed-soup)",
                             "Declared before scoring (commit 6cec51d): v6 and v16-reseed are one recipe from one start "
                             "(v2) with two seeds, the setting in which Wortsman et al. (2022) found uniform soups "
                             "beat their members (v9's soups mixed recipes, or steps of one run). "
                             "`training/configs/v17-seed-soup.json` averages the shipped v6 (with its four views) and "
                             "v16's step 750, the step v6 was taken at; no training. Rejected on both counts: it lands "
                             "between its members, nearer v6 on the score (89.2 vs 89.4 and v16's 88.7) and halfway "
                             "on the verdict (24.2% of good magnetic_tile parts flagged vs 15.3% and 37.4%). Not "
                             "shipped; report categories not scored. 224 px, deterministic; 13 min on the 2-core CPU.",
                             "python -m training.soup --config training/configs/v17-seed-soup.json && python "
                             "benchmarks/checkpoint_selection.py --models runs/anomalyvfm-vits14-v17-seed-soup "
                             "--compare runs/v6-flips/model --out benchmarks/results/v17-selection  # v16's "
                             "checkpoints from its commands above, runs/v6-flips/model a copy of the shipped default; "
                             "v15-selection's runs/v6-flips/model entry and harness folder copied in first")
            + _table_section("v18-selection/table.md", "Checkpoint selection for v6's recipe with more seeds (v18-seeds)",
                             "Declared before training (commit d85e6f8): v16 showed that one run per recipe cannot "
                             "tell a recipe from its seed. `training/configs/v18-seeds.json` is v6's recipe (v2 "
                             "continued for 1000 steps at lr 2e-4, `imaging_fraction` 0.5); seeds 21-24 were trained "
                             "on the lent H200 (70 s each, 2 `workers` apiece, which leaves the batches unchanged; "
                             "records in benchmarks/results/training/v18-seeds-s21 to -s24) and their step-750 "
                             "checkpoints, the step v6 was taken at, scored here on the 2-core CPU. A first GPU "
                             "attempt is void: under the machine's transformers 5.17 the warm start silently loaded "
                             "none of v2's adapters (fixed in commit b472ba7). Two of the four seeds were scored before "
                             "the session's time ran out (17 and 13 min each). Both are rejected on both counts: "
                             "87.5 and 86.7 vs 89.4, and 25.3% and 50.0% of good magnetic_tile parts flagged vs 15.3%. "
                             "The GPU runs were not kept, so seed 23 was retrained on the 2-core CPU in a later session "
                             "(declared in commit b3095e5; 19.3 min, 1.16 s/step, the loss flat from 0.28 as v6's; "
                             "record in benchmarks/results/training/v18-seeds-s23-cpu) and scored the same way (15 "
                             "min): rejected on both counts too, 87.5 vs 89.4 and 21.6% flagged vs 15.3%. "
                             "With v16, four other seeds of v6's recipe now score 86.7-88.7 and flag 21.6-50%, so "
                             "v6 (89.4, 15.3%) is the best draw of its recipe seen, not its typical run. Not "
                             "shipped; report categories not scored. 224 px, deterministic.",
                             "python -m training.train --config training/configs/v18-seeds.json --seed 21 --out "
                             "runs/v18-seeds-s21  # and seeds 22, 23; then copy checkpoints/step_0000750/model to "
                             "runs/v18-s21-step750 (and s22, s23), set test_views='flips' with "
                             "anomalyvfm.checkpoint.update_config, and: python benchmarks/checkpoint_selection.py "
                             "--models runs/v18-s21-step750 runs/v18-s22-step750 runs/v18-s23-step750 --compare "
                             "runs/v6-flips/model --out "
                             "benchmarks/results/v18-selection  # v17-selection's runs/v6-flips/model entry and "
                             "harness folder copied in first")
            + _table_section("v20-gpu-prefilter/table.md",
                             "Training from the backbone for 6000 steps at batch 16 (v20-scratch, on the lent GPU)",
                             "Declared before training (commit d85e6f8): 6000 steps at batch 16 is four times the "
                             "synthetic images of all CPU training (v1, v2 and v6 together). "
                             "`training/configs/v20-scratch.json`: the embedded backbone with fresh adapters, decoder "
                             "and head (v6's architecture), lr 3e-4, `imaging_fraction` 0.5, seeds 41 and 42; 8.3 min "
                             "each on the lent H200 (records in benchmarks/results/training/v20-scratch-s41 and -s42). "
                             "Scored on the same machine (`checkpoint_selection.py --device cuda --jobs 25`; torch "
                             "2.11, transformers 5.17), so this table is a prefilter, not a CPU record. Valid rows: "
                             "the six v20 ones. The v6-flips, v18 and v19 rows are void: under transformers 5.17 those "
                             "checkpoints' adapters did not load (the bug fixed in commit b472ba7; see NOTE.md beside "
                             "the table); v6's valid figures are the CPU ones above (89.4, 15.3%). v20 reaches the "
                             "best validation AUROCs seen (step 6000 of seed 41: synthetic 94.7 / 99.1, magnetic_tile "
                             "pixel 87.6, AUPRO 83.6; score 90.2), but every v20 checkpoint flags 40.5-84.2% of good "
                             "magnetic_tile parts at its own synthetic threshold, far outside the veto's 20.3%, as "
                             "v7-scratch did: training from the backbone learns the synthetic task better and "
                             "transfers the threshold worse. Rejected; not scored on the CPU or the report split. "
                             "v19-long (v2 continued for 3000 steps at batch 16) was retrained with the fix, but the "
                             "device's time limit stopped it at step 2902, and its step-2000 checkpoints were not "
                             "scored (records in benchmarks/results/training/v19-long-s31 and -s32).",
                             "python -m training.train --config training/configs/v20-scratch.json --seed 41 --out "
                             "runs/v20-scratch-s41  # and seed 42, on a GPU; then copy the step 2000/4000/6000 "
                             "models out, set test_views='flips', and: python benchmarks/checkpoint_selection.py "
                             "--models <them> --compare <a copy of the shipped default> --device cuda --jobs 25 "
                             "--out benchmarks/results/v20-gpu-prefilter")
            + _table_section("v21-selection/table.md",
                             "Checkpoint selection with hard normals mined online (v21-hard-normals)",
                             "Hypothesis declared before training (commit 9633ee2): real good parts are flagged for "
                             "benign structure that the synthetic normals the model finds easy lack, so training on "
                             "its hardest normals lowers its scores on real good parts. `hard_normals` K: each pair "
                             "slot draws K candidate pairs (the first the slot's usual pair) and trains on the one "
                             "whose good image the current model scores highest, with its defective twin. "
                             "`training/configs/v21-hard-normals.json`: v6's recipe and seed (v2 continued for 1000 "
                             "steps at lr 2e-4, `imaging_fraction` 0.5, seed 3) with K = 3; 34.1 min on the 2-core "
                             "CPU (2.05 s/step against v16's 1.23: the extra pairs are drawn and scored; record in "
                             "benchmarks/results/training/v21-hard-normals, the loss flat near 0.30 against v16's "
                             "0.28). Scored with the default's four views against the default, as for v11 to v18. "
                             "Rejected on both counts: validation score 87.6 at both steps vs 89.4 (inside the "
                             "86.7-88.7 of v6's recipe with other seeds), and 33.7% and 38.4% of good magnetic_tile "
                             "parts flagged at its own synthetic threshold vs 15.3%. Why the verdict moved the wrong "
                             "way: mining pulls down the top of the synthetic normals' scores, which is what sets "
                             "the threshold (0.5360 and 0.5487 vs 0.5977), and the real good parts are not pulled "
                             "down with it, so more of them lie above it. Not shipped; report categories not "
                             "scored. 224 px, deterministic; 26 min for the two candidates.",
                             "python -m training.train --config training/configs/v21-hard-normals.json && python -c "
                             "\"from anomalyvfm.checkpoint import update_config as u; "
                             "[u(f'runs/anomalyvfm-vits14-v21-hard-normals/checkpoints/step_{s:07d}/model', "
                             "test_views='flips') for s in (750, 1000)]\" && python "
                             "benchmarks/checkpoint_selection.py --run runs/anomalyvfm-vits14-v21-hard-normals "
                             "--steps 750,1000 --compare runs/v6-flips/model --out benchmarks/results/v21-selection  "
                             "# with edgepad-selection's runs/v6-flips/model entry and harness folder copied in first")
            + _table_section("selection-noise/table.md", "How much of a selection's magnetic_tile figures is noise",
                             "A paired bootstrap over magnetic_tile's 582 test images (2000 resamples, seed 0, the "
                             "same for every pair; good and defective images resampled apart) from the per-image "
                             "scores every selection above stored; no model is run. Each candidate is paired with the checkpoint its selection "
                             "compared it against: the observed difference (candidate − compared, in points) of image "
                             "AUROC and of the share of good images flagged at each one's own synthetic threshold, "
                             "with the 2.5-97.5 percentiles. It covers only the magnetic_tile half of the validation "
                             "score (the synthetic pairs' and pixel scores are not stored per image). What it says: the "
                             "intervals reach 0.5 to 4.0 points either side for image AUROC (median 1.6; closest for "
                             "near relatives such as v15) and 1.3 to 7.4 for the FPR (median 5.5), so differences of "
                             "that size, the veto's 5-point slack included, can come from the image sample alone; "
                             "v6's win over v2 (+5.2 image AUROC, -12.6 FPR) and the FPR rises of v7, v8 and v10 (+33 to +69) are far "
                             "outside it. It does not measure the run-to-run spread of training (v16-reseed above "
                             "does: one more seed moved the FPR by 13-22 points).",
                             "python benchmarks/selection_noise.py")
            + _table_section("threshold-protocol/table.md", "Which synthetic normals set the default threshold",
                             "Every candidate since v6 failed the selection's veto while its AUROCs moved by a point "
                             "or two: the shipped protocol took the 99th percentile of 400 clean generator normals "
                             "(the 4th-highest score), and good magnetic_tile parts sit close to it. Declared before "
                             "any score of the study (docstring of `benchmarks/threshold_protocol.py`): four "
                             "protocols at a nominal 1% of synthetic normals (clean-400, the shipped one; clean-1200; "
                             "imaging-400, the same 400 normals each seen through one draw of imaging conditions, "
                             "seed 102; mixed-800, their union), 16 checkpoints (every candidate of the v6 to flip "
                             "selections), and the criterion: most checkpoints flagging at most 10% of good "
                             "magnetic_tile parts (the default threshold's target), ties to mean recall. Only the "
                             "validation split chose; the report rows below are the default's, for the record. "
                             "imaging-400 wins (4 of 16 vs 0 for clean-400) and replaces clean-400 in "
                             "`default_threshold.py`, the selection's veto and `training.ship`; the selections above "
                             "and the flip selection below were decided with clean normals and their re-run commands pass `--clean-normals`. "
                             "Re-applied with imaging-400 thresholds, every earlier decision stands except one: v6 "
                             "with `flip_average` now passes the veto (11.1% vs 6.8%, within 5 points) and wins (88.6 "
                             "vs 87.7), so it became the default's setting ('Test-time mirror averaging' below). Its "
                             "11.1% misses the default threshold's own 10% target on magnetic_tile, which v6 alone met "
                             "(6.8%): the veto allows 5 points, and the rule was applied as declared. The shipped earlier "
                             "checkpoints keep the thresholds they shipped with. Outside the study's 16, the protocol "
                             "does not always help: for v1 it gives 0.5682 and flags 53.7% of good magnetic_tile parts, "
                             "against 33.2% at its shipped 0.6198 (`python benchmarks/default_threshold.py --model "
                             "anomalyvfm/weights/anomalyvfm-vits14-v1 --results benchmarks/results/zeroshot-224 --out "
                             "benchmarks/results/default-threshold-v1`). Deterministic; "
                             "each checkpoint at its own resolution (224 px, v10 at 448); 2-core AMD EPYC, 2 torch "
                             "threads, torch 2.14.1, no GPU; 60 min.",
                             "python benchmarks/threshold_protocol.py")
            + _table_section("views-selection/table.md", "Test-time views: four and eight symmetries (`test_views`), no training",
                             "Declared before scoring (commit 031caed): the default's weights with `test_views` "
                             "\"flips\" (the image, its left-right and up-down mirrors and its half turn; 4 passes) "
                             "and \"d4\" (all 8 symmetries of the square; 8 passes), copies of the default with that "
                             "one config field changed (runs/v6-flips/model, runs/v6-d4/model), against the default "
                             "of the time (\"mirror\", 2 passes; its entry re-scored and equal to the threshold-protocol "
                             "study's: 88.6, 0.6212, 11.1%), through the unchanged selection (validation only, "
                             "imaging-400 thresholds, FPR veto at most 5 points, 0.5-point margin). Declared cost rule: "
                             "only a set of at most 4 passes may become the default's setting; d4 is measured to say "
                             "what the opt-in buys. d4 scores best (89.6, magnetic_tile image AUROC 82.6, FPR 11.1%) "
                             "but is not eligible; flips wins (89.4 vs 88.6, FPR 15.3% vs 11.1%, within the veto) and is "
                             "the default's setting since, with its own imaging-400 threshold 0.5977. The report "
                             "categories, scored once afterwards, are in 'Zero-shot AnomalyVFM v6 with four test "
                             "views'. 224 px, 2-core AMD EPYC, 2 torch threads, torch 2.14.1, deterministic; 26 min "
                             "for the three entries.",
                             "mkdir -p runs/v6-flips runs/v6-d4 && cp -r anomalyvfm/weights/anomalyvfm-vits14 "
                             "runs/v6-flips/model && cp -r anomalyvfm/weights/anomalyvfm-vits14 runs/v6-d4/model && "
                             "python -c \"from anomalyvfm.checkpoint import update_config as u; "
                             "u('runs/v6-flips/model', test_views='flips'); u('runs/v6-d4/model', test_views='d4')\" "
                             "&& python benchmarks/checkpoint_selection.py --models runs/v6-flips/model "
                             "runs/v6-d4/model --compare anomalyvfm/weights/anomalyvfm-vits14 --out "
                             "benchmarks/results/views-selection  # the compared entry is the mirror default of the "
                             "time: set test_views='mirror' and threshold=0.6212 on it first")
            + _table_section("default-threshold-v6-mirror/table.md", "Default threshold of v6 with mirror averaging",
                             "As 'Default threshold of the zero-shot checkpoint', for the default before four views "
                             "(v6 with `test_views` \"mirror\"; scores from zeroshot-224-v6-flip).",
                             "python benchmarks/default_threshold.py --model runs/v6-flip/model --results "
                             "benchmarks/results/zeroshot-224-v6-flip --out benchmarks/results/default-threshold-v6-mirror")
            + _table_section("flip-selection/table.md", "Test-time mirror averaging (`flip_average`), no training",
                             "Declared before scoring: v6 with `flip_average` on (since renamed: `test_views` \"mirror\"; `AnomalyVFM.infer` averages the "
                             "logits of each image and its left-right mirror, the mirror's maps flipped back; twice "
                             "the cost of a forward pass), a copy of the default checkpoint with that one config "
                             "field changed (runs/v6-flip/model), through the same selection against v6 (its entry "
                             "copied from v8-selection: same weights, pairs and data); if it won it would become the "
                             "default checkpoint's setting. Every validation AUROC rises (validation score 88.6 vs "
                             "87.7; magnetic_tile image AUROC 79.5 vs 77.8, AUPRO 77.3 vs 74.3), but its own "
                             "synthetic threshold comes out lower (0.5833 vs 0.6109: averaging narrows the normals' "
                             "scores) and flags 20.5% of good magnetic_tile parts against 14.7%, 5.8 points more: "
                             "over the 5-point veto with these thresholds from clean normals, so it was not made the "
                             "default then. With the threshold protocol chosen afterwards ('Which synthetic normals "
                             "set the default threshold' above) it passes (11.1% vs 6.8%), and it is the default's "
                             "setting since (`model.config.test_views = \"single\"` for a single pass; v6 as it was is "
                             "loadable as `anomalyvfm-vits14-v6`). The report categories, scored once afterwards, are "
                             "in 'Zero-shot AnomalyVFM v6 with mirror averaging'. 224 px, 2-core CPU, deterministic.",
                             "mkdir -p runs/v6-flip && cp -r anomalyvfm/weights/anomalyvfm-vits14 runs/v6-flip/model && python -c \"from "
                             "anomalyvfm.checkpoint import update_config; update_config('runs/v6-flip/model', "
                             "test_views='mirror')\" && python benchmarks/checkpoint_selection.py --clean-normals --models "
                             "runs/v6-flip/model --compare anomalyvfm/weights/anomalyvfm-vits14 --out "
                             "benchmarks/results/flip-selection")
            + _table_section("default-threshold-v2/table.md", "Default threshold of v2",
                             "As 'Default threshold of the zero-shot checkpoint' below, for v2 (the default before "
                             "v6).", "python benchmarks/default_threshold.py --model anomalyvfm/weights/anomalyvfm-vits14-v2 "
                             "--results benchmarks/results/zeroshot-224-v2 --out benchmarks/results/default-threshold-v2")
            + _table_section("default-threshold-v3/table.md", "Default threshold of the v3 candidate",
                             "As 'Default threshold' below, for the v3 candidate: the 99th percentile of its scores "
                             "on 400 synthetic good images (seed 101), and the rates it gives on the test splits.",
                             "python benchmarks/default_threshold.py --model runs/anomalyvfm-vits14-v3/final "
                             "--results benchmarks/results/zeroshot-224-v3 --out "
                             "benchmarks/results/default-threshold-v3")
            + _table_section("self-similarity/table.md", "Self-similarity image score: chosen on validation, lost on "
                             "the report categories",
                             "A training-free single-image score (`anomalyvfm.self_similarity`: each patch's mean "
                             "distance to its 5% closest patches of the same image, MuSc's aggregation, 224 px, "
                             "tiled as `predict` tiles) and its fusion with the image head (`cls+self`: z-scores "
                             "over 400 generator normals, seed 101). Variant and weight were chosen on the "
                             "validation split only (150 held-out synthetic pairs, seed 999, and magnetic_tile), "
                             "where the fusion gained 2.4 points (82.1 → 84.5) and 6.2 on magnetic_tile. The report "
                             "categories, scored once afterwards, reject it: on elpv/mono the self score is inverted "
                             "(21.6; a defective cell's dark cracked area repeats within the cell, while a good "
                             "cell's few unique details stand out), which takes `cls+self` to 32.5 there. It is "
                             "therefore not the default rule (`cls` stays); `self` and `cls+self` are opt-in rules "
                             "(`image_score`), with their scale measured for the shipped checkpoint. Deciding not "
                             "to ship used the report split, which is said here. Deterministic (no seeds beyond "
                             "the generator's); AMD EPYC, 2 cores, 2 torch threads, torch 2.14.1, no GPU. The rule "
                             "adds 1-9% to a forward pass of 8 images at 224 px over three runs of `python "
                             "benchmarks/self_similarity.py --cost`, which is why it is computed only for a model "
                             "whose rule uses it.",
                             "python benchmarks/self_similarity.py --report --apply "
                             "anomalyvfm/weights/anomalyvfm-vits14")
            + _table_section("inference-resolution/table.md", "Zero-shot input resolution: chosen on validation, "
                             "lost on the report categories",
                             "The default checkpoint (trained at 224 px) scored at 224, 336 and 448 px. Rule declared "
                             "before the first run: mean of image (`cls`) and pixel AUROC on both validation halves "
                             "(150 held-out synthetic pairs, seed 999, drawn at 448 px; magnetic_tile), a new default "
                             "must win by 0.5 points and flag at most 5 points more good magnetic_tile images at its "
                             "own synthetic threshold (99th percentile of 400 generator normals, seed 101, drawn at "
                             "448 px). 448 px won validation (86.1 vs 84.2; magnetic_tile I-AUROC 75.2 vs 72.5, "
                             "AUPRO 75.4 vs 66.7). The report categories, scored once afterwards, reject it: elpv/mono "
                             "84.1 → 75.5 and poly 66.4 → 55.8 (deeppcb 51.6 → 55.4), report mean 67.4 → 62.4, so "
                             "the default stays 224 px (`mode=\"fast\"`); `--mode accurate` stays an option. The "
                             "threshold column shows how much the threshold depends on the normals' drawing size: "
                             "at 224 px with normals drawn at 448 it is 0.538 (64% FPR on magnetic_tile), with the "
                             "shipped protocol's normals drawn at 224 it is 0.6586 (27.4%). Deterministic; AMD EPYC, "
                             "2 cores, 2 torch threads, torch 2.14.1, no GPU; about 35 min. The synthetic half was "
                             "drawn by the generator before the bend-label fix (the run had imported it), so a "
                             "re-run gives slightly different synthetic figures.",
                             "python benchmarks/inference_resolution.py --report")
            + _table_section("region-overlap/overlap.md", "Do flagged images' regions point at the defect?",
                             "Defective test images with masks (magnetic_tile and deeppcb; elpv has none): of those "
                             "flagged, how many have their first listed region overlapping the true mask when the "
                             "regions are listed largest first (area), strongest first (peak map value) or by mass "
                             "(the map summed over the region), and how many have any region, or the map's top 1%, "
                             "overlapping it; overlap is counted per connected component of the verdict's mask. "
                             "Declared before scoring (commit 11bc325): the order whose first region overlaps most "
                             "often on magnetic_tile, the validation category, in the zero-shot row becomes the "
                             "package's if it beats largest first by at least 2 points. Strongest first won there "
                             "(85.9% vs 67.9%) and is now the order of `anomalyvfm.regions`, results.jsonl and the "
                             "report. deeppcb, scored in the same run and read after the choice, does not confirm it: "
                             "largest first 96.6% vs strongest first 86.2% (56 vs 50 of 58 flagged images; DeepPCB "
                             "masks mark several defects per board, so a large region meets one of them more easily). "
                             "Over the 292 flagged images of both categories strongest first is 86.0%, largest first "
                             "73.6%. Zero-shot: the shipped default at its default threshold; profile: k = 4, seed 0, "
                             "calibrated threshold. 224 px, deterministic, 2-core CPU.",
                             "python benchmarks/region_overlap.py"))


def main() -> int:
    out = ["# Benchmarks", "",
           "Generated by `python benchmarks/make_benchmarks_md.py` from the JSON under `benchmarks/results/`; "
           "do not edit by hand. All numbers are percentages (image/pixel AUROC, AP, F1-max, AUPRO up to FPR 0.3, "
           "normalised), mean ± std over the seeds that draw the k good reference images from `train/good`. "
           "`elpv` has image labels only, so its pixel metrics are empty. The data are the real data sets in "
           "`../shared/data` (see its README).", ""]
    for folder, title, text in SECTIONS:
        path = RESULTS / folder / "results.json"
        if not path.is_file():
            continue
        payload = json.loads(path.read_text())
        out += [f"## {title}", "", text, "", _setup(payload), "", summary_markdown(payload["rows"])]
        if folder in ("zeroshot-224", "zeroshot-224-v2", "zeroshot-224-v3"):
            out += ["Per category, zero-shot vs kNN (I-AUROC under each image-score rule):", "",
                    comparison_table(payload["rows"])]
        if folder == "knn-224-check":
            independent = RESULTS / folder / "independent.json"
            rows = json.loads(independent.read_text())["rows"] if independent.is_file() else []
            out += ["Agreement with the independent check (`python benchmarks/knn_check.py`: the same recipe "
                    "re-implemented with PIL resizing and scikit-learn neighbours/AUROC, on the references the "
                    "harness drew) and with the issue's reference figures (drawn with other seeds):", "",
                    _check_table(payload["rows"], rows)]
        out += ["Re-run:", "", "```bash", _command(payload["config"]), "```", ""]
    speed = RESULTS / "train_speed.md"
    if speed.is_file():
        out += ["## Training step cost", "", "Seconds per optimiser step (forward, backward, AdamW, synthetic batch "
                "generation included), which sized the default training run and the ablation budget:", "",
                speed.read_text().strip(), "", "Re-run: `python benchmarks/train_speed.py --steps 3 > "
                "benchmarks/results/train_speed.md`.", ""]
    out += _v2_sections()
    out += batch_sections()
    out += fewshot_v6_section() + fewshot_section()
    finetune_speed = RESULTS / "finetune_speed.md"
    if finetune_speed.is_file():
        out += ["## Few-shot fine-tuning time", "", "Wall time of a whole `anomalyvfm finetune` (fine-tuning with early "
                "stopping, memory, fusion weight, calibration, saving the profile) on magnetic_tile good images; the "
                "budget is k = 4 in fast mode within 5 minutes on this 2-core CPU:", "",
                finetune_speed.read_text().strip(), "", "Re-run: `python benchmarks/finetune_speed.py --shots 1,4,8 > "
                "benchmarks/results/finetune_speed.md`.", ""]
    out += study_section(
        "calibration-study-v6", "v6",
        "As on v1, below 4 images no rule gets near the target (the rule in use: 15.2% of good test images flagged "
        "at k = 1, 10.2% at k = 2): one or two images do not show how much good parts differ. From 4 images the "
        "rule with the image of each view holds 2.1% (0.7-5.7% per category); at 8 it flags almost nothing, good or "
        "defective (FPR 0.2%, recall 0.8%): the bound over eight images' means is cautious. Measured with float64 "
        "scores and logit deviations (after the fix of the few-shot note above).",
        "python benchmarks/calibration_study.py --seeds 0 --model anomalyvfm-vits14-v6 --out "
        "benchmarks/results/calibration-study-v6 && python benchmarks/calibration_study.py --report --model "
        "anomalyvfm-vits14-v6 --out benchmarks/results/calibration-study-v6")
    out += candidate_rules_section()
    out += memory_stats_section()
    out += calibration_section("calibration-holdout-v6", "v6", HOLDOUT_V6_CLOSING,
                               "--model anomalyvfm-vits14-v6 --out benchmarks/results/calibration-holdout-v6")
    out += study_section()
    out += calibration_section()
    out += mixed_section()
    speed = RESULTS / "speed.md"
    if speed.is_file():
        out += ["## Inference speed: eager vs ONNX", "", "Images/s of the raw backbone, of `predict` in a single pass "
                "and with the default's four test views (four passes), and of `predict --backend onnx` (onnxruntime) on "
                "the float32 export and on `export --quantize int8` of the default (the views are traced into "
                "the graph), batch 8, 640×640 DeepPCB images, in one run. The ONNX graph with four passes runs at "
                "about half a single eager pass; why onnxruntime gains 1.95-1.98× here is not established (a "
                "single-pass run before test views measured ONNX at 1.03-1.07× eager). A short test run shared the "
                "CPU for part of this run (its single pass, 11.41 img/s at 224 px, was 12.19 in the previous run).", "", speed.read_text().strip(), "",
                "Re-run: `python benchmarks/speed.py > benchmarks/results/speed.md`.", ""]
    out += onnx_accuracy_section()
    out += golden_section()
    out += tiling_section()
    out += ablation_v3_section()
    out += ablation_section()
    out += [WINCLIP_SECTION]
    text = "\n".join(out).split("\n")  # a script's "# setup" line inside a section is not a Markdown heading
    text = text[:1] + [f"Setup: {line[2:]}\n" if line.startswith("# ") else line for line in text[1:]]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(text))
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
