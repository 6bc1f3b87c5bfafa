"""Throughput of the raw backbone forward vs the full ``predict`` path, both modes, batch 8, in one run.

    python benchmarks/speed.py [--images DIR] [--n 48] [--repeats 3]

The default images (DeepPCB, 640x640) need no tiling, so both paths see the same number of 224/448 crops.

(a) backbone: the embedded DINOv2 ViT-S/14 alone on ready-made normalised tensors;
(b) predict: ``AnomalyVFM.predict`` on image files with the default's settings (test views "flips": four passes):
    decode, resize, backbone with merged LoRA, decoder, scores, maps resized to the original size; (b1) the same with
    ``test_views`` "single", one pass. The ratio (b1)/(a) is the cost of everything that is not the backbone,
    (b)/(b1) the cost of the test views.
(c) onnx: the same ``predict`` path on the model exported by ``anomalyvfm export`` and run by onnxruntime
    (``predict --backend onnx``); (c)/(b) is the export's speed-up;
(d) onnx int8: the same with ``export --quantize int8`` (what it costs in accuracy: benchmarks/onnx_accuracy.py).
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings
from pathlib import Path

import torch

DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / "shared/data/deeppcb/pcb/test/good"


EXPORTS = {"onnx": {}, "int8": {"quantize": "int8"}}


def _best_rate(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n_images / best


def measure(images: list[str], repeats: int, batch_size: int = 8) -> list[dict]:
    from anomalyvfm import MODES, load_backbone
    from anomalyvfm.export import OnnxModel, export_onnx
    from anomalyvfm.model import load_default

    backbone = load_backbone("embedded")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_default()
    rows = []
    for mode, res in MODES.items():
        x = torch.randn(batch_size, 3, res, res)
        n_batches = max(1, len(images) // batch_size)

        def run_backbone():
            with torch.inference_mode():
                for _ in range(n_batches):
                    backbone(pixel_values=x)

        def run_predict():
            model.predict(images[: n_batches * batch_size], batch_size=batch_size, mode=mode)

        a = _best_rate(run_backbone, n_batches * batch_size, repeats)
        b = _best_rate(run_predict, n_batches * batch_size, repeats)
        views, model.config.test_views = model.config.test_views, "single"
        b1 = _best_rate(run_predict, n_batches * batch_size, repeats)
        model.config.test_views = views
        onnx_rates = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, kwargs in EXPORTS.items():
                onnx = OnnxModel(export_onnx(model, Path(tmp) / f"{name}.onnx", mode=mode, **kwargs),
                                 threads=torch.get_num_threads())
                onnx_rates[name] = _best_rate(lambda: onnx.predict(images[: n_batches * batch_size],
                                                                   batch_size=batch_size),
                                              n_batches * batch_size, repeats)
        row = {"mode": mode, "resolution": res, "backbone_img_s": a, "single_img_s": b1, "ratio": b1 / a,
               "predict_img_s": b, "views_ratio": b / b1}
        for name, rate in onnx_rates.items():
            row[f"{name}_img_s"], row[f"{name}_ratio"] = rate, rate / b
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--n", type=int, default=48, help="images per timed pass (a multiple of 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the best is reported")
    args = parser.parse_args(argv)
    images = sorted(str(p) for p in args.images.glob("*") if p.is_file())[: args.n]
    if not images:
        raise SystemExit(f"no images in {args.images}")
    rows = measure(images, args.repeats)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, batch 8, {len(images)} images from {args.images}")
    print("| mode | resolution | backbone img/s | single-pass predict img/s | single / backbone | predict img/s "
          "(default, test views) | views / single | ONNX predict img/s | ONNX / eager predict | "
          "ONNX int8 img/s | int8 / eager predict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['resolution']} | {r['backbone_img_s']:.2f} | {r['single_img_s']:.2f} "
              f"| {r['ratio']:.2f} | {r['predict_img_s']:.2f} | {r['views_ratio']:.2f} | "
              + " | ".join(f"{r[f'{n}_img_s']:.2f} | {r[f'{n}_ratio']:.2f}" for n in EXPORTS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
