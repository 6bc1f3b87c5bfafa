"""Golden-reference mode on DeepPCB, where every defective test image pairs with the defect-free template of the
same board region (test/good/<name> ↔ test/defect/<name>).

    python benchmarks/golden_deeppcb.py [--data ../shared/data/deeppcb/pcb] [--resolution 224] [--n 100]

Only pairs whose template is present are used (the ../shared/data copy is a subset: 18 of its 100 defective images
have their template). Per defective image, the shipped model scores it (1) zero-shot, (2) against its own template as a golden reference
(ECC alignment, position-wise patch comparison ± one patch) and (3) against the same template as a plain kNN memory
(nearest patch anywhere), and (4) the mean of maps (1) and (2). Pixel AUROC and AUPRO@0.3 against the (box) masks, over the defective images only: the good
test images are the templates themselves, so an image-level AUROC would compare each with itself. Writes
benchmarks/results/golden-deeppcb/results.json and an example PNG.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomalyvfm.metrics import pixel_metrics  # noqa: E402
from anomalyvfm.memory import MemoryBank  # noqa: E402
from anomalyvfm.model import load_default  # noqa: E402
from anomalyvfm.outputs import atomic_write_bytes, heatmap, write_png  # noqa: E402
from anomalyvfm.preprocess import normalize, read_image, resize_square  # noqa: E402
from anomalyvfm.profile import ProfileState  # noqa: E402


def with_reference(base, template: np.ndarray, mode: str, resolution: int):
    """The base model with a one-image memory of ``template`` (map = memory distance only, w = 1)."""
    model = copy.copy(base)  # shares the weights; only the profile differs
    with torch.inference_mode():
        x = normalize(resize_square(template, resolution)[None], base.config.mean, base.config.std)
        memory = MemoryBank(base(x).patch_tokens[0], golden=mode == "golden")
    model.profile = ProfileState(memory=memory, reference=template if mode == "golden" else None, fusion_weight=1.0)
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "deeppcb" / "pcb")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "golden-deeppcb")
    args = parser.parse_args(argv)
    base = load_default().prepare_for_inference()
    templates = {p.name for p in (args.data / "test" / "good").iterdir()}
    names = sorted(p.name for p in (args.data / "test" / "defect").iterdir() if p.name in templates)[:args.n]
    if not names:
        raise SystemExit(f"{args.data}: no defective test image has its template under test/good")
    maps = {"zero-shot": [], "golden reference": [], "kNN vs the same template": []}
    masks = []
    tic = time.perf_counter()
    for i, name in enumerate(tqdm(names, desc="deeppcb pairs")):
        image = args.data / "test" / "defect" / name
        template = read_image(args.data / "test" / "good" / name)
        mask = read_image(args.data / "ground_truth" / "defect" / f"{Path(name).stem}_mask.png")[..., 0] > 127
        masks.append(mask)
        maps["zero-shot"].append(base.predict([image], resolution=args.resolution)[0].anomaly_map)
        for label, mode in (("golden reference", "golden"), ("kNN vs the same template", "knn")):
            model = with_reference(base, template, mode, args.resolution)
            maps[label].append(model.predict([image], resolution=args.resolution)[0].anomaly_map)
        if i == 0:
            panels = [read_image(image), template] + [heatmap(m[-1] / max(m[-1].max(), 1e-6)) for m in maps.values()]
            write_png(args.out / "example.png", np.concatenate(panels, axis=1))
    seconds = time.perf_counter() - tic
    # the two maps fused as a profile fuses its memory (w = 0.5): the model sees the defect, the reference the layout
    maps["zero-shot + golden, mean"] = [(a + b) / 2 for a, b in zip(maps["zero-shot"], maps["golden reference"])]
    rows = {label: pixel_metrics(masks, m, 0.3) for label, m in maps.items()}
    payload = {"resolution": args.resolution, "n_pairs": len(names), "seconds": seconds,
               "metrics": {k: {m: float(v) for m, v in r.items()} for k, r in rows.items()}}
    atomic_write_bytes(args.out / "results.json", json.dumps(payload, indent=1).encode())
    for label, r in rows.items():
        print(f"{label}: P-AUROC {100 * r['P-AUROC']:.1f}, AUPRO@0.3 {100 * r['AUPRO@0.3']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
