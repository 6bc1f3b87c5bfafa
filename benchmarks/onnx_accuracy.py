"""What the ONNX export changes on real images: eager PyTorch vs the float32 export vs the int8 export.

    python benchmarks/onnx_accuracy.py [--data ../shared/data] [--categories deeppcb/pcb magnetic_tile/magnetic_tile]
        [--mode fast]

The shipped checkpoint scores every test image of each category three ways; per backend the row gives the largest
absolute difference from eager PyTorch over all images (0–1 score and anomaly map), and the metrics of the
harness. Writes benchmarks/results/onnx-accuracy/results.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomalyvfm.config import MODES  # noqa: E402
from anomalyvfm.data import scan  # noqa: E402
from anomalyvfm.export import OnnxModel, export_onnx  # noqa: E402
from anomalyvfm.model import load_default  # noqa: E402
from anomalyvfm.outputs import atomic_write_bytes  # noqa: E402
from anomalyvfm.preprocess import read_image  # noqa: E402
from mixed_supervision import metrics_of  # noqa: E402

BACKENDS = {"eager": None, "onnx float32": "none", "onnx int8": "int8"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--categories", nargs="+", default=["deeppcb/pcb", "magnetic_tile/magnetic_tile"])
    parser.add_argument("--mode", choices=tuple(MODES), default="fast")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "onnx-accuracy")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_default()
    cats = {c.key: c for c in scan(args.data, args.categories)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runners = {"eager": model}
        for name, quant in BACKENDS.items():
            if quant is not None:
                runners[name] = OnnxModel(export_onnx(model, Path(tmp) / f"{quant}.onnx", mode=args.mode,
                                                      quantize=None if quant == "none" else quant),
                                          threads=torch.get_num_threads())
        for key in args.categories:
            test = cats[key].test
            images = [read_image(s.path) for s in test]
            results = {name: runner.predict(images, mode=args.mode, errors="raise") if name == "eager"
                       else runner.predict(images, errors="raise")
                       for name, runner in tqdm(runners.items(), desc=key)}
            for name, res in results.items():
                ref = results["eager"]
                rows.append({"category": key, "backend": name, "n_test": len(test),
                             "max_abs_score": max(abs(a.score - b.score) for a, b in zip(ref, res)),
                             "max_abs_map": max(float(np.abs(a.anomaly_map - b.anomaly_map).max())
                                                for a, b in zip(ref, res)),
                             "verdicts_changed": sum(a.is_anomalous != b.is_anomalous for a, b in zip(ref, res)),
                             **metrics_of(test, images, res)})
                print({k: round(v, 5) if isinstance(v, float) else v for k, v in rows[-1].items()})
    out = {"config": {"mode": args.mode, "resolution": MODES[args.mode], "categories": args.categories,
                      "hardware": f"{platform.machine()}, {torch.get_num_threads()} threads"}, "rows": rows}
    atomic_write_bytes(args.out / "results.json", json.dumps(out, indent=1).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
