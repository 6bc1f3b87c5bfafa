"""What a mirrored border (``edge_pad``) changes at the image's edge, and what it costs, on the validation category.

    python benchmarks/edge_pad.py [--data ../shared/data] [--pads 0 1] [--repeats 3]

(a) where good parts are hot: over magnetic_tile's good test images (the declared validation category; no defective
    image and no AUROC is read), the share whose map peaks in the outer ring one patch wide (1/16 of each side at
    224 px), against that ring's share of the area, 23%; and the mean map value by distance to the edge;
(b) cost: ``predict`` images per second of the default with each ``edge_pad``, 48 of those images, batch 8, best of
    ``--repeats`` timed passes, in one run (the ratio to edge_pad 0 is what the declared cost rule reads).
"""
from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
GOOD = "magnetic_tile/magnetic_tile/test/good"
RING = 1 / 16  # one patch of the 16 across a 224 px input


def ring_stats(maps: list[np.ndarray]) -> tuple[float, list[float]]:
    """Share of maps peaking in the outer ring, and the mean map value by distance to the edge in 1/32 of a side."""
    in_ring, profile = 0, np.zeros((32, 32))
    for a in maps:
        h, w = a.shape
        y, x = np.unravel_index(np.argmax(a), a.shape)
        in_ring += y < RING * h or y >= (1 - RING) * h or x < RING * w or x >= (1 - RING) * w
        profile += F.adaptive_avg_pool2d(torch.from_numpy(a)[None, None].float(), 32)[0, 0].numpy()
    i = np.arange(32)
    depth = np.minimum(np.minimum(i[:, None], 31 - i[:, None]), np.minimum(i[None], 31 - i[None]))
    return in_ring / len(maps), [float((profile / len(maps))[depth == d].mean()) for d in range(16)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--pads", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from anomalyvfm.model import load_default

    images = sorted(str(p) for p in (args.data / GOOD).glob("*") if p.is_file() and "_mask" not in p.name)
    if not images:
        raise SystemExit(f"no images in {args.data / GOOD}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_default()
    timed = images[:48]
    rows = []
    for pad in args.pads:
        model.config.edge_pad = pad
        share, profile = ring_stats([r.anomaly_map for r in model.predict(images, batch_size=8)])
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.predict(timed, batch_size=8)
            best = min(best, time.perf_counter() - start)
        rows.append((pad, share, profile, len(timed) / best))
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch "
          f"{torch.__version__}, the default (test views {model.config.test_views!r}), 224 px, {len(images)} good "
          f"images from {args.data / GOOD}; speed: {len(timed)} of them, batch 8, best of {args.repeats}")
    print("| edge_pad | good images peaking in the outer ring (area 23%) | mean map, outer ring → centre (1/32 steps) "
          "| predict img/s | time / edge_pad 0 |")
    print("|---|---|---|---|---|")
    base = rows[0][3]
    for pad, share, profile, rate in rows:
        print(f"| {pad} | {100 * share:.1f}% | {' '.join(f'{v:.3f}' for v in profile[:4])} … {profile[-1]:.3f} "
              f"| {rate:.2f} | {base / rate:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
