"""Copy scikit-image's public-domain / CC0 sample photographs into the package as the generator's ``photo`` normals.

    pip install scikit-image==0.26.0 && python -m training.make_photos

Writes anomalyvfm/synth/photos/<name>.jpg (longer side at most 512 px, JPEG quality 90) and SOURCES.md with each
image's licence as scikit-image documents it. Only images whose licence is stated as CC0 or public domain are
taken; moon, page, logo and horse (a binary silhouette) are left out. The package never imports scikit-image.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

OUT = Path(__file__).resolve().parents[1] / "anomalyvfm" / "synth" / "photos"
# name -> (scikit-image loader, licence as its docstring states it)
PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("astronaut", "public domain (NASA)"),
    "brick": ("brick", "CC0 (CC0Textures, Bricks25)"),
    "camera": ("camera", "CC0 (Lav Varshney)"),
    "cell": ("cell", "CC0"),
    "chelsea": ("chelsea", "CC0 (Stefan van der Walt)"),
    "clock": ("clock", "public domain (Stefan van der Walt)"),
    "coffee": ("coffee", "CC0 (Rachel Michetti)"),
    "coins": ("coins", "no known copyright restrictions (Brooklyn Museum)"),
    "grass": ("grass", "CC0 (CC0Textures)"),
    "gravel": ("gravel", "CC0 (CC0Textures, Gravel04)"),
    "hubble_deep_field": ("hubble_deep_field", "public domain (NASA)"),
    "microaneurysms": ("microaneurysms", "CC0 (Andreas Maier)"),
    "retina": ("retina", "CC0 1.0 (Häggström, Mikael)"),
    "rocket": ("rocket", "public domain (SpaceX)"),
    "text": ("text", "public domain"),
}


def main() -> int:
    import skimage
    import skimage.data

    OUT.mkdir(parents=True, exist_ok=True)
    lines = ["# Photographs used as normal images by the generator", "",
             f"Taken from scikit-image {skimage.__version__} (`skimage.data`) by `python -m training.make_photos`; "
             "resized so the longer side is at most 512 px, JPEG quality 90. Licences as scikit-image's docstrings "
             "state them.", "", "| file | scikit-image loader | licence |", "|---|---|---|"]
    for name, (loader, licence) in PHOTOS.items():
        img = np.asarray(getattr(skimage.data, loader)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3].astype(np.uint8)
        scale = 512 / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                             interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(OUT / f"{name}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines.append(f"| {name}.jpg | `skimage.data.{loader}()` | {licence} |")
    (OUT / "SOURCES.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(PHOTOS)} photographs to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
