"""How well the synthetic labels match what changed: per defect family, over N generated pairs (seed 3 by
default), the mean change inside the mask, the pairs whose mask marks an (almost) invisible change, and the pixels
that changed visibly outside the mask. Also writes a preview grid per defect family for a person to judge.
With ``--imaging-fraction`` that share of pairs is seen through imaging conditions (``anomalyvfm.synth.imaging``),
counted, and previewed in ``preview_imaging.png`` (the only grid such a run writes).

    python benchmarks/synth_labels.py [--n 400] [--seed 3] [--out benchmarks/results/synth-labels]
    python benchmarks/synth_labels.py --imaging-fraction 0.5 --out benchmarks/results/synth-labels-imaging
    python benchmarks/synth_labels.py --synth-from training/configs/v12-circuit.json --out benchmarks/results/synth-labels-v12

``--synth-from`` draws with a training config's generator settings (its opt-in families too; its `imaging_fraction`,
when it sets one, replaces `--imaging-fraction`).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from anomalyvfm.synth import SynthConfig, generate
from anomalyvfm.synth.generator import contact_sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/synth-labels")
    parser.add_argument("--imaging-fraction", type=float, default=0.0)
    parser.add_argument("--synth-from", type=Path, help="a training config: draw with its `synth` settings")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[tuple[float, int]]] = defaultdict(list)
    examples: dict[str, list[dict]] = defaultdict(list)
    families: dict[str, int] = defaultdict(int)
    conditions: dict[str, int] = defaultdict(int)
    seen = 0  # pairs seen through imaging conditions
    settings = json.loads(args.synth_from.read_text())["synth"] if args.synth_from else {}
    cfg = SynthConfig(**{"imaging_fraction": args.imaging_fraction, **settings})
    for s in tqdm(generate(args.n, seed=args.seed, cfg=cfg), total=args.n, desc="pairs"):
        mask = s["mask"] > 0
        diff = np.abs(s["bad"].astype(int) - s["good"].astype(int)).max(axis=2)
        rows[s["defect"]].append((float(diff[mask].mean()), int((diff[~mask] > 8).sum())))
        families[s["family"]] += 1
        if len(examples[s["defect"]]) < 8:
            examples[s["defect"]].append(s)
        seen += bool(s["imaging"])
        for condition in filter(None, s["imaging"].split("+")):
            conditions[condition] += 1
        if s["imaging"] and len(examples["imaging"]) < 16:
            examples["imaging"].append(s)
    table = ["| defect | pairs | median change in mask (grey levels) | mask change < 5 levels | pairs with >8-level "
             "changes outside the mask |", "|---|---|---|---|---|"]
    summary = {}
    for name in sorted(rows) + ["all"]:
        r = [x for v in rows.values() for x in v] if name == "all" else rows[name]
        inside = np.array([a for a, _ in r])
        outside = np.array([b for _, b in r])
        summary[name] = {"pairs": len(r), "median_change": float(np.median(inside)),
                         "invisible": int((inside < 5).sum()), "outside": int((outside > 0).sum())}
        table.append(f"| {name} | {len(r)} | {np.median(inside):.1f} | {(inside < 5).sum()} | {(outside > 0).sum()} |")
    (out / "summary.json").write_text(json.dumps({"n": args.n, "seed": args.seed, "defects": summary,
                                                  "normals": dict(families), "imaging_fraction": cfg.imaging_fraction,
                                                  "imaging_pairs": seen, "imaging": dict(conditions)}, indent=1))
    if cfg.imaging_fraction:
        table += ["", f"Pairs seen through imaging conditions: {seen} of {args.n}; per condition: " +
                  ", ".join(f"{k} {v}" for k, v in sorted(conditions.items()))]
    head = f"{args.n} pairs, seed {args.seed}, 224 px" + (f", imaging fraction {cfg.imaging_fraction}"
                                                           if cfg.imaging_fraction else "") + \
        (f", generator settings of {args.synth_from}" if args.synth_from else "")
    (out / "labels.md").write_text(head + "\n\n" + "\n".join(table) + "\n")
    print("\n".join(table))
    for name, samples in examples.items():  # rows: good / defective with the label outlined / label
        if cfg.imaging_fraction and not args.synth_from and name != "imaging":  # the plain run's grids
            continue
        Image.fromarray(contact_sheet(samples[:16], columns=8)).save(out / f"preview_{name}.png")


if __name__ == "__main__":
    main()
