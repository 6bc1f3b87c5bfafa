import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalyvfm.calibration import Calibration, calibrate
from anomalyvfm.fewshot import PROFILE_NAME, FinetuneConfig, finetune, recalibrate, save_profile
from anomalyvfm.memory import MemoryBank
from anomalyvfm.model import AnomalyVFM
from anomalyvfm.profile import ProfileState

from conftest import write_image

TINY = FinetuneConfig(steps=6, batch_size=4, eval_every=2, patience=10, holdout=4, resolution=56, augmentations=3,
                      lr=3e-3)


def _goods(tmp_path, n=3):
    return [write_image(tmp_path / "good" / f"{i}.png", size=(60, 60), seed=i) for i in range(n)]


def test_calibration_threshold_is_the_good_quantile_of_a_known_distribution():
    good = np.random.default_rng(0).normal(0.0, 1.0, 200_000)
    cal = calibrate(good, fpr=0.01)
    assert cal.threshold == pytest.approx(2.326, abs=0.03)  # Φ⁻¹(0.99)
    assert cal.scale == pytest.approx(1.0, abs=0.02)
    assert cal.deviation(cal.threshold) == pytest.approx(0.5)
    assert cal.deviation(-10.0) < 0.01 < 0.99 < cal.deviation(10.0)
    assert np.mean(np.asarray(cal.deviation(good)) > 0.5) == pytest.approx(0.01, abs=0.001)


def test_calibration_on_few_unseen_images_keeps_the_requested_false_positive_rate():
    rng = np.random.default_rng(0)
    draws = rng.normal(3.0, 2.0, (2000, 16))  # 2000 users, each calibrating on 16 unseen good images
    new = rng.normal(3.0, 2.0, (2000, 5000))  # and then meeting 5000 new good images
    fpr = np.mean([np.mean(n > calibrate(d, 0.01).threshold) for d, n in zip(draws, new)])
    plain = np.mean([np.mean(n > np.quantile(d, 0.99, method="higher")) for d, n in zip(draws, new)])
    assert fpr == pytest.approx(0.01, abs=0.002)  # the prediction bound: exact for normal scores
    assert plain == pytest.approx(1 / 17, abs=0.01)  # the plain quantile is the maximum of 16 scores: ≈ 1/(n + 1)


def test_calibration_on_views_of_few_images_bounds_the_spread_between_images():
    rng = np.random.default_rng(1)
    users, k, views = 1000, 8, 8
    effect = rng.normal(0.0, 1.0, (users, k, 1))  # each good image has its own level ...
    scores = (effect + rng.normal(0.0, 0.2, (users, k, views))).reshape(users, -1)  # ... its views vary little
    new = rng.normal(0.0, 1.0, (users, 2000)) + rng.normal(0.0, 0.2, (users, 2000))  # new good images
    groups = np.repeat(np.arange(k), views)
    fpr = {g: np.mean([np.mean(n > calibrate(s, 0.01, groups=groups if g else None).threshold)
                       for s, n in zip(scores, new)]) for g in (True, False)}
    assert fpr[True] == pytest.approx(0.01, abs=0.004)  # n = 8 images, between + within spread
    assert fpr[False] > 0.02  # 64 views taken as independent draws underestimate a new image's spread
    cal = calibrate(scores[0], 0.01, groups=groups)
    assert cal.n_images == k and cal.n_good == k * views
    few = calibrate(scores[0][:3 * views], 0.01, groups=groups[:3 * views])  # under MIN_IMAGES: views only
    assert few.threshold == pytest.approx(calibrate(scores[0][:3 * views], 0.01).threshold)
    with pytest.raises(ValueError, match="one image per score"):
        calibrate(scores[0], 0.01, groups=groups[:-1])


def test_bounded_calibration_takes_the_bound_on_logits():
    from scipy.special import expit

    rng = np.random.default_rng(2)
    logits = rng.normal(-1.0, 1.5, (2000, 16))  # users calibrating on 16 probability scores, normal as logits
    new = rng.normal(-1.0, 1.5, (2000, 5000))
    fpr = np.mean([np.mean(expit(n) > calibrate(expit(d), 0.01, bounded=True).threshold) for d, n in zip(logits, new)])
    assert fpr == pytest.approx(0.01, abs=0.002)
    wide = calibrate([0.01, 0.5, 0.99, 0.02], 0.01, bounded=True).threshold
    assert 0.99 <= wide < 1.0  # a bound on raw probabilities would land far above 1: nothing ever flagged
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibrate([0.2, 1.5], 0.01, bounded=True)


