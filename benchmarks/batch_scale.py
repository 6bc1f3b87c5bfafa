"""Cost of batch mode against batch size: wall time and peak memory of ``predict(batch_mode="mutual")`` for
N = 50, 200, 500, 2000 real 224 px images, next to single-image ``predict`` on the same images.

    python benchmarks/batch_scale.py [--sizes 50,200,500,2000]      # -> benchmarks/results/batch-scale/

Sizes given again replace their earlier rows; the others are kept.

Each size runs in a fresh process (its peak resident memory is that process's ``ru_maxrss``). Images: the test
splits of ../shared/data (magnetic_tile, elpv/mono, elpv/poly, deeppcb, in that order; 2,251 in all). Single-image
predict is timed on min(N, 200) of them and its per-image cost scaled to N (it is linear in N). 2-core CPU, torch
threads 2, batch 8.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "batch-scale"
DATA = ROOT.parent / "shared" / "data"


def pool() -> list[str]:
    from anomalyvfm.data import scan

    cats = {c.key: c for c in scan(DATA)}
    order = ["magnetic_tile/magnetic_tile", "elpv/mono", "elpv/poly", "deeppcb/pcb"]
    return [str(s.path) for key in order if key in cats for s in cats[key].test]


def one(n: int) -> dict:
    """Measure size ``n`` in this process."""
    import torch

    from anomalyvfm.batch_predict import predict_batch
    from anomalyvfm.model import load_default

    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    paths = pool()[:n]
    model = load_default()
    single_n = min(n, 200)
    tic = time.perf_counter()
    model.predict(paths[:single_n], batch_size=8, resolution=224)
    single = (time.perf_counter() - tic) / single_n * n
    tic = time.perf_counter()
    _, report = predict_batch(model, paths, batch_size=8, resolution=224)
    batch = time.perf_counter() - tic
    return {"n": n, "single_s": single, "batch_s": batch, "ratio": batch / single,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "mutual_weight": report.mutual_weight}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(n, [r["batch_s"] for r in rows], "o-", label="batch mode (mutual + model)")
    a.plot(n, [r["single_s"] for r in rows], "s--", label="single-image predict")
    a.set(xscale="log", yscale="log", xlabel="images in the batch (N)", ylabel="wall time (s)",
          title="time, 224 px, 2-core CPU")
    a.legend()
    b.plot(n, [r["peak_rss_gib"] for r in rows], "o-")
    b.set(xscale="log", xlabel="images in the batch (N)", ylabel="peak resident memory (GiB)", title="memory")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200,500,2000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    old = OUT / "results.json"  # sizes measured earlier are kept unless measured again
    rows = json.loads(old.read_text()) if old.is_file() else []
    for n in (int(x) for x in args.sizes.split(",")):
        rows = [r for r in rows if r["n"] != n]
        done = subprocess.run([sys.executable, __file__, "--one", str(n)], check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    rows.sort(key=lambda r: r["n"])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    lines = ["| N | single-image predict (s) | batch mode (s) | batch / single | peak memory (GiB) |", "|---|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['single_s']:.0f} | {r['batch_s']:.0f} | {r['ratio']:.2f} | {r['peak_rss_gib']:.1f} |"
              for r in rows]
    (OUT / "scale.md").write_text("\n".join(lines) + "\n")
    plot(rows, OUT / "scale.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
