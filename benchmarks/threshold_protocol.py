"""Which synthetic normals should set a checkpoint's default threshold? A study across the existing checkpoints,
on the validation split only (magnetic_tile's stored harness scores); the report categories choose nothing.

    python benchmarks/threshold_protocol.py            # -> benchmarks/results/threshold-protocol/

Why: since v6 every candidate has failed the checkpoint-selection veto (FPR on good magnetic_tile parts at its own
synthetic threshold, at most 5 points over the default's), while the same checkpoints' image AUROCs moved by a point or
two. The shipped protocol takes the 99th percentile of 400 clean generator normals (seed 101), i.e. the 4th-highest
score, and real good parts sit close to it, so small shifts of that one order statistic swing the FPR by tens of points.

Declared before any score of this study was computed (protocols, checkpoints and criterion):

- Protocols, all at a nominal 1% of synthetic normals, each normal drawn at the model's own resolution and scored there:
  - ``clean-400``: the shipped one, 99th percentile of the first 400 clean normals (seed 101);
  - ``clean-1200``: 99th percentile of 1200 clean normals (seed 101; its first 400 are clean-400's);
  - ``imaging-400``: 99th percentile of the first 400 normals each seen through one draw of imaging conditions
    (uneven light, exposure, sensor noise, blur, ... as training's ``imaging_fraction``; draws from seed 102);
  - ``mixed-800``: 99th percentile of the union of clean-400 and imaging-400.
- Checkpoints: every candidate of the selections since v6 whose magnetic_tile scores come from the current code
  (the v6, v7, v8, v9, v10 and flip selections: v2, v6 steps 500/750/1000, v7 steps 2000/2500/3000, v8 steps
  250/500/750, the two soups, v10-448 steps 250/500/750 at 448 px, v6 with ``flip_average``): 16 checkpoints.
- Criterion: the protocol under which the most checkpoints flag at most 10% of good magnetic_tile parts (the default
  threshold's target, ``default_threshold.TARGET``); ties go to the higher mean recall on magnetic_tile's defective
  parts. Consistency check: clean-400 must reproduce the thresholds the selections stored.
- Consequence, declared too: if another protocol wins, it replaces clean-400 in ``default_threshold``,
  ``checkpoint_selection``'s veto and ``training.ship``, and the veto is re-applied to the candidates above with
  their validation scores unchanged.

For the record only (chose nothing): the default checkpoint's FPR and recall on the report categories under each
protocol, from its zero-shot harness run.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from default_threshold import TARGET, part_rates, test_rates  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "threshold-protocol"
RESULTS = ROOT / "benchmarks" / "results"
PROTOCOLS = ("clean-400", "clean-1200", "imaging-400", "mixed-800")
# name -> (checkpoint folder, the selection harness folder holding its magnetic_tile scores, stored threshold)
CHECKPOINTS = {
    "v2": ("anomalyvfm/weights/anomalyvfm-vits14-v2", "v6-selection/anomalyvfm_weights_anomalyvfm-vits14",
           ("v6", "anomalyvfm/weights/anomalyvfm-vits14")),
    **{f"v6 step {s}": (f"runs/anomalyvfm-vits14-v6-imaging/checkpoints/step_{s:07d}/model",
                        f"v6-selection/anomalyvfm-vits14-v6-imaging_step_{s}",
                        ("v6", f"anomalyvfm-vits14-v6-imaging step {s}")) for s in (500, 750, 1000)},
    **{f"v7 step {s}": (f"runs/anomalyvfm-vits14-v7-scratch/checkpoints/step_{s:07d}/model",
                        f"v7-selection/anomalyvfm-vits14-v7-scratch_step_{s}",
                        ("v7", f"anomalyvfm-vits14-v7-scratch step {s}")) for s in (2000, 2500, 3000)},
    **{f"v8 step {s}": (f"runs/anomalyvfm-vits14-v8-imaging-all/checkpoints/step_{s:07d}/model",
                        f"v8-selection/anomalyvfm-vits14-v8-imaging-all_step_{s}",
                        ("v8", f"anomalyvfm-vits14-v8-imaging-all step {s}")) for s in (250, 500, 750)},
    **{f"v9 soup {k}": (f"runs/anomalyvfm-vits14-v9-soup/{k}", f"v9-selection/runs_anomalyvfm-vits14-v9-soup_{k}",
                        ("v9", f"runs/anomalyvfm-vits14-v9-soup/{k}")) for k in ("trajectory", "runs")},
    **{f"v10 step {s}": (f"runs/anomalyvfm-vits14-v10-448/checkpoints/step_{s:07d}/model",
                         f"v10-selection/anomalyvfm-vits14-v10-448_step_{s}",
                         ("v10", f"anomalyvfm-vits14-v10-448 step {s}")) for s in (250, 500, 750)},
    "v6 + flip_average": ("runs/v6-flip/model", "flip-selection/runs_v6-flip_model", ("flip", "runs/v6-flip/model")),
}
# each selection since v6: the checkpoint it compared with (its summary's "anomalyvfm/weights/anomalyvfm-vits14") and
# its candidates
SELECTIONS = {"v6": ("v2", ["v6 step 500", "v6 step 750", "v6 step 1000"]),
              "v7": ("v6 step 750", ["v7 step 2000", "v7 step 2500", "v7 step 3000"]),
              "v8": ("v6 step 750", ["v8 step 250", "v8 step 500", "v8 step 750"]),
              "v9": ("v6 step 750", ["v9 soup trajectory", "v9 soup runs"]),
              "v10": ("v6 step 750", ["v10 step 250", "v10 step 500", "v10 step 750"]),
              "flip": ("v6 step 750", ["v6 + flip_average"])}
DEFAULT = "v6 step 750"  # the shipped default (anomalyvfm/weights/anomalyvfm-vits14, byte-identical weights)
REPORT = "zeroshot-224-v6"  # the default's zero-shot harness run on every ../shared/data category


def normals(size: int, n_clean: int = 1200, n_imaging: int = 400) -> dict[str, list[np.ndarray]]:
    """The study's synthetic normals at ``size`` px: clean (seed 101) and the first ``n_imaging`` of them seen through
    imaging conditions (draws from seed 102)."""
    from anomalyvfm.synth import SynthConfig
    from anomalyvfm.synth.generator import normals as draw

    cfg = SynthConfig(size=size)
    return {"clean": draw(n_clean, 101, cfg), "imaging": draw(n_imaging, 101, cfg, imaging_seed=102)}


def thresholds(scores: dict[str, list[float]]) -> dict[str, float]:
    """Each protocol's threshold from one checkpoint's normal scores."""
    clean, seen = np.asarray(scores["clean"]), np.asarray(scores["imaging"])
    return {"clean-400": float(np.quantile(clean[:400], 0.99)), "clean-1200": float(np.quantile(clean, 0.99)),
            "imaging-400": float(np.quantile(seen, 0.99)),
            "mixed-800": float(np.quantile(np.concatenate([clean[:400], seen]), 0.99))}


def score_checkpoint(model_dir: str, cache: dict) -> dict[str, list[float]]:
    from anomalyvfm.config import resolution_for
    from anomalyvfm.model import load_default

    model = load_default(str(ROOT / model_dir))
    own = resolution_for(default_mode=model.config.mode)
    if own not in cache:
        cache[own] = normals(own)
    return {kind: [p.score for p in model.predict(images, batch_size=8, resolution=own)]
            for kind, images in cache[own].items()} | {"resolution": own}


def reapplied_veto(table: dict, protocol: str) -> list[dict]:
    """Each selection's decision again with every threshold from ``protocol``: its validation scores as stored, the
    veto (at most ``checkpoint_selection.FPR_SLACK`` more good magnetic_tile parts flagged than the compared checkpoint) and the margin."""
    from checkpoint_selection import decide

    rows = []
    for selection, (compared, candidates) in SELECTIONS.items():
        summary = json.loads((RESULTS / f"{selection}-selection" / "summary.json").read_text())
        base_fpr = table[compared][protocol]["FPR"]
        base_score = summary["anomalyvfm/weights/anomalyvfm-vits14"]["validation_score"]
        entries = {c: {"score": summary[CHECKPOINTS[c][2][1]]["validation_score"], "FPR": table[c][protocol]["FPR"]}
                   for c in candidates}
        eligible, best, wins = decide({c: (e["score"], e["FPR"]) for c, e in entries.items()}, base_score,
                                      base_fpr)
        winner = best if wins else None
        rows.append({"selection": selection, "compared": compared, "compared_score": base_score,
                     "compared_FPR": base_fpr, "candidates": entries, "eligible": eligible, "winner": winner})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    (args.out / "scores").mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    table = {}
    for name, (model_dir, harness, (selection, entry)) in CHECKPOINTS.items():
        path = args.out / "scores" / (name.replace(" ", "_").replace("+", "plus") + ".json")
        if not path.is_file():  # resumable: one file per checkpoint, written whole
            print(f"scoring normals with {name} ...", flush=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(score_checkpoint(model_dir, cache)))
            tmp.replace(path)
        scores = json.loads(path.read_text())
        stored = json.loads((RESULTS / f"{selection}-selection" / "summary.json").read_text())[entry]["threshold"]
        part = next((RESULTS / harness / "parts").glob("magnetic_tile__*.json"))
        ts = thresholds(scores)
        table[name] = {"resolution": scores["resolution"], "stored_threshold": stored,
                       **{p: {"threshold": t, **part_rates(t, part)} for p, t in ts.items()}}
    check = {n: abs(r["clean-400"]["threshold"] - r["stored_threshold"]) for n, r in table.items()}
    summary = {}
    for p in PROTOCOLS:
        fprs = [r[p]["FPR"] for r in table.values()]
        summary[p] = {"meets_target": int(sum(f <= TARGET for f in fprs)), "mean_FPR": float(np.mean(fprs)),
                      "median_FPR": float(np.median(fprs)),
                      "mean_recall": float(np.mean([r[p]["recall"] for r in table.values()]))}
    chosen = max(PROTOCOLS, key=lambda p: (summary[p]["meets_target"], summary[p]["mean_recall"]))
    per_protocol = {p: test_rates(table[DEFAULT][p]["threshold"], str((RESULTS / REPORT).relative_to(ROOT)))
                    for p in PROTOCOLS}
    report = {cat: {p: per_protocol[p][cat] for p in PROTOCOLS} for cat in per_protocol[PROTOCOLS[0]]}
    veto = reapplied_veto(table, chosen)
    result = {"checkpoints": table, "summary": summary, "chosen": chosen, "target_fpr": TARGET, "reapplied_veto": veto,
              "max_abs_diff_to_stored_clean_400": max(check.values()), "default_report": report}
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    lines = ["| checkpoint | px | " + " | ".join(f"{p} threshold / FPR / recall" for p in PROTOCOLS) + " |",
             "|---|---|" + "---|" * len(PROTOCOLS)]
    for name, r in table.items():
        lines.append(f"| {name} | {r['resolution']} | " + " | ".join(
            f"{r[p]['threshold']:.4f} / {100 * r[p]['FPR']:.1f}% / {100 * r[p]['recall']:.1f}%" for p in PROTOCOLS)
            + " |")
    lines += ["", "| protocol | checkpoints at FPR <= 10% | mean FPR | median FPR | mean recall |",
              "|---|---|---|---|---|"]
    for p, s in summary.items():
        mark = " **(chosen)**" if p == chosen else ""
        lines.append(f"| {p}{mark} | {s['meets_target']} of {len(table)} | {100 * s['mean_FPR']:.1f}% | "
                     f"{100 * s['median_FPR']:.1f}% | {100 * s['mean_recall']:.1f}% |")
    lines += ["", f"Largest difference between clean-400 and the thresholds the selections stored: "
              f"{result['max_abs_diff_to_stored_clean_400']:.2g}.", "",
              f"The default ({DEFAULT}) on every category of its harness run (FPR / recall; report categories chose "
              "nothing):", "", "| category | " + " | ".join(PROTOCOLS) + " |", "|---|" + "---|" * len(PROTOCOLS)]
    for cat, r in report.items():
        lines.append(f"| {cat} | " + " | ".join(
            f"{100 * r[p]['FPR']:.1f}% / {100 * r[p]['recall']:.1f}%" for p in PROTOCOLS) + " |")
    lines += ["", f"Each selection since v6 again, every threshold from {chosen} (validation scores as stored; veto: "
              "at most 5 points more good magnetic_tile parts flagged than the compared checkpoint; margin 0.5):", "",
              "| selection | compared: score / FPR | candidate: score / FPR | eligible | replaces the compared |",
              "|---|---|---|---|---|"]
    for row in veto:
        for c, e in row["candidates"].items():
            lines.append(f"| {row['selection']} | {row['compared']}: {100 * row['compared_score']:.1f} / "
                         f"{100 * row['compared_FPR']:.1f}% | {c}: {100 * e['score']:.1f} / {100 * e['FPR']:.1f}% | "
                         f"{'yes' if c in row['eligible'] else 'no'} | {'**yes**' if c == row['winner'] else 'no'} |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
