"""Self-similarity scoring of one image: a patch unlike the rest of its own image scores high."""
import pytest
import torch

from anomalyvfm.config import AnomalyVFMConfig, SelfSimilarityConfig
from anomalyvfm.mutual import image_statistic
from anomalyvfm.self_similarity import self_distances, self_map


def _repetitive(odd: tuple[int, int] | None = (2, 5), side: int = 8, dim: int = 16) -> torch.Tensor:
    """(1, side², dim) tokens: two alternating normal patterns (a texture) and, at ``odd``, one unlike them."""
    torch.manual_seed(0)
    a, b, c = torch.nn.functional.normalize(torch.randn(3, dim), dim=-1)
    grid = torch.stack([a if (i + j) % 2 else b for i in range(side) for j in range(side)]).view(side, side, dim)
    if odd is not None:
        grid[odd] = c
    return grid.reshape(1, side * side, dim)


def test_the_odd_patch_of_a_repetitive_image_scores_highest():
    z = torch.nn.functional.normalize(_repetitive(), dim=-1)
    scores = self_distances(z, 8, nearest=0.05).view(8, 8)
    assert scores.argmax() == 2 * 8 + 5 and scores[2, 5] > 1.0 and scores.flatten().sort().values[-2] < 1e-3
    assert self_distances(torch.nn.functional.normalize(_repetitive(None), dim=-1), 8, 0.05).max() < 1e-3


def test_excluding_the_neighbourhood_stops_a_defect_matching_itself():
    z = _repetitive(None).view(8, 8, -1).clone()
    z[2:4, 2:4] = torch.nn.functional.normalize(torch.ones(16), dim=0)  # a 2x2 defect: each cell has a twin next to it
    z = z.reshape(1, 64, -1)
    near = self_distances(z, 8, nearest=1 / 64, exclude=0).view(8, 8)
    far = self_distances(z, 8, nearest=1 / 64, exclude=1).view(8, 8)
    assert near[2, 2] < 1e-3 and far[2, 2] > 0.5  # its twin lies within one patch: excluded, it finds none


def test_self_map_averages_layers_and_degrees_and_the_statistics():
    cfg = SelfSimilarityConfig(layers=(0, 1), radii=(1, 3), nearest=0.05)
    tokens = [_repetitive(), _repetitive()]
    m = self_map(tokens, cfg)
    assert m.shape == (1, 8, 8) and m[0].flatten().argmax() == 2 * 8 + 5
    flat = torch.arange(100.0).view(1, 10, 10)
    assert image_statistic(flat, "max") == 99.0 and image_statistic(flat, "top1") == 99.0  # 1% of 100 = 1 patch


def test_cls_self_rule_mixes_z_scores_over_the_normals(tiny_model):
    x = torch.randn(2, 3, 56, 56)
    plain = tiny_model(x)  # the default rule (cls) does not pay for self-similarity
    assert plain.self_scores is None and "self" not in tiny_model.scores(plain, 56)[0]
    tiny_model.config.image_score = "cls+self"
    tiny_model.config.normal_stats = {"cls": (1.0, 2.0), "self": (0.5, 0.25)}
    tiny_model.config.self_weight = 0.75
    out = tiny_model(x)
    assert out.self_scores.shape == (2,) and torch.isfinite(out.self_scores).all()
    scores, _ = tiny_model.scores(out, 56)
    z_cls, z_self = (out.image_logits.double() - 1.0) / 2.0, (out.self_scores.double() - 0.5) / 0.25
    assert torch.allclose(scores["self"], z_self.sigmoid())
    assert torch.allclose(scores["cls+self"], (0.25 * z_cls + 0.75 * z_self).sigmoid())


def test_self_similarity_settings_round_trip_and_reach_past_a_shallow_backbone(tiny_backbone_dir, tmp_path):
    from anomalyvfm import AnomalyVFM

    cfg = AnomalyVFMConfig(backbone=str(tiny_backbone_dir), image_score="cls+self", self_weight=0.25,
                           self_similarity=SelfSimilarityConfig(layers=(-7, -1), radii=(1,), statistic="top1"),
                           normal_stats={"cls": (0.0, 1.0), "self": (0.3, 0.1)})
    model = AnomalyVFM(cfg).eval()  # 2 blocks: -7 reads the first
    model.save_pretrained(tmp_path / "m")
    loaded = AnomalyVFM.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.self_similarity == cfg.self_similarity and loaded.config.normal_stats == cfg.normal_stats
    x = torch.randn(1, 3, 56, 56)
    assert torch.allclose(loaded(x).self_scores, model(x).self_scores)


def test_self_similarity_config_rejects_bad_values():
    with pytest.raises(ValueError, match="odd"):
        SelfSimilarityConfig(radii=(2,))
    with pytest.raises(ValueError, match="nearest"):
        SelfSimilarityConfig(nearest=0.0)
    with pytest.raises(ValueError, match="statistic"):
        SelfSimilarityConfig(statistic="mean")
    with pytest.raises(ValueError, match="self_weight"):
        AnomalyVFMConfig(self_weight=1.5)
