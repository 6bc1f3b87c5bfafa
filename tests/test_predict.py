import numpy as np
import pytest
from PIL import Image

from anomalyvfm import ImageReadError
from anomalyvfm.config import AnomalyVFMConfig
from anomalyvfm.predict import collect_inputs
from anomalyvfm.regions import mask_threshold
from conftest import write_image


def test_predict_returns_maps_at_the_original_size(tiny_model, tmp_path):
    paths = [write_image(tmp_path / "a.png", (40, 60)), write_image(tmp_path / "b.png", (30, 30), seed=1)]
    results = tiny_model.predict(paths, batch_size=2, resolution=56)
    assert [r.anomaly_map.shape for r in results] == [(40, 60), (30, 30)]
    for r in results:
        assert r.ok and 0.0 <= r.score <= 1.0 and r.anomaly_map.dtype == np.float32
        t = mask_threshold(r.anomaly_map, 0.5, r.is_anomalous)
        assert r.mask.dtype == bool and (r.mask == (r.anomaly_map > t)).all()
        assert r.is_anomalous == (r.score > tiny_model.config.threshold)
        assert r.scores[tiny_model.config.image_score] == r.score
        assert r.scores["fused"] == pytest.approx((r.scores["cls"] + r.scores["topk"]) / 2, abs=1e-6)


def test_a_bad_file_does_not_stop_the_batch(tiny_model, tmp_path):
    good = write_image(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    results = tiny_model.predict([good, bad, good], batch_size=2, resolution=56)
    assert [r.ok for r in results] == [True, False, True]
    assert "empty file" in results[1].error and results[1].name == str(bad)
    with pytest.raises(ImageReadError):
        tiny_model.predict([good, bad], resolution=56, errors="raise")


def test_batching_does_not_change_results(tiny_model, tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", (28 + 7 * i, 56), seed=i) for i in range(5)]
    one = tiny_model.predict(paths, batch_size=1, resolution=56)
    many = tiny_model.predict(paths, batch_size=4, resolution=56)
    assert np.allclose([r.score for r in one], [r.score for r in many], atol=1e-5)
    assert all(np.allclose(a.anomaly_map, b.anomaly_map, atol=1e-5) for a, b in zip(one, many))


def test_threshold_override_and_array_inputs(tiny_model):
    image = np.random.default_rng(0).integers(0, 255, (50, 50), np.uint8)
    low = tiny_model.predict([image, Image.fromarray(image)], resolution=56, threshold=0.0)
    high = tiny_model.predict([image], resolution=56, threshold=1.0)
    assert low[0].is_anomalous and not high[0].is_anomalous
    assert low[0].score == pytest.approx(low[1].score)


def test_long_images_are_scored_per_tile(tiny_model):
    image = np.random.default_rng(0).integers(0, 255, (20, 70, 3), np.uint8)
    [result] = tiny_model.predict([image], resolution=56)
    tiles = [tiny_model.predict([image[:, x:x + 20]], resolution=56)[0].score for x in (0, 17, 33, 50)]
    assert result.anomaly_map.shape == (20, 70)
    assert result.score == pytest.approx(max(tiles), abs=1e-5)


def test_a_tile_size_scores_a_large_image_as_its_most_anomalous_tile(tiny_model):
    image = np.random.default_rng(1).integers(0, 255, (60, 90, 3), np.uint8)
    whole = tiny_model.predict([image], resolution=56)[0].score
    tiny_model.config.tile_size = 40
    try:
        [result] = tiny_model.predict([image], resolution=56)
        tiny_model.config.tile_size = 0
        tiles = [tiny_model.predict([image[y:y + 40, x:x + 40]], resolution=56)[0]
                 for y in (0, 20) for x in (0, 25, 50)]
    finally:
        tiny_model.config.tile_size = 0
    assert result.anomaly_map.shape == (60, 90)
    assert result.score == pytest.approx(max(t.score for t in tiles), abs=1e-5)
    assert result.score != pytest.approx(whole, abs=1e-5)
    corner = tiles[0].anomaly_map[:20, :25]  # seen by the first tile only: its map, unaveraged
    assert np.allclose(result.anomaly_map[:20, :25], corner, atol=1e-5)


def test_a_tile_size_that_would_need_too_many_tiles_is_refused_per_image(tiny_model):
    tiny_model.config.tile_size = 28
    try:
        rng = np.random.default_rng(0)
        results = tiny_model.predict([rng.integers(0, 256, (28 * 17, 28 * 17, 3), dtype=np.uint8),
                                      rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)], resolution=56)
    finally:
        tiny_model.config.tile_size = 0
    assert "needs 289 of them, over the 256 limit" in results[0].error
    assert results[1].ok
    with pytest.raises(ValueError, match="tile_size"):
        AnomalyVFMConfig(tile_size=10)


def test_collect_inputs_expands_folders_and_globs(tmp_path):
    a = write_image(tmp_path / "x" / "a.png")
    b = write_image(tmp_path / "x" / "sub" / "b.jpg")
    (tmp_path / "x" / "notes.txt").write_text("hi")
    assert collect_inputs([str(tmp_path / "x")]) == [str(a), str(b)]
    assert collect_inputs([str(tmp_path / "x" / "*.png"), str(a)]) == [str(a)]
    assert collect_inputs([str(tmp_path / "x" / "notes.txt")]) == [str(tmp_path / "x" / "notes.txt")]


def test_folder_scans_leave_out_hidden_files_and_folders(tmp_path):
    """A folder copied from a Mac holds a ``._name.jpg`` twin of every image (not an image: each was a failed row),
    and tools leave ``.thumbs`` or ``.ipynb_checkpoints`` copies; a folder scan skips them, a named file is kept."""
    a = write_image(tmp_path / "x" / "a.jpg")
    (tmp_path / "x" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    write_image(tmp_path / "x" / ".thumbs" / "a.jpg")
    assert collect_inputs([str(tmp_path / "x")]) == [str(a)]
    b = write_image(tmp_path / ".cache" / "run" / "b.png")
    assert collect_inputs([str(tmp_path)]) == [str(a)]
    assert collect_inputs([str(tmp_path / ".cache")]) == [str(b)]  # a hidden folder the user names is scanned
