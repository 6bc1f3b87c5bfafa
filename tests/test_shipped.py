"""The default checkpoint shipped inside the package: it loads without a flag, it is the one its model card
describes, and it ranks real defective images above good ones."""
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from anomalyvfm.cards import weights_sha256
from anomalyvfm.model import AnomalyVFM, load_default, shipped_checkpoint

from conftest import shared_images

CARD = Path(__file__).resolve().parents[1] / "model_cards" / "anomalyvfm-vits14.md"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shipped() -> AnomalyVFM:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the "untrained" warning must not fire
        return load_default()


def test_shipped_checkpoint_is_trained_and_used_by_default(shipped):
    assert (shipped_checkpoint() / "heads.safetensors").is_file()
    assert shipped.config.trained and shipped.config.backbone == "embedded"
    assert not any(p.suffix in (".bin", ".pt", ".pth", ".pkl") for p in shipped_checkpoint().iterdir())


def test_the_previous_checkpoints_stay_loadable_by_name():
    from anomalyvfm.model import shipped_names

    assert {"anomalyvfm-vits14", "anomalyvfm-vits14-v1", "anomalyvfm-vits14-v2", "anomalyvfm-vits14-v6"} <= set(
        shipped_names())
    v1 = load_default("anomalyvfm-vits14-v1")
    assert v1.config.trained and v1.config.decoder.layers == (-1,) and v1.config.decoder.image_head == "cls"
    v2, default = load_default("anomalyvfm-vits14-v2"), load_default()
    assert v2.config.trained and v2.config.decoder.image_head == default.config.decoder.image_head == "cls+map"
    assert weights_sha256(shipped_checkpoint("anomalyvfm-vits14-v2")) != weights_sha256(shipped_checkpoint())
    v6 = load_default("anomalyvfm-vits14-v6")  # the same weights as the default, as v6 shipped: a single pass
    assert weights_sha256(shipped_checkpoint("anomalyvfm-vits14-v6")) == weights_sha256(shipped_checkpoint())
    assert (default.config.test_views, v6.config.test_views) == ("flips", "single")
    # each its own synthetic threshold, from the protocol of its time (clean normals; then seen through imaging)
    assert (v2.config.threshold, v6.config.threshold, default.config.threshold) == (0.6586, 0.6109, 0.5977)


def test_shipped_checkpoint_matches_its_model_card():
    card = CARD.read_text()
    found = re.search(r"sha256 of the trained weights: `([0-9a-f]{64})`", card)
    assert found, f"{CARD} does not state the weights' sha256"
    assert found.group(1) == weights_sha256(shipped_checkpoint())
    assert "library_name: anomalyvfm" in card and "model-index" in card


def test_shipped_checkpoint_scores_real_defects_above_good_parts(shipped):
    good = shared_images("magnetic_tile", "magnetic_tile", "good", 12)
    bad = [p for kind in ("blowhole", "break", "crack", "fray", "uneven")
           for p in shared_images("magnetic_tile", "magnetic_tile", kind, 3)]
    results = shipped.predict(good + bad, batch_size=8)
    assert all(r.ok for r in results)
    scores = np.array([r.score for r in results])
    assert scores[len(good):].mean() > scores[:len(good)].mean()


def test_onnx_export_of_the_shipped_checkpoint_matches_pytorch_on_real_images(shipped, tmp_path):
    from anomalyvfm.export import OnnxModel, export_onnx

    images = shared_images("magnetic_tile", "magnetic_tile", "crack", 2) + \
        shared_images("magnetic_tile", "magnetic_tile", "good", 2)
    expected = shipped.predict(images, mode="fast")
    got = OnnxModel(export_onnx(shipped, tmp_path / "shipped.onnx", mode="fast")).predict(images)
    for a, b in zip(expected, got):
        assert abs(a.score - b.score) <= 1e-3
        assert np.abs(a.anomaly_map - b.anomaly_map).max() <= 1e-3
