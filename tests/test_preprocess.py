import numpy as np
import pytest
from PIL import Image

from anomalyvfm.preprocess import ImageReadError, Tile, plan_tiles, read_image, stitch
from conftest import write_image


def _gradient(h=20, w=30):
    return np.broadcast_to(np.arange(w, dtype=np.uint8)[None, :, None] * 8, (h, w, 3)).copy()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "1", "CMYK"])
def test_any_mode_reads_as_rgb_uint8(tmp_path, mode):
    path = tmp_path / f"img.{'jpg' if mode == 'CMYK' else 'png'}"
    Image.fromarray(_gradient()).convert(mode).save(path)
    rgb = read_image(path)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8


def test_rgba_is_composited_by_alpha(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png")[0, 0, 0] == round(200 * 128 / 255)


def test_sixteen_bit_uses_the_full_range(tmp_path):
    array = np.full((16, 16), 65535, np.uint16)
    array[0, 0] = 0
    Image.fromarray(array).save(tmp_path / "d.png")
    rgb = read_image(tmp_path / "d.png")
    assert rgb[1, 1].tolist() == [255, 255, 255] and rgb[0, 0].tolist() == [0, 0, 0]


def test_exif_rotation_is_applied(tmp_path):
    image = Image.fromarray(_gradient(20, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (30, 20, 3)


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"this is not an image at all", "not an image"),
])
def test_bad_files_raise_a_one_line_reason_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_image_is_reported(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "t.png")


def test_missing_and_directory_inputs(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path / "dir.png")


def test_long_images_are_tiled_not_squashed():
    tiles = plan_tiles(500, 1250, max_aspect=2.0)
    assert [(t.x0, t.x1) for t in tiles] == [(0, 500), (375, 875), (750, 1250)]
    assert all(t.y1 - t.y0 == 500 for t in tiles)
    assert plan_tiles(400, 600, max_aspect=2.0) == [Tile(0, 400, 0, 600)]
    assert len(plan_tiles(1250, 500, max_aspect=2.0)) == 3


def test_a_tile_size_cuts_large_images_into_an_overlapping_grid():
    tiles = plan_tiles(640, 500, max_aspect=2.0, tile_size=224)
    assert sorted({(t.y0, t.y1) for t in tiles}) == [(0, 224), (208, 432), (416, 640)]
    assert sorted({(t.x0, t.x1) for t in tiles}) == [(0, 224), (138, 362), (276, 500)]
    assert len(tiles) == 9
    assert plan_tiles(200, 300, max_aspect=2.0, tile_size=224) == [Tile(0, 200, 0, 300)]  # small: whole
    assert len(plan_tiles(200, 900, max_aspect=2.0, tile_size=224)) == 5  # small but long: along its length


def test_stitch_averages_overlaps_back_to_the_original_size():
    tiles = plan_tiles(10, 25, max_aspect=2.0)
    maps = [np.full((4, 4), float(i), np.float32) for i in range(len(tiles))]
    out = stitch(maps, tiles, 10, 25)
    assert out.shape == (10, 25)
    assert out[0, 0] == 0.0 and out[0, 24] == len(tiles) - 1
    overlap = tiles[0].x1 - 1
    assert 0.0 < out[5, overlap] < len(tiles) - 1


def test_arrays_of_any_pixel_type_read_as_the_same_image():
    """float [0, 1] (scikit-image's convention), float 0-255, uint16, int64 and bool arrays: the same uint8 RGB a
    uint8 array gives (a float RGB array raised PIL's TypeError before), and normalised values are refused."""
    from anomalyvfm.preprocess import load

    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), np.uint8)
    assert np.array_equal(load(rgb / 255.0), rgb) and np.array_equal(load(rgb.astype(np.float32) / 255), rgb)
    assert np.array_equal(load(rgb.astype(np.float64)), rgb) and np.array_equal(load(rgb.astype(np.int64)), rgb)
    assert np.array_equal(load(rgb.astype(np.uint16) * 257), rgb)
    assert np.array_equal(load(rgb[..., 0] > 127), np.repeat((rgb[..., :1] > 127) * 255, 3, axis=2))
    for bad, reason in (((rgb - 128.0) / 64, "pixels run from"), (np.full((4, 4), np.nan), "NaN")):
        with pytest.raises(ValueError, match=reason):
            load(bad)


