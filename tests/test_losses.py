import math

import torch

from anomalyvfm.losses import anomalyvfm_loss, confidence_weighted, image_loss, pixel_loss


def test_pixel_loss_matches_the_formula_by_hand():
    logits = torch.tensor([0.0, 3.0])
    target = torch.tensor([1.0, 0.0])
    p = torch.sigmoid(logits)
    focal = torch.stack([-(1 - p[0]) ** 2 * torch.log(p[0]), -p[1] ** 2 * torch.log(1 - p[1])])
    l1 = torch.tensor([0.5, 0.9])  # |clip(0.5) - 1| and |clip(σ(3) = 0.95) - 0|
    assert torch.allclose(pixel_loss(logits, target), 5 * focal + l1, atol=1e-6)


def test_confidence_weighting_is_c_times_loss_minus_alpha_log_c():
    loss = torch.tensor([0.2, 1.5, 0.0])
    conf = torch.tensor([-2.0, 0.0, 4.0])
    c = 1 + torch.exp(conf)
    expected = (c * loss - 0.1 * torch.log(c)).mean()
    assert torch.allclose(confidence_weighted(loss, conf, alpha=0.1), expected, atol=1e-6)
    assert math.isfinite(confidence_weighted(loss, torch.tensor([200.0, 200.0, 200.0])).item())


def test_confidence_is_pushed_down_where_the_loss_is_high():
    conf = torch.zeros(2, requires_grad=True)
    confidence_weighted(torch.tensor([5.0, 0.0]), conf).backward()
    assert conf.grad[0] > 0 > conf.grad[1]  # descent lowers confidence on the hard pixel, raises it on the easy one


def test_image_loss_is_lower_for_correct_logits():
    labels = torch.tensor([1.0, 0.0])
    assert image_loss(torch.tensor([4.0, -4.0]), labels) < image_loss(torch.tensor([-4.0, 4.0]), labels)


def test_full_loss_resizes_masks_and_backpropagates():
    mask_logits = torch.zeros(2, 1, 8, 8, requires_grad=True)
    total = anomalyvfm_loss(mask_logits, torch.zeros(2, 1, 8, 8), torch.zeros(2), torch.ones(2, 1, 32, 32),
                            torch.tensor([1, 0]))
    total.backward()
    assert total.item() > 0 and mask_logits.grad.abs().sum() > 0


def test_area_targets_keep_a_thin_scratch_that_bilinear_sampling_loses():
    """At 224 → 32 bilinear resizing samples one pixel per 7×7 cell, so a 1-px line off those pixels vanishes from the
    target; "area" keeps it as the fraction 1/7 of each cell it crosses."""
    import pytest

    masks = torch.zeros(1, 1, 224, 224)
    masks[0, 0, 100, :] = 1.0  # row 100 = 7·14 + 2: not a sampled row (7·i + 3)
    zero_logits = torch.zeros(1, 1, 32, 32)
    # a perfect prediction for an empty target: the loss differs only if the target kept the line
    empty = anomalyvfm_loss(torch.full((1, 1, 32, 32), -20.0), zero_logits, torch.zeros(1), masks, torch.ones(1))
    area = anomalyvfm_loss(torch.full((1, 1, 32, 32), -20.0), zero_logits, torch.zeros(1), masks, torch.ones(1),
                           mask_resize="area")
    none = anomalyvfm_loss(torch.full((1, 1, 32, 32), -20.0), zero_logits, torch.zeros(1),
                           torch.zeros_like(masks), torch.ones(1))
    assert torch.isclose(empty, none) and area > none + 1e-3
    with pytest.raises(ValueError, match="area"):
        anomalyvfm_loss(zero_logits, zero_logits, torch.zeros(1), masks, torch.ones(1), mask_resize="nearest")
