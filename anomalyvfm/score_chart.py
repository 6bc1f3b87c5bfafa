"""The review page's score histogram: an inline SVG of a run's image scores against its threshold, so that how the
scores split (or do not) around the threshold is seen at a glance, and each bar lists its images when clicked."""
from __future__ import annotations

import html
import math

from .visualize import score_text

WIDTH, HEIGHT, PAD, TOP, AXIS = 760, 160, 12, 22, 34  # size; side margin; room above (threshold) and below (axis)
COLOURS = {"anomalous": "#d9534f", "normal": "#4caf6a"}


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)  # a profile's scores crowd near 0 and 1: the logit axis spreads them
    return math.log(p / (1 - p))


def _score(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def run_threshold(rows: list[dict]) -> float | None:
    """The threshold every scored row was judged by, or None if they differ or there is none."""
    values = {row.get("threshold") for row in rows if row.get("score") is not None}
    return values.pop() if len(values) == 1 and None not in values else None


def score_histogram(rows: list[dict], bins: int = 40) -> tuple[str, list[int | None]]:
    """``bins`` bars over the scores on a logit axis (from the lowest to the highest score, the threshold included),
    each split into the anomalous (red, on top) and normal (green) images it holds; the threshold as a dashed line.
    Returns the SVG ('' under two scores) and each row's bar (None for a row without a score): a bar is a
    ``<g class="bin" data-bin="i">`` with a tooltip, and the page lists a bar's rows when it is clicked."""
    scored = [(float(r["score"]), r.get("verdict")) for r in rows if r.get("score") is not None]
    if len(scored) < 2:
        return "", [None] * len(rows)
    threshold = run_threshold(rows)
    zs = [_logit(s) for s, _ in scored] + ([_logit(threshold)] if threshold is not None else [])
    lo, hi = min(zs), max(zs)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / bins
    if threshold is not None:  # the threshold on a bar's edge: each bar lies wholly on one side of it
        lo = _logit(threshold) - math.ceil((_logit(threshold) - lo) / step - 1e-9) * step
        bins = max(1, math.ceil((hi - lo) / step - 1e-9))
        hi = lo + bins * step

    def bar(z: float) -> int:  # right-closed bars: a score equal to the threshold, which is not above it, sits below
        return min(max(math.ceil((z - lo) / step - 1e-9) - 1, 0), bins - 1)

    of_row = [None if r.get("score") is None else bar(_logit(float(r["score"]))) for r in rows]
    counts = [{"anomalous": 0, "normal": 0} for _ in range(bins)]
    for i, row in zip(of_row, rows):
        if i is not None:
            counts[i]["anomalous" if row.get("verdict") == "anomalous" else "normal"] += 1
    tallest = max(c["anomalous"] + c["normal"] for c in counts)
    plot_h, bar_w = HEIGHT - AXIS - TOP, (WIDTH - 2 * PAD) / bins

    def x(z: float) -> float:
        return PAD + (z - lo) / (hi - lo) * (WIDTH - 2 * PAD)

    parts = []
    for i, c in enumerate(counts):
        total = c["anomalous"] + c["normal"]
        if not total:
            continue
        b_lo, b_hi = _score(lo + i * step), _score(lo + (i + 1) * step)
        tip = (f"scores {score_text(b_lo, 4)}–{score_text(b_hi, 4)}: {c['anomalous']} anomalous, {c['normal']} "
               f"normal (click to list them)")
        bars, y = [], TOP + plot_h
        for verdict in ("normal", "anomalous"):
            h = max(c[verdict] / tallest * plot_h, 2.0) if c[verdict] else 0  # one image among hundreds shows too
            if h:
                y -= h
                bars.append(f'<rect x="{PAD + i * bar_w + 0.5:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                            f'height="{h:.1f}" fill="{COLOURS[verdict]}"/>')
        parts.append(f'<g class="bin" data-bin="{i}" data-range="{score_text(b_lo, 4)}–{score_text(b_hi, 4)}">'
                     f'<title>{html.escape(tip)}</title>{"".join(bars)}</g>')
    base = TOP + plot_h
    ticks = [(lo, "start"), (hi, "end")]
    if threshold is not None:
        t = x(_logit(threshold))
        anchor = "start" if t < 90 else "end" if t > WIDTH - 90 else "middle"  # the label stays inside
        parts.append(f'<line x1="{t:.1f}" x2="{t:.1f}" y1="{TOP - 4}" y2="{base}" stroke="#222" '
                     f'stroke-dasharray="4 3"/><text x="{t:.1f}" y="{TOP - 8}" text-anchor="{anchor}" '
                     f'font-size="11">threshold {score_text(threshold, 4)}</text>')
    labels = "".join(f'<text x="{x(z):.1f}" y="{base + 14}" text-anchor="{anchor}" font-size="11">'
                     f"{score_text(_score(z), 4)}</text>" for z, anchor in ticks)
    caption = (f'<text x="{WIDTH / 2:.0f}" y="{base + 28}" text-anchor="middle" font-size="11" fill="#666">score '
               f"(logit scale), {len(scored)} images; tallest bar {tallest}</text>")
    svg = (f'<svg class="histogram" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
           f'aria-label="histogram of the image scores"><line x1="{PAD}" x2="{WIDTH - PAD}" y1="{base}" '
           f'y2="{base}" stroke="#999"/>{"".join(parts)}{labels}{caption}</svg>')
    return svg, of_row
