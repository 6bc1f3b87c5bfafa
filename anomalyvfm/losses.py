"""Training losses: focal, the AnomalyVFM pixel loss, its confidence weighting (DUSt3R-style), the image loss and
the anchor that keeps a continued run's outputs on good images near another checkpoint's."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss


def pixel_loss(mask_logits: torch.Tensor, target: torch.Tensor, focal_weight: float = 5.0,
               focal_alpha: float = -1.0) -> torch.Tensor:
    """Per-pixel L = 5·focal(m, y) + |clip(σ(m), 0.1, 0.9) − y| (no reduction); ``focal_alpha`` −1 weighs both
    classes alike (ours), 0.25 is the published recipe's choice."""
    focal = sigmoid_focal_loss(mask_logits, target, alpha=focal_alpha, gamma=2.0, reduction="none")
    l1 = (torch.sigmoid(mask_logits).clamp(0.1, 0.9) - target).abs()
    return focal_weight * focal + l1


def confidence_weighted(loss: torch.Tensor, confidence_logits: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    """mean(c·L − α·log c) with c = 1 + exp(ĉ); log c is softplus(ĉ), computed stably. ĉ is capped at 30 so that
    c stays finite in float32 (c·0 would otherwise be inf·0 = nan)."""
    log_c = F.softplus(confidence_logits.clamp(max=30.0))
    return (torch.exp(log_c) * loss - alpha * log_c).mean()


def image_loss(image_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Focal loss on the image-level logit."""
    return sigmoid_focal_loss(image_logits, labels.to(image_logits.dtype), alpha=-1, gamma=2.0, reduction="mean")


def anomalyvfm_loss(mask_logits: torch.Tensor, confidence_logits: torch.Tensor, image_logits: torch.Tensor,
                    masks: torch.Tensor, labels: torch.Tensor, alpha: float = 0.1,
                    image_weight: float = 1.0, focal_alpha: float = -1.0,
                    binary_targets: bool = False, mask_resize: str = "bilinear") -> torch.Tensor:
    """The full objective: confidence-weighted pixel loss on masks resized to the logits' size, plus image loss.
    ``mask_resize`` "bilinear" samples the mask (at a whole-number factor such as 224 → 32 it picks one pixel per
    cell, so a 1-px scratch is mostly lost); "area" gives each cell the fraction of it that is anomalous.
    ``binary_targets`` thresholds the resized mask at 0.5, as the published recipe does."""
    if mask_resize not in ("bilinear", "area"):
        raise ValueError(f"mask_resize must be 'bilinear' or 'area', got {mask_resize!r}")
    if masks.shape[-2:] != mask_logits.shape[-2:]:
        masks = F.interpolate(masks, size=mask_logits.shape[-2:], mode=mask_resize,
                              **({"align_corners": False} if mask_resize == "bilinear" else {}))
    if binary_targets:
        masks = (masks > 0.5).to(masks.dtype)
    pixel = confidence_weighted(pixel_loss(mask_logits, masks, focal_alpha=focal_alpha), confidence_logits, alpha)
    return pixel + image_weight * image_loss(image_logits, labels)


def bernoulli_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean KL(σ(teacher) ‖ σ(student)) over every element: 0 where the two agree, gradient σ(s) − σ(t)."""
    p = torch.sigmoid(teacher_logits)
    return (F.binary_cross_entropy_with_logits(student_logits, p, reduction="mean")
            - F.binary_cross_entropy_with_logits(teacher_logits, p, reduction="mean"))
