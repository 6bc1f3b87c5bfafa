"""Golden-reference alignment for fixed-position parts: each image is aligned to one good reference image (OpenCV ECC)
before its patches are compared with the reference's in a small neighbourhood (``MemoryBank(golden=True)``), which
absorbs the shifts that alignment leaves."""
from __future__ import annotations

import cv2
import numpy as np


def align(image: np.ndarray, reference: np.ndarray, max_side: int = 256,
          motion: int = cv2.MOTION_EUCLIDEAN) -> tuple[np.ndarray, np.ndarray | None]:
    """``image`` (resized to the reference's size) warped onto ``reference`` by an ECC-estimated rigid motion, and
    the 2×3 warp (reference → image coordinates; None if ECC did not converge and the image is only resized).
    ``unwarp`` takes a map computed on the aligned image back to the image's own frame."""
    h, w = reference.shape[:2]
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA) if image.shape[:2] != (h, w) else image
    scale = min(1.0, max_side / max(h, w))
    small = (max(8, round(w * scale)), max(8, round(h * scale)))
    ref_g = cv2.resize(cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY), small).astype(np.float32)
    img_g = cv2.resize(cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY), small).astype(np.float32)
    warp = np.eye(2, 3, dtype=np.float32)
    try:
        _, warp = cv2.findTransformECC(ref_g, img_g, warp, motion,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5), None, 5)
    except cv2.error:
        return resized, None
    warp[:, 2] /= scale
    aligned = cv2.warpAffine(resized, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
    return aligned, warp


def unwarp(amap: np.ndarray, warp: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """A map on the aligned image (reference frame) back to the original image's frame and size."""
    if warp is not None:
        amap = cv2.warpAffine(amap, warp, (amap.shape[1], amap.shape[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(amap, (width, height), interpolation=cv2.INTER_LINEAR) if amap.shape != (height, width) \
        else amap
