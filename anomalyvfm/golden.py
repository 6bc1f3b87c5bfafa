"""Golden-reference comparison for fixed-position parts: align each image to one good reference image (OpenCV ECC),
then compare patch features with the reference's patches in a small neighbourhood, which absorbs the shifts that
alignment leaves."""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


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


def neighbourhood_distance(tokens: torch.Tensor, reference: torch.Tensor, side: int, radius: int = 1) -> torch.Tensor:
    """Cosine distance (B, side²) of each patch of ``tokens`` (B, side², D) to the most similar patch of
    ``reference`` (side², D) within ``radius`` patches of the same position; all L2-normalised."""
    d = reference.shape[-1]
    grid = reference.to(tokens.device, tokens.dtype).T.reshape(1, d, side, side)
    k = 2 * radius + 1
    neighbours = F.unfold(grid, k, padding=radius).view(d, k * k, side * side)  # zero-padded border: similarity 0
    sims = torch.einsum("bnd,dkn->bkn", tokens, neighbours)
    return 1.0 - sims.max(dim=1).values