def test_scores_near_one_keep_their_order_and_deviate_on_logits():
    """A profile's standardised scores reach logits past 16.6, where a float32 sigmoid is exactly 1.0: the most
    anomalous images used to tie with each other (and with good parts) at a deviation of ~0.500."""
    from scipy.special import expit

    from anomalyvfm.config import AnomalyVFMConfig
    from anomalyvfm.model import ModelOutput
    from anomalyvfm.scoring import score_outputs

    logits = torch.tensor([17.0, 20.0, 25.0])  # image-head logits of three clearly anomalous images
    out = ModelOutput(logits[:, None, None, None].expand(3, 1, 4, 4), torch.zeros(3, 1, 4, 4), logits,
                      torch.zeros(3, 16, 8))
    cls = score_outputs(out, 8, AnomalyVFMConfig(top_k=4))[0]["cls"]
    assert torch.sigmoid(logits).unique().numel() == 1  # float32: all three are 1.0
    assert cls.dtype == torch.float64 and cls.unique().numel() == 3 and (cls.diff() > 0).all()
    good = expit(np.random.default_rng(3).normal(6.0, 1.0, 64))  # good views of a profile: 0.99-0.9999
    cal = calibrate(good, 0.01, bounded=True)
    assert cal.space == "logit" and cal.deviation(cal.threshold) == pytest.approx(0.5)
    dev = cal.deviation(cls.numpy())
    assert (np.diff(dev) > 0).all() and dev[0] > 0.99  # far beyond the threshold, in order
    assert np.mean(cal.deviation(good) > 0.5) <= 0.05
    old = Calibration.from_dict({k: v for k, v in cal.to_dict().items() if k != "space"})  # saved before the field
    assert old.space == "raw" and old.deviation(old.threshold) == pytest.approx(0.5)


def test_calibration_uses_defective_scores_to_widen_the_margin():
    good = np.linspace(0.0, 1.0, 101)
    alone = calibrate(good, fpr=0.01).threshold  # the prediction bound: mean + t(100, 0.99)·sd·√(1 + 1/101)
    assert alone == pytest.approx(0.5 + 2.364 * good.std(ddof=1) * np.sqrt(1 + 1 / 101), abs=1e-3)
    cal = calibrate(good, fpr=0.01, defective=[0.5, 2.0, 3.0])  # 0.5 is below: it cannot be separated anyway
    assert cal.threshold == pytest.approx((alone + 2.0) / 2) and cal.n_defective == 3
    assert Calibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(ValueError, match="at least 2"):
        calibrate([0.3])


def test_finetune_of_a_tiny_model_lowers_its_held_out_loss(tiny_model, tmp_path):
    profile, report = finetune(tiny_model, _goods(tmp_path), TINY, progress=False)
    assert report.steps == 6 and len(report.holdout_loss) == 4
    assert min(report.holdout_loss[1:]) < report.holdout_loss[0]
    state = profile.profile
    assert state.memory is not None and state.memory.good.shape == (3 * 3 * 16, 32)  # 3 images × 3 views × 4×4
    assert state.memory.sizes == (48, 48, 48)
    assert report.fusion_weight in TINY.fusion_weights and profile.config.image_score == "memory"
    assert set(report.held_out) == ({f"P-AUROC@{w:g}" for w in TINY.fusion_weights}
                                    | {f"I-AUROC[{r}]" for r in ("cls", "topk", "fused", "knn", "memory")})
    assert set(state.score_stats) == {"cls", "knn"} and state.score_stats["knn"][1] >= 0.05
    assert state.calibration.n_good == 3 * 3 and profile.config.threshold == 0.5
    assert state.calibration.n_images == 3
    assert tiny_model.profile is None  # the base model is left as it was


