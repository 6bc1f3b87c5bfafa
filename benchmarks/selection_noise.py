"""How much of a checkpoint selection's magnetic_tile figures is noise: a paired bootstrap over the validation
category's test images, from the per-image scores the selections already stored (no model is run).

    python benchmarks/selection_noise.py [--resamples 2000] [--seed 0] [--out benchmarks/results/selection-noise]

For every selection folder under benchmarks/results (``*-selection`` with a ``summary.json`` whose entries have
harness parts), each candidate is paired with the checkpoint it was compared against (as the selection's verdict
names it) on the same images. The images are resampled with replacement, good and defective apart (so each resample
keeps the category's counts; every pair sees the same resamples, drawn with --seed), and for each resample the
difference of image AUROC (candidate − compared, each under its own stored rule's scores) and of the share of good
images flagged at each one's own stored threshold is taken.
The table gives the observed difference and the 2.5-97.5 percentiles. It covers the magnetic_tile half of the
validation score only: the synthetic pairs' and pixel scores are not stored per image.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from checkpoint_selection import harness_folder

ROOT = Path(__file__).resolve().parents[1]
PART = "parts/magnetic_tile__magnetic_tile__anomalyvfm__k0__s0.json"


def auroc_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``scores`` (R, N) against ``labels`` (N,), ties counted half (Mann-Whitney)."""
    from scipy.stats import rankdata

    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    ranks = rankdata(scores, axis=1)[:, labels == 1].sum(1)
    return (ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def harness(folder: Path, name: str) -> Path:
    return harness_folder(folder, name) / PART


def compared(folder: Path) -> str:
    """The checkpoint a selection compared against, as its ``table.md`` verdict names it."""
    verdict = (folder / "table.md").read_text().strip().splitlines()[-1]
    return re.search(r"(?:than|beats?) (\S+?)(?::| by the)", verdict).group(1)


def load(folder: Path, name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    part = json.loads(harness(folder, name).read_text())
    return part["paths"], np.asarray(part["labels"]), np.asarray(part["scores"], dtype=np.float64)


def paired(base: tuple, cand: tuple, base_threshold: float, cand_threshold: float, resamples: int,
           rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
    """Observed difference and 95% interval of I-AUROC and good-image FPR (candidate − base), in points."""
    paths, labels, b = base
    cpaths, clabels, c = cand
    if paths != cpaths or not np.array_equal(labels, clabels):
        raise ValueError("the two harness runs did not score the same images in the same order")
    good, bad = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    idx = np.concatenate([rng.choice(good, (resamples, good.size)), rng.choice(bad, (resamples, bad.size))], 1)
    lab = labels[idx[0]]  # the same label layout in every resample
    d_auroc = auroc_rows(lab, c[idx]) - auroc_rows(lab, b[idx])
    g = idx[:, :good.size]
    # flagged = above the threshold, as default_threshold.part_rates
    d_fpr = (c[g] > cand_threshold).mean(1) - (b[g] > base_threshold).mean(1)
    obs_auroc = auroc_rows(labels, c[None])[0] - auroc_rows(labels, b[None])[0]
    obs_fpr = (c[good] > cand_threshold).mean() - (b[good] > base_threshold).mean()
    q = lambda d: tuple(100 * np.percentile(d, [2.5, 97.5]))  # noqa: E731
    return {"I-AUROC": (100 * obs_auroc, *q(d_auroc)), "FPR": (100 * obs_fpr, *q(d_fpr))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "selection-noise")
    args = parser.parse_args()
    rows = []
    for folder in sorted(args.results.glob("*-selection"), key=lambda p: (len(p.name), p.name)):
        summary = json.loads((folder / "summary.json").read_text())
        names = [n for n in summary if harness(folder, n).is_file() and "threshold" in summary[n]]
        ref = compared(folder)
        if ref not in names:
            continue
        base = load(folder, ref)
        for name in (n for n in names if n != ref):
            d = paired(base, load(folder, name), summary[ref]["threshold"], summary[name]["threshold"],
                       args.resamples, np.random.default_rng(args.seed))  # the same resamples for every pair
            rows.append({"selection": folder.name, "compared": ref, "candidate": name, **d})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))
    fmt = lambda v: f"{v[0]:+.1f} [{v[1]:+.1f}, {v[2]:+.1f}]"  # noqa: E731
    lines = ["| selection | compared | candidate | Δ magnetic_tile I-AUROC [95%] | Δ magnetic_tile FPR [95%] |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['selection']} | {r['compared']} | {r['candidate']} | {fmt(r['I-AUROC'])} | {fmt(r['FPR'])} |"
              for r in rows]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
