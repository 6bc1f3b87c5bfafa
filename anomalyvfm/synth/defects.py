"""Defect families with exact masks. Each takes (rng, image, foreground, donor) and returns the defect's source
pattern P (uint8 RGB, full size), its mask M in [0, 1] and whether it is a geometric change (applied directly).
Blending follows A = (1−M)⊙I + (1−δ)(M⊙I) + δ(M⊙P) with a random opacity δ."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .noise import perlin_mask, to_uint8


def _random_point(rng, fg: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(fg)
    if len(ys) == 0:
        return int(rng.integers(fg.shape[0])), int(rng.integers(fg.shape[1]))
    i = int(rng.integers(len(ys)))
    return int(ys[i]), int(xs[i])


def _shade(image: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    return np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def scratch(rng, image, fg, donor):
    """Thin curved (optionally branching) scratches or cracks, darker or brighter than the surface."""
    size = image.shape[0]
    mask = np.zeros(image.shape[:2], np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        y, x = _random_point(rng, fg)
        angle = rng.uniform(0, 2 * np.pi)
        pts = [(x, y)]
        for _ in range(int(rng.integers(4, 14))):
            angle += rng.normal(0, 0.35)
            step = rng.uniform(0.01, 0.05) * size
            x, y = x + step * np.cos(angle), y + step * np.sin(angle)
            pts.append((x, y))
            if rng.random() < 0.12:  # a branch
                bx, by = x + 0.05 * size * np.cos(angle + 1), y + 0.05 * size * np.sin(angle + 1)
                cv2.line(mask, (int(x), int(y)), (int(bx), int(by)), 1, 1, cv2.LINE_AA)
        cv2.polylines(mask, [np.array(pts, np.int32)], False, 1, int(rng.integers(1, max(2, size // 100) + 1)),
                      cv2.LINE_AA)
    factor = rng.choice([rng.uniform(0.2, 0.7), rng.uniform(1.3, 2.0)])
    return _shade(image, factor), mask.astype(np.float32)


def pit(rng, image, fg, donor):
    """Pits and holes: small dark discs with a bright rim (the lit lip of the crater)."""
    size = image.shape[0]
    mask = np.zeros(image.shape[:2], np.float32)
    rim = np.zeros(image.shape[:2], np.float32)
    for _ in range(int(rng.integers(1, 5))):
        y, x = _random_point(rng, fg)
        r = max(1, int(rng.uniform(0.008, 0.04) * size))
        cv2.circle(mask, (x, y), r + 1, 1.0, -1, cv2.LINE_AA)
        cv2.circle(rim, (x, y), r, 1.0, max(1, r // 3), cv2.LINE_AA)
    dark = _shade(image, rng.uniform(0.1, 0.6)).astype(np.float32)
    bright = np.clip(image.astype(np.float32) * rng.uniform(1.3, 1.8) + 30, 0, 255)
    rim = np.clip(rim, 0, 1)[..., None]
    return (rim * bright + (1 - rim) * dark).astype(np.uint8), mask


def _behind(rng, image: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """What shows through where material is gone: the scene's background colour (with its grain) for an object,
    a dark void for a texture that fills the frame."""
    size = image.shape[0]
    grain = rng.normal(0, rng.uniform(2, 8), (size, size, 1)).astype(np.float32)
    if (~fg).sum() > 0.05 * fg.size:
        colour = np.median(image[~fg].reshape(-1, image.shape[2]), axis=0).astype(np.float32)
    else:
        colour = np.full(image.shape[2], rng.uniform(0, 50), np.float32)
    return np.clip(colour + grain, 0, 255).astype(np.uint8)


def stain(rng, image, fg, donor):
    """Stains and contamination: a soft blob of another colour."""
    mask = perlin_mask(rng, image.shape[0], (0.005, 0.08)) * fg
    colour = rng.uniform(0, 255, 3)
    tint = np.clip(image * rng.uniform(0.3, 0.8) + colour * rng.uniform(0.2, 0.7), 0, 255).astype(np.uint8)
    return tint, cv2.GaussianBlur(mask, (0, 0), 1.5) * (mask > 0)


def missing_material(rng, image, fg, donor):
    """Missing material (background or a dark void shows through) or extra material (a lump)."""
    mask = perlin_mask(rng, image.shape[0], (0.003, 0.04)) * fg
    if rng.random() < 0.5:
        return _behind(rng, image, fg), mask
    return _shade(cv2.GaussianBlur(image, (0, 0), 3), rng.uniform(1.1, 1.5)), mask


def deformation(rng, image, fg, donor):
    """A local warp (dent or bulge): pixels displaced radially inside a disc."""
    size = image.shape[0]
    y0, x0 = _random_point(rng, fg)
    r = rng.uniform(0.04, 0.12) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - y0, xx - x0
    d = np.sqrt(dx ** 2 + dy ** 2)
    weight = np.clip(1 - d / r, 0, 1) ** 2
    strength = rng.uniform(0.3, 0.7) * rng.choice([-1, 1])
    shift = (weight * strength).astype(np.float32)
    warped = cv2.remap(image, xx + dx * shift, yy + dy * shift, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT)
    return warped, (weight > 0.05).astype(np.float32)


def appearance(rng, image, fg, donor):
    """Colour, gloss or blur change in a region: often low-contrast."""
    mask = perlin_mask(rng, image.shape[0], (0.01, 0.1)) * fg
    kind = rng.integers(3)
    if kind == 0:
        changed = _shade(image, rng.uniform(0.75, 1.3, 3))
    elif kind == 1:
        changed = np.clip(image.astype(np.float32) * 0.7 + 255 * 0.3 * rng.uniform(0.3, 1), 0, 255).astype(np.uint8)
    else:
        changed = cv2.GaussianBlur(image, (0, 0), rng.uniform(2, 5))
    return changed, mask


def texture_swap(rng, image, fg, donor):
    """DRAEM-style: a Perlin-shaped region filled with a texture from another family."""
    return donor, perlin_mask(rng, image.shape[0], (0.01, 0.12)) * fg


def cut_paste(rng, image, fg, donor):
    """A scar: a patch of the same image cut from elsewhere, rotated and pasted in a Perlin/rectangular shape."""
    size = image.shape[0]
    ph, pw = (int(rng.uniform(0.05, 0.2) * size) for _ in range(2))
    sy, sx = int(rng.integers(0, size - ph)), int(rng.integers(0, size - pw))
    patch = image[sy:sy + ph, sx:sx + pw]
    patch = np.rot90(patch, int(rng.integers(1, 4))).copy()
    y, x = _random_point(rng, fg)
    y, x = min(max(0, y - patch.shape[0] // 2), size - patch.shape[0]), min(max(0, x - patch.shape[1] // 2),
                                                                            size - patch.shape[1])
    source = image.copy()
    source[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    mask = np.zeros((size, size), np.float32)
    mask[y:y + patch.shape[0], x:x + patch.shape[1]] = 1.0
    return source, mask


def foreign_object(rng, image, fg, donor):
    """Foreign matter lying on the part or beside it: hairs and fibres (long thin curves) or particles (specks)."""
    size = image.shape[0]
    mask = np.zeros(image.shape[:2], np.float32)
    if rng.random() < 0.6:  # hairs / fibres: quadratic Bézier curves
        for _ in range(int(rng.integers(1, 3))):
            p0, p1, p2 = (rng.uniform(0, size, 2) for _ in range(3))
            t = np.linspace(0, 1, 60)[:, None]
            curve = ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2)
            length = rng.uniform(0.2, 0.7)
            start = rng.uniform(0, 1 - length)
            pts = curve[int(start * 60):int((start + length) * 60) + 2].astype(np.int32)
            cv2.polylines(mask, [pts], False, 1.0, int(rng.integers(1, 3)), cv2.LINE_AA)
    else:  # particles: specks of dust, chips, droplets
        for _ in range(int(rng.integers(2, 15))):
            y, x = _random_point(rng, fg) if rng.random() < 0.7 else (int(rng.integers(size)), int(rng.integers(size)))
            cv2.circle(mask, (x, y), int(rng.integers(1, max(2, size // 60) + 1)), 1.0, -1, cv2.LINE_AA)
    colour = rng.uniform(0, 60, 3) if rng.random() < 0.6 else rng.uniform(180, 255, 3)
    if image.shape[2] == 3 and rng.random() < 0.3:
        colour = rng.uniform(0, 255, 3)
    return np.broadcast_to(colour, image.shape).astype(np.uint8).copy(), mask


def colour_shift(rng, image, fg, donor):
    """A whole part (or, on a texture, a large region) in the wrong colour, shade or finish."""
    if fg.mean() > 0.95:
        mask = perlin_mask(rng, image.shape[0], (0.2, 0.5))
    else:
        mask = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 0.8)
    factor = rng.uniform(0.55, 1.5, 3) if rng.random() < 0.6 else np.full(3, rng.choice([0.6, 1.45]))
    return _shade(image, factor), mask


def edge_damage(rng, image, fg, donor):
    """A chipped or broken outline: a bite out of the part's edge where the background shows."""
    size = image.shape[0]
    fg8 = fg.astype(np.uint8)
    edge = fg8 - cv2.erode(fg8, np.ones((3, 3), np.uint8))
    if edge.sum() == 0 or fg.mean() > 0.95:
        return missing_material(rng, image, fg, donor)
    mask = np.zeros(image.shape[:2], np.float32)
    for _ in range(int(rng.integers(1, 3))):
        y, x = _random_point(rng, edge > 0)
        axes = (int(rng.uniform(0.02, 0.08) * size), int(rng.uniform(0.015, 0.05) * size))
        cv2.ellipse(mask, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
    return _behind(rng, image, fg), mask * fg


def logical(rng, image, fg, donor):
    """Logical anomalies on a scene of several components: one missing, an extra one, one moved or one turned.
    A single part gets a misplaced piece of itself (cut-paste) instead."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    parts = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= 20]
    if len(parts) < 2:
        return cut_paste(rng, image, fg, donor)
    size = image.shape[0]
    i = int(rng.choice(parts))
    comp = (labels == i).astype(np.uint8)
    region = cv2.dilate(comp, np.ones((5, 5), np.uint8)).astype(bool)
    behind = _behind(rng, image, fg)
    source = image.copy()
    kind = rng.choice(["missing", "extra", "moved", "turned"])
    if kind in ("missing", "moved"):
        source[region] = behind[region]
    if kind == "missing":
        return source, region.astype(np.float32)
    x, y, w, h = (int(v) for v in stats[i, :4])
    if kind == "turned":
        centre = (x + w / 2, y + h / 2)
        rot = cv2.getRotationMatrix2D(centre, float(rng.uniform(25, 155)), 1.0)
        moved_img = cv2.warpAffine(image, rot, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        moved_mask = cv2.warpAffine(comp, rot, (size, size), flags=cv2.INTER_NEAREST).astype(bool)
        source[region] = behind[region]
    else:  # extra or moved: the component copied to a free place
        free = ~cv2.dilate(fg.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        for _ in range(10):
            dy, dx = int(rng.integers(-y, size - y - h)), int(rng.integers(-x, size - x - w))
            moved_mask = np.roll(comp, (dy, dx), axis=(0, 1)).astype(bool)
            if (moved_mask & ~free).mean() < 0.002:
                break
        moved_img = np.roll(image, (dy, dx), axis=(0, 1))
    source[moved_mask] = moved_img[moved_mask]
    changed = moved_mask | (region if kind != "extra" else np.zeros_like(region))
    return source, cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)


def fold(rng, image, fg, donor):
    """A fold or crease (fabric, foil, film): a band along a line, squeezed, with a highlight on one side and a
    shadow on the other."""
    size = image.shape[0]
    y0, x0 = _random_point(rng, fg)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = (xx - x0) * np.sin(angle) - (yy - y0) * np.cos(angle)
    along = (xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle)
    width = rng.uniform(0.015, 0.05) * size
    length = rng.uniform(0.3, 1.0) * size
    band = (np.abs(d) < width) & (np.abs(along) < length / 2)
    squeeze = np.where(band, d * 0.5, 0.0).astype(np.float32)
    mx, my = (xx + squeeze * np.sin(angle)).astype(np.float32), (yy - squeeze * np.cos(angle)).astype(np.float32)
    warped = cv2.remap(image, mx, my, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT)
    light = 1 + rng.uniform(0.25, 0.6) * np.sin(np.pi * np.clip(d / width, -1, 1))
    return _shade(warped, light[..., None]), (band & fg).astype(np.float32)


def misprint(rng, image, fg, donor):
    """Print defects in a band or blob: a double print (the region's content ghosted a few pixels off), a smear
    along one direction, or a faded print whose fine detail is gone."""
    size = image.shape[0]
    mask = perlin_mask(rng, size, (0.01, 0.08)) * fg if rng.random() < 0.5 else np.zeros(image.shape[:2], np.float32)
    if not mask.any():  # a band across the print
        y0, x0 = _random_point(rng, fg)
        h, w = int(rng.uniform(0.03, 0.12) * size), int(rng.uniform(0.1, 0.5) * size)
        mask[max(0, y0 - h // 2):y0 + h // 2 + 1, max(0, x0 - w // 2):x0 + w // 2 + 1] = 1.0
        mask *= fg
    kind = rng.integers(3)
    if kind == 0:
        dy, dx = (int(v) for v in rng.integers(2, max(3, size // 40) + 1, 2) * rng.choice([-1, 1], 2))
        ghost = np.roll(image, (dy, dx), axis=(0, 1)).astype(np.float32)
        source = np.minimum(image.astype(np.float32), ghost) if rng.random() < 0.5 else 0.5 * (image + ghost)
        return source.astype(np.uint8), mask
    if kind == 1:
        k = int(rng.integers(5, max(6, size // 12)))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1.0 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        return cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6)), mask
    return cv2.medianBlur(image, int(rng.choice([5, 7, 9]))), mask


def bend(rng, image, fg, donor):
    """A bent part: a smooth sideways displacement of its outline that fades along its length; only the band the
    outline swept changes, so the label holds no grain speckle from inside the part. Only parts: on a texture the
    same shift of grain is not a visible defect, so a texture gets a fold instead."""
    if fg.mean() > 0.95:
        return fold(rng, image, fg, donor)
    size = image.shape[0]
    y0, x0 = _random_point(rng, fg)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    along = (xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle)
    across = (xx - x0) * np.sin(angle) - (yy - y0) * np.cos(angle)
    sigma, reach = rng.uniform(0.08, 0.25) * size, rng.uniform(0.15, 0.4) * size
    weight = np.exp(-along ** 2 / (2 * sigma ** 2)) * np.exp(-across ** 2 / (2 * reach ** 2))
    amp = rng.uniform(0.015, 0.05) * size * rng.choice([-1, 1])
    shift = (amp * weight).astype(np.float32)
    mx = (xx + shift * np.sin(angle)).astype(np.float32)
    my = (yy - shift * np.cos(angle)).astype(np.float32)
    warped = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    moved = cv2.remap(fg.astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT) > 0
    # Only the outline moves: the part's own grain and shading stay put (a shift of grain is no visible defect)
    outline = cv2.dilate((moved ^ fg).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return warped, ((weight > 0.05) & outline).astype(np.float32)


def trace_fault(rng, image, fg, donor):
    """Faults of thin printed or etched structures (circuit traces, meshes, print): a break or a pin-hole where
    the background shows through a line, a bite out of its edge, a bridge or spur of extra material from it, or a
    stray speck of material. The material is the image's minority tone (Otsu), the background the other."""
    size = image.shape[0]
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.shape[2] == 3 else image[..., 0]
    _, bright = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    material = (bright > 0) if bright.mean() < 0.5 else (bright == 0)
    material &= fg
    if material.sum() < 20 or (~material & fg).sum() < 20:
        return missing_material(rng, image, fg, donor)
    stroke, background = np.median(image[material], axis=0), np.median(image[~material & fg], axis=0)
    source = image.copy()
    mask = np.zeros(image.shape[:2], np.float32)
    depth = cv2.distanceTransform(material.astype(np.uint8), cv2.DIST_L2, 3)  # distance to the background
    ridge = material & (depth >= cv2.dilate(depth, np.ones((3, 3), np.uint8)))  # centre lines of the strokes
    edge = material & (depth <= 1.0)
    for _ in range(int(rng.integers(1, 4))):
        kind = str(rng.choice(["break", "pinhole", "bite", "bridge", "spur", "speck"]))
        one = np.zeros_like(mask)
        if kind in ("bridge", "spur"):  # extra material out of a stroke, as wide as it or thinner
            y, x = _random_point(rng, ridge)
            angle = rng.uniform(0, 2 * np.pi)
            length = size * (rng.uniform(0.05, 0.15) if kind == "bridge" else rng.uniform(0.02, 0.05))
            end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
            cv2.line(one, (x, y), end, 1.0, max(1, int(2 * depth[y, x] * rng.uniform(0.4, 1.0))), cv2.LINE_AA)
        elif kind == "break":  # a disc wider than the stroke, centred on its centre line, cuts it through
            y, x = _random_point(rng, ridge)
            cv2.circle(one, (x, y), int(depth[y, x] + rng.uniform(1, 3)), 1.0, -1, cv2.LINE_AA)
        elif kind == "pinhole":  # a hole inside a stroke wide enough to hold one
            y, x = _random_point(rng, ridge & (depth >= 3))
            cv2.circle(one, (x, y), max(1, int(depth[y, x] * rng.uniform(0.3, 0.6))), 1.0, -1, cv2.LINE_AA)
        else:  # a bite out of a stroke's edge, or a speck of material on the background
            y, x = _random_point(rng, edge if kind == "bite" else ~material & fg)
            cv2.circle(one, (x, y), max(1, int(size * rng.uniform(0.006, 0.02))), 1.0, -1, cv2.LINE_AA)
        # a gap shows the background; extra material has the strokes' tone
        source[one > 0] = background if kind in ("break", "pinhole", "bite") else stroke
        mask = np.maximum(mask, one)
    return source, mask * fg


DEFECTS: dict[str, Callable] = {
    "scratch": scratch, "pit": pit, "stain": stain, "missing_material": missing_material,
    "deformation": deformation, "appearance": appearance, "texture_swap": texture_swap, "cut_paste": cut_paste,
    "foreign_object": foreign_object, "colour_shift": colour_shift, "edge_damage": edge_damage,
    "logical": logical, "fold": fold, "misprint": misprint, "bend": bend, "trace_fault": trace_fault,
}
# The generator's default defects. "trace_fault" is opt-in so that the validation pairs stay the same draw.
DEFAULT_DEFECTS: tuple[str, ...] = tuple(d for d in DEFECTS if d != "trace_fault")


def blend(image: np.ndarray, source: np.ndarray, mask: np.ndarray, opacity: float) -> np.ndarray:
    """A = (1−M)⊙I + (1−δ)(M⊙I) + δ(M⊙P)."""
    m = mask[..., None].astype(np.float32)
    out = (1 - m) * image + (1 - opacity) * m * image + opacity * m * source
    return to_uint8(out)
