"""Benchmark reports: results.csv, summary.md (per dataset and overall means), results.json with the
environment, ROC curves and best/worst image grids as PNG."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from collections import defaultdict
from importlib import metadata
from pathlib import Path

import numpy as np

from .outputs import atomic_write_bytes

COLUMNS = ("dataset", "category", "method", "shots", "seed", "resolution", "I-AUROC", "I-AP", "I-F1max",
           "P-AUROC", "P-AP", "P-F1max", "AUPRO@0.3", "img/s")
METRICS = COLUMNS[6:13]


def collect_parts(folder: Path) -> list[dict]:
    """All finished runs (one JSON per category x method x shots x seed), sorted."""
    parts = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]
    return sorted(parts, key=lambda p: tuple(p["row"][k] for k in ("dataset", "category", "method", "shots",
                                                                      "seed")))


def environment() -> dict:
    import torch

    from .runinfo import cpu_name

    cpu = cpu_name()
    versions = {}
    for pkg in ("anomalyvfm", "torch", "transformers", "peft", "numpy", "scikit-learn", "opencv-python-headless"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform(), "packages": versions}


def _fmt(values: list[float], scale: float = 100.0) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    mean = float(np.mean(values)) * scale
    return f"{mean:.1f} ± {float(np.std(values)) * scale:.1f}" if len(values) > 1 else f"{mean:.1f}"


def summary_markdown(rows: list[dict], metrics: tuple[str, ...] = METRICS) -> str:
    """Mean ± std over seeds per category, then per-dataset and overall means of the per-category means."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["category"], r["method"], r["shots"])].append(r)
    lines = ["| dataset | category | method | k | res | " + " | ".join(metrics) + " | img/s |",
             "|---" * (len(metrics) + 6) + "|"]
    for (ds, cat, method, k), rs in sorted(groups.items()):
        cells = [_fmt([r[m] for r in rs]) for m in metrics]
        lines.append(f"| {ds} | {cat} | {method} | {k} | {rs[0]['resolution']} | " + " | ".join(cells)
                     + f" | {np.mean([r['img/s'] for r in rs]):.1f} |")
    per_cat = defaultdict(list)  # (method, k) -> per-category mean rows
    for (ds, cat, method, k), rs in groups.items():
        per_cat[(method, k)].append((ds, {m: np.nanmean([r[m] for r in rs]) if any(not math.isnan(r[m]) for r in rs)
                                          else float("nan") for m in metrics}))
    datasets = sorted({ds for ds, *_ in groups})
    lines += ["", "Mean over categories (each category first averaged over seeds):", "",
              "| method | k | " + " | ".join(f"{d} I-AUROC" for d in datasets) + " | mean I-AUROC | mean P-AUROC |"
              " mean AUPRO@0.3 |", "|---" * (len(datasets) + 5) + "|"]
    for (method, k), items in sorted(per_cat.items()):
        by_ds = [_fmt([v["I-AUROC"] for d, v in items if d == ds]) for ds in datasets]
        overall = [_fmt([v[m] for _, v in items]).split(" ±")[0] for m in ("I-AUROC", "P-AUROC", "AUPRO@0.3")]
        lines.append(f"| {method} | {k} | " + " | ".join(by_ds) + " | " + " | ".join(overall) + " |")
    return "\n".join(lines) + "\n"


def write_reports(parts: list[dict], out: Path, config: dict, warnings: list[str], wall_s: float | None = None) -> None:
    out = Path(out)
    rows = [p["row"] for p in parts]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]) for k in COLUMNS})
    atomic_write_bytes(out / "results.csv", buffer.getvalue().encode())
    atomic_write_bytes(out / "summary.md", summary_markdown(rows).encode())
    payload = {"config": config, "environment": environment(), "wall_s": wall_s, "warnings": warnings,
               "rows": rows}
    atomic_write_bytes(out / "results.json", json.dumps(payload, indent=1, default=str).encode())
    write_roc_curves(parts, out / "roc")


def write_roc_curves(parts: list[dict], folder: Path) -> None:
    """One PNG per category: the ROC curve of each method/k on its first seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    by_cat: dict[tuple, list[dict]] = defaultdict(list)
    for p in parts:
        by_cat[(p["row"]["dataset"], p["row"]["category"])].append(p)
    for (ds, cat), ps in by_cat.items():
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        seen = set()
        for p in ps:
            r = p["row"]
            if (r["method"], r["shots"]) in seen or len(set(p["labels"])) < 2:
                continue
            seen.add((r["method"], r["shots"]))
            fpr, tpr, _ = roc_curve(p["labels"], p["scores"])
            ax.plot(fpr, tpr, label=f"{r['method']} k={r['shots']} ({100 * r['I-AUROC']:.1f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{ds}/{cat} image ROC")
        ax.legend(fontsize=7, loc="lower right")
        _save_figure(fig, folder / f"{ds}__{cat}.png")


OUTCOMES = {(True, True): "flagged", (True, False): "MISSED", (False, True): "FALSE ALARM", (False, False): "passed"}


def write_grid(path: Path, samples, scored, images, title: str, n: int = 4) -> None:
    """The n highest- and n lowest-scored test images as overlays (``anomalyvfm.visualize``): the map coloured where
    it is high, the predicted mask (map > 0.5) outlined in red and the ground-truth mask in white. Each banner is
    coloured by the true label and names it, the score and, where the method has a threshold, the outcome there:
    flagged or missed for a defective image, false alarm or passed for a good one."""
    import cv2
    from PIL import Image

    from .outputs import write_png
    from .visualize import banner, overlay

    ranked = sorted(samples, key=lambda s: scored[str(s.path)].score, reverse=True)
    picks = ranked[:n] + ranked[-n:] if len(ranked) > 2 * n else ranked
    tiles = []
    for i, s in enumerate(picks):
        res = scored[str(s.path)]
        amap = res.anomaly_map
        truth = None
        if s.mask is not None:
            truth = np.asarray(Image.open(s.mask).convert("L").resize(amap.shape[::-1], Image.NEAREST)) > 0
        outcome = None if res.verdict is None else OUTCOMES[bool(s.label), bool(res.verdict)]
        tile = overlay(images[str(s.path)], amap, amap > 0.5, score=float(res.score),
                       verdict="anomalous" if s.label else "normal", truth=truth, side=240,
                       heading="DEFECTIVE" if s.label else "GOOD",
                       label=" · ".join(p for p in ("top" if i < n else "bottom", s.defect, outcome) if p))
        tiles.append(cv2.copyMakeBorder(tile, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
    height = max(t.shape[0] for t in tiles)
    width = max(t.shape[1] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, height - t.shape[0], 0, width - t.shape[1], cv2.BORDER_CONSTANT,
                                value=(255, 255, 255)) for t in tiles]
    per_row = min(len(tiles), n)
    while len(tiles) % per_row:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.concatenate([np.concatenate(tiles[r:r + per_row], axis=1) for r in range(0, len(tiles), per_row)])
    head = banner([title, "(banner colour = true label; flagged / MISSED / FALSE ALARM / passed at the method's "
                          "threshold; red outline = map > 0.5; white = ground truth)"],
                  grid.shape[1], (255, 255, 255), scale=0.5, ink=(0, 0, 0), thickness=1)
    write_png(path, np.concatenate([head, grid]))


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
