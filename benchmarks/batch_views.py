"""Batch mode through the model's test views: a study declared before any scoring.

Batch mode (``predict --batch-mode mutual``, the harness's ``anomalyvfm-batch``) fuses mutual scoring of the batch
with the model's own score. It took the model's score from one pass, while single-image ``predict`` averages the
checkpoint's four test views (``test_views`` "flips"), which raised the model's image AUROC on every category.

- **Candidate:** the model's score and map in batch mode from the checkpoint's configured views, as ``predict``
  scores them (``AnomalyVFM.outputs``); mutual scoring unchanged (the tokens of the image itself), fusion constants
  unchanged (the checkpoint's ``batch_fusion``).
- **Baseline:** the same code on a copy of the default with ``test_views`` "single": exactly the former batch mode.
- **Validation (chooses):** magnetic_tile's whole test split as one batch, 224 px.
- **Adoption rule:** fused image AUROC at least 0.5 points higher than the baseline's, and the share of good parts
  flagged at the batch's own threshold at most 2 points higher.
- **Report:** deeppcb/pcb, elpv/mono, elpv/poly, scored once after the choice, both arms, for the record.
- **Cost:** four passes of the model instead of one, the mutual step unchanged; measured in the same runs.

    python benchmarks/batch_views.py            # validation, both arms
    python benchmarks/batch_views.py --report   # the report categories, once the choice is made
    python benchmarks/batch_views.py --table    # the Markdown table from what was run
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "batch-views"
VALIDATION = ("magnetic_tile/magnetic_tile",)
REPORT = ("deeppcb/pcb", "elpv")
ARMS = ("single", "flips")


def _model(arm: str) -> Path:
    """A copy of the shipped default with ``test_views`` set to ``arm`` (runs/ is not committed)."""
    from anomalyvfm.checkpoint import update_config

    folder = ROOT / "runs" / f"batch-views-{arm}"
    if not folder.is_dir():
        shutil.copytree(ROOT / "anomalyvfm" / "weights" / "anomalyvfm-vits14", folder)
        update_config(folder, test_views=arm)
    return folder


def run(datasets: tuple[str, ...], split: str, data: str) -> None:
    for arm in ARMS:
        out = OUT / f"{split}-{arm}"
        subprocess.run([sys.executable, "-m", "anomalyvfm.cli", "benchmark", "--data", data, "--datasets", *datasets,
                        "--methods", "anomalyvfm-batch", "--model", str(_model(arm)), "--resolution", "224",
                        "--out", str(out)], check=True, cwd=ROOT)


def table() -> str:
    lines = ["| split | category | arm | model I-AUROC | mutual I-AUROC | fused I-AUROC | fused P-AUROC | "
             "fused AUPRO@0.3 | batch FPR / recall | img/s |", "|" + "---|" * 10]
    for split in ("validation", "report"):
        for arm in ARMS:
            path = OUT / f"{split}-{arm}" / "results.json"
            if not path.is_file():
                continue
            for r in sorted(json.loads(path.read_text())["rows"], key=lambda r: (r["dataset"], r["category"])):
                def pct(key: str) -> str:
                    v = r.get(key)
                    return "–" if v is None or v != v else f"{100 * v:.1f}"

                lines.append(f"| {split} | {r['dataset']}/{r['category']} | {arm} | {pct('I-AUROC[model]')} | "
                             f"{pct('I-AUROC[mutual]')} | {pct('I-AUROC')} | {pct('P-AUROC')} | {pct('AUPRO@0.3')} | "
                             f"{pct('FPR@thr')} / {pct('recall@thr')} | {r['img/s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--report", action="store_true", help="score the report categories (after the choice)")
    parser.add_argument("--table", action="store_true", help="write table.md from what was run")
    args = parser.parse_args()
    if args.table:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "table.md").write_text(table() + "\n")
        print(table())
        return
    run(REPORT if args.report else VALIDATION, "report" if args.report else "validation", args.data)
    print(table())


if __name__ == "__main__":
    main()
