"""Pictures a person reads: heatmaps, overlays with a colour bar, verdict banner and region outlines, thumbnails.

One display scale for every picture: a map value ``v`` in [0, 1] is shown at ``n = display_scale(v, t)``, piecewise
linear with the pixel threshold ``t`` at the middle of the colour scale (n = 0.5). Overlays colour only where the
map is high: transparent below n = 0.25 (half the threshold's level), opaque from n = 0.75 up."""
from __future__ import annotations

import cv2
import numpy as np

PREDICTED = (255, 40, 40)  # outline of the predicted regions (red)
TRUTH = (255, 255, 255)  # outline of the ground-truth mask (white)
ANOMALOUS_BANNER, NORMAL_BANNER, ERROR_BANNER = (190, 30, 30), (30, 130, 60), (90, 90, 90)
MAX_ALPHA = 0.75


def score_text(value: float, digits: int = 3) -> str:
    """A score as shown to a person: ``digits`` decimals, or two significant digits in e-notation below
    10^-digits, where a profile's scores crowd and fixed decimals would show 0.000 for all of them."""
    return f"{value:.1e}" if 0 < value < 10 ** -digits else f"{value:.{digits}f}"


def display_scale(anomaly_map: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Map values -> [0, 1] display values with ``threshold`` at 0.5 (linear on each side)."""
    t = float(np.clip(threshold, 1e-3, 1 - 1e-3))
    v = np.clip(anomaly_map.astype(np.float32), 0.0, 1.0)
    return np.where(v <= t, 0.5 * v / t, 0.5 + 0.5 * (v - t) / (1 - t)).astype(np.float32)


def colourise(display: np.ndarray) -> np.ndarray:
    """Display values in [0, 1] -> RGB (turbo colour map)."""
    grey = np.clip(display * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)


def heatmap(anomaly_map: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The map alone, coloured on the display scale (absolute, so heatmaps of different images compare)."""
    return colourise(display_scale(anomaly_map, threshold))


def _outline(image: np.ndarray, mask: np.ndarray | None, colour: tuple[int, int, int], width: int) -> None:
    if mask is None or not mask.any():
        return
    mask = cv2.resize(mask.astype(np.uint8), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(image, contours, -1, colour, width, cv2.LINE_AA)


def _rank(image: np.ndarray, regions, mask: np.ndarray | None, scale: float, side: int, shown: int = 3) -> None:
    """Number the first ``shown`` regions, white on red, on their outline's topmost point (kept inside the
    picture)."""
    size = max(0.45, side / 900)
    for i, r in enumerate(regions[:shown]):
        text = str(i + 1)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, 2)
        x0, y0, x1, _ = r.box
        top = np.flatnonzero(mask[y0, x0:x1]) if mask is not None else []
        x = int(np.clip((x0 + (top[0] if len(top) else 0)) * scale - (tw + 4) / 2, 0, image.shape[1] - tw - 4))
        y = int(np.clip(y0 * scale - (th + 4) / 2, 0, image.shape[0] - th - 4))
        cv2.rectangle(image, (x, y), (x + tw + 4, y + th + 4), PREDICTED, -1)
        _text(image, text, (x + 2, y + th + 2), size, thickness=2)


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour=(255, 255, 255),
          thickness: int = 1) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def _fit(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def colour_bar(height: int, threshold: float, width: int = 64) -> np.ndarray:
    """A vertical colour bar for the overlay's scale, labelled 0, the threshold and 1."""
    bar = np.full((height, width, 3), 255, np.uint8)
    top, bottom = 10, height - 10
    ramp = np.linspace(1.0, 0.0, bottom - top, dtype=np.float32)[:, None]
    bar[top:bottom, 4:18] = colourise(np.repeat(ramp, 14, axis=1))
    scale = 0.38
    for value, label in ((1.0, "1.0"), (threshold, f"{threshold:.2f}"), (0.0, "0.0")):
        y = int(round(top + (1.0 - float(display_scale(np.array([value]), threshold)[0])) * (bottom - top - 1)))
        cv2.line(bar, (2, y), (20, y), (0, 0, 0), 1)
        _text(bar, label, (23, min(max(y + 4, 10), height - 2)), scale, (0, 0, 0))
    _text(bar, "px thr", (23, min(height - 2, int(round(top + 0.5 * (bottom - top))) + 16)), scale, (80, 80, 80))
    return bar


def overlay(rgb: np.ndarray, anomaly_map: np.ndarray, mask: np.ndarray | None = None, *,
            score: float | None = None, threshold: float | None = None, verdict: str | None = None,
            pixel_threshold: float = 0.5, truth: np.ndarray | None = None, side: int = 512,
            label: str | None = None, heading: str | None = None, regions=None) -> np.ndarray:
    """The image, coloured only where its map is high, with the predicted regions outlined in red (``truth``, a
    ground-truth mask, in white), a colour bar with its scale and a banner with the verdict, score and threshold.
    ``regions`` (``anomalyvfm.regions.Region``, strongest first) get their rank, 1 to 3, on their outline, as the
    report lists them. ``verdict`` sets the banner's colour and, unless ``heading`` is given, its first word. The
    picture is ``side`` pixels on its long side (plus banner and bar)."""
    base = _fit(rgb, side)
    h, w = base.shape[:2]
    shown = display_scale(cv2.resize(anomaly_map.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR),
                          pixel_threshold)
    alpha = (MAX_ALPHA * np.clip((shown - 0.25) / 0.5, 0.0, 1.0))[..., None]
    out = (base.astype(np.float32) * (1 - alpha) + colourise(shown).astype(np.float32) * alpha).astype(np.uint8)
    width = max(2, round(side / 200))
    _outline(out, truth, TRUTH, width)
    _outline(out, mask, PREDICTED, width)
    _rank(out, regions or [], mask, w / anomaly_map.shape[1], side)
    out = np.concatenate([out, colour_bar(h, pixel_threshold)], axis=1)
    colour = {"anomalous": ANOMALOUS_BANNER, "normal": NORMAL_BANNER}.get(verdict or "", ERROR_BANNER)
    parts = [heading if heading is not None else (verdict or "").upper()]
    if score is not None:
        parts.append(f"score {score_text(score)}")
    if threshold is not None:
        parts.append(f"thr {threshold:.3f}")
    if label:
        parts.append(label)
    return np.concatenate([banner([p for p in parts if p], out.shape[1], colour), out], axis=0)


def banner(parts: list[str], width: int, colour: tuple[int, int, int], scale: float = 0.55,
           wrap_at: float = 0.4, ink: tuple[int, int, int] = (255, 255, 255),
           thickness: int | None = None) -> np.ndarray:
    """A band ``width`` pixels wide holding ``parts`` in ``ink``: on one line while the text fits at ``wrap_at``
    scale or larger, else on more lines, each part whole; the scale shrinks (not below 0.2) until every line fits.
    ``thickness`` None: 2 on a band over 300 px wide, else 1."""
    thickness = thickness or 1 + (width > 300)

    def fits(text: str, at: float) -> bool:
        return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, at, thickness)[0][0] <= width - 16

    lines = [parts]
    while not fits("   ".join(lines[-1]), wrap_at) and len(lines[-1]) > 1:
        words = lines.pop()
        cut = max([1] + [i for i in range(2, len(words)) if fits("   ".join(words[:i]), wrap_at)])
        lines += [words[:cut], words[cut:]]
    texts = ["   ".join(line) for line in lines]
    while scale > 0.2 and not all(fits(text, scale) for text in texts):
        scale = round(scale - 0.05, 2)
    step = int(round(40 * scale))
    band = np.empty((30 + step * (len(texts) - 1), width, 3), np.uint8)
    band[:] = colour
    for i, text in enumerate(texts):
        _text(band, text, (8, 21 + step * i), scale, ink, thickness)
    return band


def thumbnail(rgb: np.ndarray, side: int = 160) -> np.ndarray:
    return _fit(rgb, side)
