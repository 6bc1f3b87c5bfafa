"""Zero-shot input resolution: does the default checkpoint (trained at 224 px) score better at 336 or 448 px?
Chosen on the validation split only.

    python benchmarks/inference_resolution.py                # validation: 224, 336, 448
    python benchmarks/inference_resolution.py --report       # + the report categories, at 224 and the chosen one

Validation: the generator's 150 held-out pairs (seed 999, drawn at 448 px so that a finer input has detail to see;
each resolution resizes them) and magnetic_tile. Report: deeppcb/pcb, elpv/mono, elpv/poly, scored only with
``--report``, after the choice, and never read by it.

Selection rule, declared before the first run: validation score = mean of the image AUROC (the checkpoint's own
rule) and the pixel AUROC on both validation halves (as ``checkpoint_selection.py``). A resolution replaces 224 as
the default only if (a) it scores at least 0.5 points higher and (b) at its own synthetic threshold (99th percentile
of 400 generator normals, seed 101, drawn at 448 px and scored at that resolution) it flags at most 5 points more
good magnetic_tile images than 224 does at its threshold (the verdict must not get worse to buy AUROC).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from checkpoint_selection import FPR_SLACK, MARGIN, validation_score  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "inference-resolution"
VALIDATION = ("magnetic_tile/magnetic_tile",)
REPORT = ("deeppcb/pcb", "elpv/mono", "elpv/poly")
SIZE = 448  # the generator's drawing size for the synthetic pairs and normals


def synthetic(model, model_dir: str | None, resolution: int) -> dict:
    """Image AUROC per rule and pixel AUROC on the held-out pairs; the threshold from the generator's normals."""
    from default_threshold import synthetic_threshold
    from synthetic_validation import pair_metrics, validation_pairs

    out = pair_metrics(model, validation_pairs(size=SIZE), resolution)
    out["threshold"], _ = synthetic_threshold(model_dir=model_dir, size=SIZE, resolution=resolution,
                                            imaging_seed=None)
    return out


def real(model_dir: str | None, data: str, resolution: int, keys: tuple[str, ...], threshold: float) -> dict:
    """Harness metrics per category at ``resolution``, and the FPR and recall at ``threshold``."""
    from anomalyvfm.benchmark import BenchmarkConfig, config_dict, run_benchmark
    from anomalyvfm.report import write_reports
    from default_threshold import test_rates

    bench = BenchmarkConfig(data=data, out=str(OUT / f"harness-{resolution}"), methods=("anomalyvfm",),
                            model=model_dir, resolution=resolution, datasets=keys)
    parts = run_benchmark(bench)
    write_reports(parts, Path(bench.out), config_dict(bench), bench.warnings)
    rates = test_rates(threshold, bench.out)
    out = {}
    for p in parts:
        key = f"{p['row']['dataset']}/{p['row']['category']}"
        out[key] = {**{k: p["row"].get(k, float("nan")) for k in ("I-AUROC", "I-AUROC[cls]", "I-AUROC[topk]",
                                                                   "I-AUROC[fused]", "P-AUROC", "AUPRO@0.3")},
                    **rates[key]}
    return out


def choose(results: dict, rule: str) -> tuple[int, list[str]]:
    base = results["224"]
    best, lines = 224, []
    for res, r in results.items():
        score, fpr = validation_score(r, rule), r["validation"][VALIDATION[0]]["FPR"]
        ok = (score >= validation_score(base, rule) + MARGIN
              and fpr <= base["validation"][VALIDATION[0]]["FPR"] + FPR_SLACK)
        lines.append(f"{res} px: validation score {100 * score:.1f}, magnetic_tile FPR {100 * fpr:.1f}%"
                     + ("" if res == "224" else f" -> {'passes' if ok else 'fails'} the rule"))
        if ok and score > validation_score(results[str(best)], rule):
            best = int(res)
    return best, lines


def table(results: dict, split: str, keys: tuple[str, ...], rule: str) -> list[str]:
    lines = [f"| resolution | category | I-AUROC[{rule}] | I-AUROC[topk] | I-AUROC[fused] | P-AUROC | AUPRO@0.3 | "
             "FPR @ synthetic threshold | recall @ it |", "|---|---|---|---|---|---|---|---|---|"]
    pct = (lambda v: "–" if v != v else f"{100 * v:.1f}")  # noqa: E731
    for res, r in results.items():
        for key in keys:
            if key in r.get(split, {}):
                v = r[split][key]
                lines.append(f"| {res} | {key} | {pct(v[f'I-AUROC[{rule}]'])} | {pct(v['I-AUROC[topk]'])} | "
                             f"{pct(v['I-AUROC[fused]'])} | {pct(v['P-AUROC'])} | {pct(v['AUPRO@0.3'])} | "
                             f"{pct(v['FPR'])}% | {pct(v['recall'])}% |")
    return lines


def main() -> int:
    from anomalyvfm.model import load_default

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--resolutions", default="224,336,448")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--report", action="store_true", help="also score the report categories (after the choice)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    model = load_default(args.model)
    rule = model.config.image_score
    path = OUT / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for res in [int(r) for r in args.resolutions.split(",")]:
        r = results.setdefault(str(res), {})
        if "synthetic" not in r:
            r["synthetic"] = synthetic(model, args.model, res)
        if "validation" not in r:
            r["validation"] = real(args.model, args.data, res, VALIDATION, r["synthetic"]["threshold"])
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1))
    best, lines = choose(results, rule)
    if args.report:
        for res in sorted({224, best}):
            r = results[str(res)]
            if "report" not in r:
                r["report"] = real(args.model, args.data, res, REPORT, r["synthetic"]["threshold"])
                path.write_text(json.dumps(results, indent=1))
    pct = (lambda v: f"{100 * v:.1f}")  # noqa: E731
    md = ["Validation (chose the resolution):", "",
          "| resolution | synthetic I-AUROC | synthetic P-AUROC | synthetic threshold |", "|---|---|---|---|"]
    md += [f"| {res} | {pct(r['synthetic'][f'I-AUROC[{rule}]'])} | {pct(r['synthetic']['P-AUROC'])} | "
           f"{r['synthetic']['threshold']:.4f} |" for res, r in results.items()]
    md += [""] + table(results, "validation", VALIDATION, rule) + [""] + [f"- {line}" for line in lines]
    md += ["", f"Chosen on validation: {best} px."]
    if any("report" in r for r in results.values()):
        md += ["", "Report (scored once, after the choice):", ""] + table(results, "report", REPORT, rule)
    (OUT / "table.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
