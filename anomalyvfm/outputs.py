"""Result files: atomic writes, results.csv / results.jsonl, heatmap and overlay PNGs."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

RESULT_FIELDS = ("path", "score", "verdict", "rule", "threshold_source", "regions", "largest_region_pct", "error")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it over ``path``: readers see all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, encoded.tobytes())


def heatmap(anomaly_map: np.ndarray) -> np.ndarray:
    """float map in [0, 1] -> RGB colour image (absolute scale, so heatmaps of different images compare)."""
    grey = np.clip(anomaly_map * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(rgb: np.ndarray, anomaly_map: np.ndarray, mask: np.ndarray | None = None, alpha: float = 0.45) -> np.ndarray:
    """The image with its heatmap blended in and the binary mask outlined in white."""
    out = cv2.addWeighted(rgb, 1.0 - alpha, heatmap(anomaly_map), alpha, 0.0)
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, round(max(rgb.shape[:2]) / 300)))
    return out


def result_row(p) -> dict:
    """One ``Prediction`` as a results row: the rule behind its score, where its threshold came from and its
    regions (results.jsonl lists them; results.csv gets their count and the largest one's area in %)."""
    verdict = "error" if p.error else ("anomalous" if p.is_anomalous else "normal")
    regions = [r.to_dict() for r in (p.regions or [])]
    return {"path": p.name, "score": None if p.error else round(float(p.score), 6), "verdict": verdict,
            "rule": p.rule, "threshold_source": p.threshold_source, "regions": None if p.error else regions,
            "error": p.error}


def _csv_row(row: dict) -> dict:
    regions = row.get("regions")
    flat = {**row, "regions": None if regions is None else len(regions),
            "largest_region_pct": regions[0]["area_pct"] if regions else None}
    return {k: ("" if flat.get(k) is None else flat[k]) for k in RESULT_FIELDS}


def write_results(out_dir: str | os.PathLike, rows: list[dict]) -> None:
    """results.csv and results.jsonl, each written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_csv_row(row) for row in rows)
    atomic_write_bytes(Path(out_dir) / "results.csv", buffer.getvalue().encode())
    lines = "".join(json.dumps(row) + "\n" for row in rows)
    atomic_write_bytes(Path(out_dir) / "results.jsonl", lines.encode())


class ResultsWriter:
    """The results folder of a prediction run, the one writer behind ``AnomalyVFM.predict(out=...)`` and
    ``anomalyvfm predict``: a heatmap and an overlay PNG per scored image (as each result arrives; ``images=False``
    skips them) and, on ``close``, results.csv and results.jsonl with one row per input, in order."""

    def __init__(self, out: str | os.PathLike, images: bool = True):
        self.out, self.images = Path(out), images
        self.rows: list[dict] = []
        self.failed = self.anomalous = 0
        self._stems: set[str] = set()

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _stem(self, name: str) -> str:
        """An output file stem not used yet in this run: the input's stem, else stem_2, stem_3, ..."""
        base = Path(name).stem or "image"
        stem, n = base, 1
        while stem in self._stems:
            n += 1
            stem = f"{base}_{n}"
        self._stems.add(stem)
        return stem

    def add(self, prediction):
        """Record one ``Prediction`` (and write its PNGs); returns it."""
        p = prediction
        self.rows.append(result_row(p))
        if not p.ok:
            self.failed += 1
            return p
        self.anomalous += bool(p.is_anomalous)
        if self.images and p.image is not None:
            stem = self._stem(p.name)
            write_png(self.out / "heatmaps" / f"{stem}.png", heatmap(p.anomaly_map))
            write_png(self.out / "overlays" / f"{stem}.png", overlay(p.image, p.anomaly_map, p.mask))
        return p

    def close(self) -> None:
        write_results(self.out, self.rows)