def test_one_path_or_image_alone_is_a_batch_of_one(tiny_model, tmp_path):
    """predict("part.png") scored each character of the string as a missing file; one image alone is one input."""
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "part.png")
    for single in (str(tmp_path / "part.png"), tmp_path / "part.png", image, Image.fromarray(image)):
        [result] = tiny_model.predict(single, resolution=56)
        assert result.ok
    stack = np.stack([image, image[::-1]])
    assert len(tiny_model.predict(stack, resolution=56)) == 2  # an (N, H, W, C) array is N images


def test_encoded_bytes_and_open_files_are_images_too(tiny_model, tmp_path):
    """An image file's bytes (an upload, a camera SDK's buffer) were read as a 0-d array ('got ()'), and a None or a
    number gave Python's 'object is not iterable'."""
    import io

    path = write_image(tmp_path / "a.png", size=(40, 60), seed=3)
    raw = path.read_bytes()
    expected = tiny_model.predict(path, resolution=56)[0].score
    with open(path, "rb") as f:
        results = tiny_model.predict([raw, bytearray(raw), io.BytesIO(raw), f, b"", b"junk", 5], resolution=56)
    assert [r.score for r in results[:4]] == pytest.approx([expected] * 4, abs=1e-6)
    assert results[3].name == str(path) and results[0].name == "<image 0>"
    assert [r.error for r in results[4:]] == ["empty (0 bytes)", "not an image (unrecognised format)",
                                              "cannot read a int as an image: give a path, PIL image, array or an "
                                              "image file's bytes"]
    assert tiny_model.predict(raw, resolution=56)[0].score == pytest.approx(expected, abs=1e-6)  # alone: a batch of one
    with pytest.raises(TypeError, match="images must be a path, PIL image, array or an image file's bytes"):
        tiny_model.predict(None)


def test_a_blank_picture_is_refused_from_any_source_and_a_faint_one_is_not(tmp_path):
    """A covered lens or failed capture (every pixel within 2 grey levels) holds nothing to inspect: a file, its
    bytes, a PIL image or an array all raise the same reason; 3 levels apart is a picture."""
    import io

    from anomalyvfm.preprocess import load

    flat = np.full((20, 30, 3), 40, np.uint8)
    flat[0, 0] = 42
    Image.fromarray(flat).save(tmp_path / "flat.png")
    for item in (tmp_path / "flat.png", str(tmp_path / "flat.png"), (tmp_path / "flat.png").read_bytes(),
                 io.BytesIO((tmp_path / "flat.png").read_bytes()), Image.fromarray(flat), flat, flat[..., 0]):
        with pytest.raises(ImageReadError, match=r"blank: every pixel lies within 2 grey levels \(40–42\)"):
            load(item)
    flat[0, 0] = 43
    assert np.array_equal(load(flat), flat)


def test_twelve_bit_data_in_a_sixteen_bit_file_warns_once(tmp_path, monkeypatch):
    """A 12-bit camera's values (0–4095) on the 16-bit scale read as nearly black: one warning naming the first such
    file, not one per image; full-range 16-bit images say nothing."""
    import warnings

    import anomalyvfm.preprocess as preprocess

    monkeypatch.setattr(preprocess, "_warned_depth", False)
    for name, top in (("a.png", 4000), ("b.png", 4095), ("full.png", 60000)):
        Image.fromarray(np.linspace(0, top, 400).reshape(20, 20).astype(np.uint16)).save(tmp_path / name)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        dark = read_image(tmp_path / "a.png")
        read_image(tmp_path / "b.png")
    assert len(seen) == 1 and f"{tmp_path / 'a.png'}: its values stay under 4096 (at most 4000" in str(seen[0].message)
    assert dark.max() == 16  # read as it is: nearly black
    monkeypatch.setattr(preprocess, "_warned_depth", False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        read_image(tmp_path / "full.png")
        preprocess.load(np.linspace(0, 60000, 400).reshape(20, 20).astype(np.uint16))
    assert not seen
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        preprocess.load(np.linspace(0, 4000, 400).reshape(20, 20).astype(np.uint16))  # an array from the API too
    assert len(seen) == 1 and "a uint16 image array: its values stay under 4096" in str(seen[0].message)
