import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from anomalyvfm.metrics import image_metrics, pixel_metrics


def _brute_f1max(labels, scores):
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        tp = np.sum(pred & (labels == 1))
        if tp:
            p, r = tp / pred.sum(), tp / labels.sum()
            best = max(best, 2 * p * r / (p + r))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_image_metrics_equal_sklearn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.4 * labels, 2)  # rounding creates ties
    m = image_metrics(labels, scores)
    assert m["I-AUROC"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    assert m["I-AP"] == pytest.approx(average_precision_score(labels, scores), abs=1e-6)
    assert m["I-F1max"] == pytest.approx(_brute_f1max(labels, scores), abs=1e-6)


def test_aupro_small_case_by_hand():
    # one region of 2 pixels, 2 normal pixels. Thresholds 0.9/0.8/0.1/0.0 give (FPR, PRO) = (0, .5), (.5, .5),
    # (.5, 1), (1, 1); up to FPR 0.3 the curve is flat at 0.5, so the normalised area is 0.5.
    mask = np.array([[1, 1, 0, 0]], bool)
    amap = np.array([[0.9, 0.1, 0.8, 0.0]], np.float32)
    assert pixel_metrics([mask], [amap])["AUPRO@0.3"] == pytest.approx(0.5, abs=1e-6)


def _reference_aupro(masks, maps, max_fpr=0.3):
    """Independent step-by-step computation: per threshold, per-region overlap from connected components."""
    eight = np.ones((3, 3))
    regions = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=eight)
        regions += [(i, lab == j) for j in range(1, n + 1)]
    normal = np.concatenate([~m.ravel() for m in masks])
    all_scores = np.concatenate([a.ravel() for a in maps])
    fprs, pros = [0.0], [0.0]
    for t in np.unique(all_scores)[::-1]:
        pros.append(np.mean([np.mean(maps[i][r] >= t) for i, r in regions]))
        fprs.append(np.sum((all_scores >= t) & normal) / normal.sum())
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= max_fpr
    x, y = fprs[keep], pros[keep]
    nxt = np.argmax(fprs > max_fpr)
    if fprs[nxt] > max_fpr and x[-1] < max_fpr:
        y_cut = pros[nxt - 1] + (pros[nxt] - pros[nxt - 1]) * (max_fpr - fprs[nxt - 1]) / (fprs[nxt] - fprs[nxt - 1])
        x, y = np.r_[x, max_fpr], np.r_[y, y_cut]
    return np.trapezoid(y, x) / max_fpr


@pytest.mark.parametrize("seed", range(3))
def test_aupro_matches_an_independent_computation(seed):
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for _ in range(3):
        m = np.zeros((12, 12), bool)
        m[2:5, 2:6] = True
        m[8:11, 7 + seed:10] = True
        masks.append(m)
        maps.append(np.round(rng.random((12, 12)) * 0.7 + 0.3 * m, 2).astype(np.float32))
    masks.append(np.zeros((12, 12), bool))
    maps.append(np.round(rng.random((12, 12)) * 0.7, 2).astype(np.float32))
    got = pixel_metrics(masks, maps)["AUPRO@0.3"]
    assert got == pytest.approx(_reference_aupro(masks, maps), abs=1e-3)


def test_pixel_metrics_at_mask_resolution_and_reduced():
    import cv2

    mask = np.zeros((64, 64), bool)
    mask[10:30, 10:30] = True
    amap = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    amap[3:7, 3:7] += 0.5
    upsized = cv2.resize(amap, (64, 64), interpolation=cv2.INTER_LINEAR)  # the map is brought to the GT size
    full = pixel_metrics([mask], [amap])
    assert full["P-AUROC"] == pytest.approx(roc_auc_score(mask.ravel(), upsized.ravel()), abs=1e-6)
    assert full["P-AP"] == pytest.approx(average_precision_score(mask.ravel(), upsized.ravel()), abs=1e-6)
    small_mask = cv2.resize(mask.astype(np.uint8), (32, 32), interpolation=cv2.INTER_NEAREST).astype(bool)
    small_map = cv2.resize(amap, (32, 32), interpolation=cv2.INTER_LINEAR)
    reduced = pixel_metrics([mask], [amap], max_side=32)
    assert reduced["P-AUROC"] == pytest.approx(roc_auc_score(small_mask.ravel(), small_map.ravel()), abs=1e-6)


def test_metrics_without_positives_are_nan():
    assert np.isnan(image_metrics([0, 0, 0], [0.1, 0.2, 0.3])["I-AUROC"])
