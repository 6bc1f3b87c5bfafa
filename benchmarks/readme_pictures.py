"""The README's two pictures, from the shipped default on magnetic_tile's test split (224 px):

- docs/overlay.png: the overlays of the two highest-scoring crack images, numbered regions in red and the true crack
  in white (``anomalyvfm.visualize.overlay``);
- docs/report.png: report.html of ``anomalyvfm predict .../test/crack .../test/good``, opened in headless Chromium,
  sorted by score (highest first), the first four rows labelled OK or NG by their folder, as a person would.

    python benchmarks/readme_pictures.py [--data ../shared/data] [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def overlay_picture(model, tile: Path, cracks: list[str], out: Path) -> None:
    from anomalyvfm.outputs import write_png
    from anomalyvfm.visualize import overlay

    tiles = []
    for p in model.predict(cracks, resolution=224, keep_images=True):
        mask = tile / "ground_truth" / "crack" / f"{Path(p.name).stem}_mask.png"
        truth = np.asarray(Image.open(mask).convert("L")) > 0
        tiles.append(overlay(p.image, p.anomaly_map, p.mask, score=p.score, threshold=p.threshold,
                             verdict="anomalous" if p.is_anomalous else "normal", truth=truth, regions=p.regions,
                             side=420))
    height = max(t.shape[0] for t in tiles)
    gap = np.full((height, 12, 3), 255, np.uint8)
    padded = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0)), constant_values=255) for t in tiles]
    write_png(out, np.concatenate([padded[0], gap, padded[1]], axis=1))


def report_picture(tile: Path, out: Path, chromium: str) -> list[str]:
    """Writes the report picture; returns the two highest-scoring crack images of that run."""
    from playwright.sync_api import sync_playwright

    from anomalyvfm.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "out"
        main(["predict", str(tile / "test" / "crack"), str(tile / "test" / "good"), "--out", str(run)])
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1080})
            page.goto((run / "report.html").as_uri())
            page.click("th[data-key=score]")  # highest score first
            rows = page.locator("#results tbody tr")
            for i in range(4):
                label = "OK" if "/good/" in rows.nth(i).get_attribute("data-path") else "NG"
                rows.nth(i).locator(f"input[value={label}]").check()
            page.evaluate("window.scrollTo(0, 0)")  # checking a box scrolled it into view: show the header
            page.screenshot(path=str(out))
            browser.close()
        with open(run / "results.csv", newline="") as f:
            cracks = [r for r in csv.DictReader(f) if "/crack/" in r["path"]]
    return [r["path"] for r in sorted(cracks, key=lambda r: -float(r["score"]))[:2]]


def main_() -> None:
    from anomalyvfm.model import load_default

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    tile = Path(args.data) / "magnetic_tile" / "magnetic_tile"
    cracks = report_picture(tile, ROOT / "docs" / "report.png", args.chromium)
    overlay_picture(load_default(), tile, cracks, ROOT / "docs" / "overlay.png")


if __name__ == "__main__":
    main_()
