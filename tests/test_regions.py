"""The verdict's mask and its regions: a flagged image always names the region that drove it."""
import json

import numpy as np

from anomalyvfm.regions import find_regions, mask_threshold, verdict_mask

from conftest import write_image


def _map_with_blob(peak=0.3):
    amap = np.zeros((40, 60), np.float32)
    amap[10:20, 30:50] = peak * 0.8
    amap[14, 40] = peak
    amap[30:33, 5:8] = peak * 0.6  # a second, smaller and weaker blob
    return amap


def test_a_flagged_map_under_the_pixel_threshold_still_outlines_its_peak():
    amap = _map_with_blob(0.3)
    assert not verdict_mask(amap, 0.5, flagged=False).any()  # a normal verdict keeps the plain threshold
    mask = verdict_mask(amap, 0.5, flagged=True)
    assert mask[14, 40] and mask[12, 32] and mask.sum() < amap.size  # the peak's region, not the whole image
    assert abs(mask_threshold(amap, 0.5, True) - 0.15) < 1e-6
    assert mask_threshold(amap, 0.1, True) == 0.1  # the pixel threshold wins where it is lower


def test_regions_are_sorted_strongest_first_with_box_area_and_scores():
    amap = _map_with_blob(0.9)
    regions = find_regions(verdict_mask(amap, 0.5, True), amap)
    assert [r.box for r in regions] == [(30, 10, 50, 20), (5, 30, 8, 33)]
    big = regions[0]
    assert big.area == 200 and big.area_pct == round(100 * 200 / (40 * 60), 3)
    assert big.peak == np.float32(0.9) and 0.72 <= big.mean < 0.9
    assert find_regions(np.zeros((4, 4), bool), np.zeros((4, 4))) == []
    amap[30:33, 5:8] = 1.0  # the small blob now peaks higher than the large one: it is listed first
    assert [r.box for r in find_regions(verdict_mask(amap, 0.5, True), amap)] == [(5, 30, 8, 33), (30, 10, 50, 20)]


def test_predict_writes_regions_that_agree_with_the_verdict(tiny_model, tmp_path):
    paths = [str(write_image(tmp_path / f"{i}.png", seed=i)) for i in range(3)]
    preds = tiny_model.predict(paths, threshold=-1.0, pixel_threshold=2.0, out=tmp_path / "out")  # all flagged
    for p in preds:
        assert p.is_anomalous and p.regions, p.name
        y, x = np.unravel_index(np.argmax(p.anomaly_map), p.anomaly_map.shape)
        assert p.mask[y, x]
        assert any(r.box[0] <= x < r.box[2] and r.box[1] <= y < r.box[3] for r in p.regions)
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert all(row["regions"] and row["regions"][0]["area"] > 0 for row in rows)
    csv = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert csv[0].split(",")[6:8] == ["regions", "largest_region_pct"]
    assert all(int(line.split(",")[6]) >= 1 for line in csv[1:])