def test_profile_round_trip_in_a_fresh_process_gives_identical_scores(tiny_model, tmp_path):
    goods = _goods(tmp_path)
    profile, report = finetune(tiny_model, goods, TINY, progress=False)
    profile.profile.fusion_weight = 0.5  # exercise the memory path whatever the held-out choice was
    folder = save_profile(profile, tmp_path / "profile", base="tiny", good=goods, config=TINY, report=report)
    meta = json.loads((folder / PROFILE_NAME).read_text())
    assert [m["sha256"] for m in meta["images"]] and all(len(m["sha256"]) == 64 for m in meta["images"])
    assert meta["base_model"] == "tiny" and meta["finetune"]["steps"] == 6
    card = (folder / "README.md").read_text()  # the profile's card, filled from profile.json
    assert "few-shot" in card and "zero-shot" not in card.split("---")[1]
    assert "k = 3 good images" in card and meta["images"][0]["sha256"][:16] in card
    assert "Threshold: raw score" in card and "{{" not in card
    test = [write_image(tmp_path / "test" / f"{i}.png", size=(60, 60), seed=10 + i) for i in range(3)]
    expected = [r.score for r in profile.predict(test)]
    script = (f"import json; from anomalyvfm import AnomalyVFM;"
              f"m = AnomalyVFM.from_pretrained({str(folder)!r});"
              f"print(json.dumps([r.score for r in m.predict({[str(t) for t in test]!r})]))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    assert np.allclose(json.loads(out.strip().splitlines()[-1]), expected, atol=1e-6)
    assert all(0.0 < s < 1.0 for s in expected)


def test_memory_fusion_lifts_a_patch_that_no_good_image_has(tiny_model):
    tokens = torch.nn.functional.normalize(torch.randn(1, 16, 32), dim=-1)
    memory = MemoryBank(tokens[0].clone())
    odd = tokens.clone()
    odd[0, 5] = -odd[0, 5]  # this patch points the opposite way to its memory twin
    knn = memory.distance_map(odd, 56)
    assert knn.shape == (1, 56, 56)
    expected = 1 - float((-tokens[0, 5] @ tokens[0].T).max())  # its nearest memory patch is another one
    row, col = divmod(int(knn[0].argmax()), 56)
    assert (row // 14, col // 14) == (1, 1) and float(knn[0].max()) == pytest.approx(expected, rel=0.1)  # bilinear blur
    assert float(memory.distance_map(tokens, 56).max()) < 1e-5


def test_recalibrate_sets_a_threshold_from_unseen_good_images(tiny_model, tmp_path):
    cal = recalibrate(tiny_model, _goods(tmp_path, 4), fpr=0.25)
    scores = [r.score for r in tiny_model.predict(_goods(tmp_path, 4))]
    assert cal.n_good == 4 and tiny_model.config.threshold == 0.5
    assert sum(s > 0.5 for s in scores) <= 1  # at most the top quarter of the good images is flagged


def test_align_recovers_a_shift_and_maps_go_back_to_the_image_frame():
    from anomalyvfm.golden import align, unwarp

    rng = np.random.default_rng(0)
    import cv2

    reference = cv2.GaussianBlur(rng.integers(0, 256, (120, 120, 3), dtype=np.uint8), (0, 0), 2)
    shifted = np.roll(reference, (3, -4), axis=(0, 1))
    aligned, warp = align(shifted, reference)
    assert warp is not None and np.allclose(warp[:, 2], (-4, 3), atol=0.5)
    assert np.abs(aligned[10:-10, 10:-10].astype(int) - reference[10:-10, 10:-10]).mean() < 3
    spot = np.zeros((120, 120), np.float32)
    spot[60, 60] = 1.0  # a spot found on the aligned image lies at the shifted position in the image itself
    row, col = divmod(int(unwarp(spot, warp, 120, 120).argmax()), 120)
    assert (row, col) == (63, 56)


def test_golden_profile_compares_each_position_with_the_reference(tiny_model, tmp_path):
    goods = _goods(tmp_path, 1)
    cfg = FinetuneConfig(**{**TINY.__dict__, "golden": True})
    profile, report = finetune(tiny_model, goods, cfg, progress=False)
    assert profile.profile.golden and profile.profile.reference is not None
    assert profile.profile.memory.good.shape == (16, 32)  # one 4×4 patch grid
    folder = save_profile(profile, tmp_path / "golden", base="tiny", good=goods, config=cfg, report=report)
    again = AnomalyVFM.from_pretrained(folder)
    assert np.array_equal(again.profile.reference, profile.profile.reference) and again.profile.golden
    result = again.predict([goods[0]], resolution=56)[0]
    assert result.ok and result.anomaly_map.shape == (60, 60)
    with pytest.raises(ValueError, match="reference has a 4x4 patch grid"):
        again.predict([goods[0]], resolution=112, errors="raise")


def test_finetune_with_real_defects_with_and_without_masks(tiny_model, tmp_path):
    from conftest import write_mask

    goods = _goods(tmp_path, 2)
    bad = [write_image(tmp_path / "bad" / f"{i}.png", size=(60, 60), seed=20 + i) for i in range(2)]
    mask = write_mask(tmp_path / "bad" / "0_mask.png", size=(60, 60), box=(10, 30, 10, 30))
    cfg = FinetuneConfig(**{**TINY.__dict__, "real_fraction": 1.0})
    profile, report = finetune(tiny_model, goods, cfg, defective=[(bad[0], mask), (bad[1], None)], progress=False)
    assert report.calibration["n_defective"] == 2 and len(report.holdout_loss) == 4
    assert all(np.isfinite(report.holdout_loss))
    # positive memory: at 56 px the box spans 9.3-28 px, covering patch (1, 1) fully, (0, 1) and (1, 0) by a third and
    # (0, 0) by a ninth (under the quarter needed); image 1 (no mask) gives its farthest patch
    assert profile.profile.memory.defects is not None and profile.profile.memory.defects.shape == (3 + 1, 32)
    folder = save_profile(profile, tmp_path / "mixed", base="tiny", good=goods, config=cfg, report=report)
    assert torch.equal(AnomalyVFM.from_pretrained(folder).profile.memory.defects, profile.profile.memory.defects)


def test_defect_memory_raises_patches_near_a_known_defect_only(tiny_model):
    tokens = torch.nn.functional.normalize(torch.randn(1, 16, 32), dim=-1)
    good = MemoryBank(tokens[0, :8].clone())  # the first half are good patches
    before = good.distance_map(tokens, 4)
    after = MemoryBank(good.good, defects=tokens[0, 12:13].clone()).distance_map(tokens, 4)  # patch 12: a defect
    assert float(after[0, 3, 0]) > float(before[0, 3, 0])  # patch 12 sits at row 3, column 0 of the 4x4 grid
    changed = (after - before).abs() > 1e-6
    assert changed.sum() >= 1 and torch.equal(after[0, :2], before[0, :2])  # good patches (rows 0-1) untouched


def test_finetune_command_writes_a_profile_that_predict_uses(tiny_checkpoint, tmp_path, capsys):
    from anomalyvfm.cli import main

    goods = _goods(tmp_path, 3)
    assert main(["finetune", "--good", str(tmp_path / "good"), "--shots", "2", "--base", str(tiny_checkpoint),
                 "--out", str(tmp_path / "profile"), "--resolution", "56", "--steps", "2"]) == 0
    err = capsys.readouterr().err.splitlines()  # a provisional threshold is said to be one, on a line of its own
    assert any(line.startswith("warning: the threshold comes from 2 good image") for line in err)
    meta = json.loads((tmp_path / "profile" / PROFILE_NAME).read_text())
    assert len(meta["images"]) == 2 and meta["base_model"] == str(tiny_checkpoint)
    assert main(["predict", str(goods[2]), "--model", str(tmp_path / "profile"), "--out", str(tmp_path / "out"),
                 "--no-images"]) == 0
    assert (tmp_path / "out" / "results.csv").read_text().count("\n") == 2
    origin = json.loads((tmp_path / "out" / "run.json").read_text())["threshold_origin"]
    assert origin.startswith("calibrated on 16 views of 2 good images")  # not "16 good images": views of 2
    assert "16 views of 2 good images" in (tmp_path / "profile" / "README.md").read_text()


def test_memory_rule_standardises_the_head_and_the_knn_score_by_good_statistics(tiny_model):
    from anomalyvfm.model import ModelOutput

    tokens = torch.nn.functional.normalize(torch.randn(1, 16, 32), dim=-1)
    tiny_model.profile = ProfileState(MemoryBank(tokens[0].clone()),
                                      score_stats={"cls": [0.0, 2.0], "knn": [0.5, 0.25]})
    out = ModelOutput(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), torch.tensor([1.0]), tokens, torch.tensor([0.3]))
    scores, _ = tiny_model.scores(out, 56)
    # kNN map 0 everywhere: z = (1 − 0)/2 + (0 − 0.5)/0.25 = −1.5, averaged over the two terms
    assert float(scores["memory"]) == pytest.approx(float(torch.sigmoid(torch.tensor(-0.75))), abs=1e-5)
    assert float(scores["model"]) == pytest.approx(float(torch.sigmoid(torch.tensor(1.0))))  # cls, no memory
    odd = tokens.clone()
    odd[0, :4] = -odd[0, :4]
    assert float(tiny_model.scores(ModelOutput(*list(vars(out).values())[:3], odd, out.self_scores), 56)[0]["memory"]) > 0.5
    tiny_model.profile = None
    tiny_model.config.image_score = "memory"
    with pytest.raises(ValueError, match="needs a good-image memory"):
        tiny_model.scores(out, 56)


def test_profile_pushed_to_the_hub_loads_by_repo_id_in_a_fresh_process(tiny_model, tmp_path, monkeypatch):
    """push_folder → the files the Hub would store (laid out as huggingface_hub's cache keeps a downloaded repo) →
    ``from_pretrained("user/profile", revision=...)`` in a new process, offline, gives the same scores."""
    import os

    from huggingface_hub import HfApi

    from anomalyvfm.hub import push_folder

    goods = _goods(tmp_path)
    profile, report = finetune(tiny_model, goods, TINY, progress=False)
    profile.profile.fusion_weight = 0.5
    folder = save_profile(profile, tmp_path / "profile", base="tiny", good=goods, config=TINY, report=report)
    (folder / "notes.pkl").write_bytes(b"not to be published")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--user--profile"

    def create_commit(self, repo_id, operations, **kw):  # what the Hub serves afterwards, as a download caches it
        assert repo_id == "user/profile"
        for op in operations:
            target = repo / "snapshots" / commit / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(op.path_or_fileobj).read_bytes())
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        return f"https://huggingface.co/user/profile/commit/{commit}"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    assert push_folder(folder, "user/profile").endswith(commit)
    sent = sorted(p.name for p in (repo / "snapshots" / commit).iterdir())
    assert sent == ["README.md", "adapter_config.json", "adapter_model.safetensors", "config.json",
                    "heads.safetensors", "memory.safetensors", "profile.json", "state.json"]  # the card goes too
    test = [write_image(tmp_path / "test" / f"{i}.png", size=(60, 60), seed=20 + i) for i in range(3)]
    expected = [r.score for r in profile.predict(test)]
    script = (f"import json; from anomalyvfm import AnomalyVFM;"
              f"a = AnomalyVFM.from_pretrained('user/profile', revision={commit!r});"
              f"b = AnomalyVFM.from_pretrained('user/profile');"
              f"print(json.dumps([[r.score for r in m.predict({[str(t) for t in test]!r})] for m in (a, b)]))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    by_revision, by_main = json.loads(out.strip().splitlines()[-1])
    assert np.allclose(by_revision, expected, atol=1e-6) and np.allclose(by_main, expected, atol=1e-6)


def test_calibration_views_are_scored_as_predict_scores_them_with_test_views(tiny_model):
    """A profile's threshold must sit on predict's scale: with test views (the mirror) on, the views behind it are
    scored with that average too (they were not, so thresholds came from another score than the verdicts)."""
    from anomalyvfm.fewshot.calibrate import view_scores

    tiny_model.config.test_views = "mirror"
    image = np.random.default_rng(0).integers(0, 256, (56, 56, 3), dtype=np.uint8)
    raw, _ = view_scores(tiny_model, [image], ProfileState(), FinetuneConfig(augmentations=1), 56)
    (pred,) = tiny_model.predict([image], resolution=56)
    assert raw[0] == pytest.approx(pred.scores[tiny_model.config.image_score], abs=1e-6)
    tiny_model.config.test_views = "single"
    (plain,) = tiny_model.predict([image], resolution=56)
    assert plain.score != pytest.approx(pred.score, abs=1e-6)  # the mirror average changes the score


def test_finetune_of_an_ensemble_adapts_its_first_model_alone(tiny_model, tmp_path):
    from anomalyvfm import AnomalyVFM
    from training.ensemble import ensemble

    first = tiny_model.save_pretrained(tmp_path / "a")
    with torch.no_grad():
        for _, p in tiny_model.trainable_parameters():
            p.add_(0.1)
    model = AnomalyVFM.from_pretrained(ensemble([first, tiny_model.save_pretrained(tmp_path / "b")],
                                                tmp_path / "ens"))
    profile, _ = finetune(model, _goods(tmp_path), TINY, progress=False)
    assert len(model.members) == 1 and len(profile.members) == 0 and profile.config.members == ()
    saved = AnomalyVFM.from_pretrained(profile.save_pretrained(tmp_path / "profile"))
    assert saved.config.members == () and not (tmp_path / "profile" / "members.safetensors").exists()
