"""Batch mode: mutual scoring (MuSc), label-free fusion with the model, verdicts calibrated from the batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalyvfm import ImageReadError
from anomalyvfm.batch import BatchConfig, agreement, calibrate_batch, fuse, robust_z
from anomalyvfm.mutual import MutualConfig, aggregate, mutual_scores, reference_sets, rscin, score_batch
from conftest import fake_mvtec, write_image

TINY = BatchConfig(mutual=MutualConfig(layers=(0, 1), radii=(1, 3)), min_images=4)


def _unit(*shape, seed=0):
    return torch.nn.functional.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_a_patch_no_other_image_has_scores_highest_and_shared_patches_score_zero():
    z = _unit(1, 16, 8).repeat(6, 1, 1)  # six identical images
    z[2, 5] = -z[2, 5]  # one patch of image 2 is unlike anything elsewhere
    scores = mutual_scores(z, interval=0.3)
    assert int(scores.flatten().argmax()) == 2 * 16 + 5
    others = scores.clone()
    others[2, 5] = 0
    assert float(others.max()) < 1e-3


def test_the_interval_mean_ignores_an_anomaly_that_a_few_images_share():
    z = _unit(1, 16, 8).repeat(10, 1, 1)
    odd = _unit(8, seed=1)
    z[0, 3] = z[1, 3] = z[2, 3] = odd  # images 0, 1 and 2 share the same defect
    shared = mutual_scores(z, interval=0.3)  # smallest 30% of 9 distances: 2 of them, both to a twin
    assert float(shared[0, 3]) < 1e-3
    assert float(mutual_scores(z, interval=1.0)[0, 3]) > 0.5  # the plain mean sees it


def test_chunking_and_reference_subsampling_are_exact_and_deterministic():
    z = _unit(7, 16, 8, seed=2)
    full = mutual_scores(z, chunk_mb=64)
    assert torch.allclose(full, mutual_scores(z, chunk_mb=0), atol=1e-6)  # one reference image per block
    refs = reference_sets(50, 10, seed=3)
    assert all(len(r) == 10 and i not in r.tolist() for i, r in enumerate(refs))
    assert all(torch.equal(a, b) for a, b in zip(refs, reference_sets(50, 10, seed=3)))
    assert torch.allclose(mutual_scores(z, max_references=3), mutual_scores(z, max_references=3))


def test_bf16_similarities_stay_close_to_float32():
    z = _unit(6, 16, 32, seed=4)
    assert torch.allclose(mutual_scores(z, dtype=torch.bfloat16), mutual_scores(z), atol=0.05)


def test_aggregation_averages_the_neighbourhood_after_a_map_wide_layer_norm():
    tokens = torch.randn(2, 16, 8)
    one = aggregate(tokens, 1)
    assert torch.allclose(one.norm(dim=-1), torch.ones(2, 16), atol=1e-5)
    grid = torch.nn.functional.layer_norm(tokens.transpose(1, 2).reshape(2, 8, 4, 4), (8, 4, 4))
    centre = grid[:, :, 0:3, 0:3].mean((2, 3))  # patch (1, 1): the mean of its 3×3 neighbourhood
    assert torch.allclose(aggregate(tokens, 3)[:, 5], torch.nn.functional.normalize(centre, dim=-1), atol=1e-5)


def test_rscin_averages_scores_over_images_with_similar_cls_tokens():
    scores = torch.tensor([0.0, 1.0, 0.5, 0.2])
    cls = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.0, -1.0]])
    assert torch.allclose(rscin(scores, cls, (1,)), (scores - 0) / 1.0)  # k = 1: each image alone, min-max scaled
    two = rscin(scores, cls, (2,))
    assert abs(float(two[0]) - float(two[1])) < 0.02  # images 0 and 1 look alike: their scores are pooled
    assert rscin(scores, cls, ()) is scores


def test_score_batch_gives_maps_and_image_scores():
    tokens = [torch.randn(5, 16, 8) for _ in range(2)]
    result = score_batch(tokens, torch.randn(5, 8), MutualConfig(layers=(0, 1), radii=(1, 3)))
    assert result.patch_scores.shape == (5, 4, 4) and result.image_scores.shape == (5,)
    assert torch.allclose(result.raw_image_scores, result.patch_scores.flatten(1).amax(1))


def test_the_projection_keeps_the_anomalous_patch_on_top():
    from anomalyvfm.mutual import projection

    q = projection(96, 24, seed=0)
    assert torch.allclose(q.T @ q, torch.eye(24), atol=1e-5)
    assert torch.equal(q, projection(96, 24, seed=0)) and not torch.equal(q, projection(96, 24, seed=1))
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 16, 96, generator=g)
    tokens = base + 0.05 * torch.randn(6, 16, 96, generator=g)  # six views of one part
    tokens[2, 5] = torch.randn(96, generator=g) * 3  # one odd patch
    for project in (None, 24):
        result = score_batch([tokens], torch.randn(6, 8), MutualConfig(layers=(0,), radii=(1,), project=project,
                                                                          rscin=()))
        assert int(result.image_scores.argmax()) == 2 and int(result.patch_scores[2].flatten().argmax()) == 5


def test_robust_z_is_not_moved_by_a_few_outliers():
    values = np.r_[np.random.default_rng(0).normal(5, 2, 200), [1e3, 2e3]]
    z = robust_z(values)
    assert abs(np.median(z)) < 1e-9 and 0.8 < np.std(z[:200]) < 1.2


def test_fusion_weight_follows_the_batch_level_and_falls_back_to_the_model():
    rng = np.random.default_rng(0)
    model = 1 / (1 + np.exp(-rng.normal(0, 1, 300)))
    noise = rng.normal(0, 1, 300)
    cfg = BatchConfig()
    z, weight, _ = fuse(model, noise, 0.6, cfg)  # no common pattern: the model alone
    assert weight == 0.0 and np.allclose(z, robust_z(np.log(model / (1 - model))))
    _, weight, agree = fuse(model, np.log(model / (1 - model)) + rng.normal(0, 0.1, 300), 0.1, cfg)
    assert weight == cfg.max_weight and agree > 0.95
    assert fuse(model, noise, (cfg.level_full + cfg.level_zero) / 2, cfg)[1] == pytest.approx(cfg.max_weight / 2)
    assert fuse(model, noise, 0.9, BatchConfig(fusion="mutual"))[1] == cfg.max_weight
    assert fuse(model, noise, 0.0, BatchConfig(fusion="model"))[1] == 0.0
    assert agreement(np.arange(10.0), np.arange(10.0)) == 1.0


def test_batch_threshold_hits_its_false_positive_rate_on_mostly_good_batches():
    rng = np.random.default_rng(1)
    cfg = BatchConfig(fpr=0.05)
    rates = []
    for _ in range(200):
        good = rng.normal(0, 1, 95)
        z = robust_z(np.r_[good, rng.normal(8, 1, 5)])  # 5% defective, far above
        report = calibrate_batch(z, cfg)
        rates.append(np.mean(z[:95] > report.threshold_z))
    assert abs(np.mean(rates) - 0.05) < 0.02 and not report.warnings


def test_small_or_mostly_flagged_batches_are_warned_about():
    assert "fewer than" in calibrate_batch(np.zeros(3), BatchConfig()).warnings[0]
    z = np.r_[np.zeros(10), np.full(10, 10.0)]
    assert any("flagged" in w for w in calibrate_batch(z, BatchConfig(min_images=2)).warnings)


def test_predict_in_batch_mode_keeps_order_reports_errors_and_records_its_rule(tiny_model, tmp_path):
    from anomalyvfm.batch_predict import predict_batch

    paths = [str(write_image(tmp_path / f"{i}.png", size=(56, 56), seed=i)) for i in range(6)]
    (tmp_path / "bad.png").write_bytes(b"junk")
    paths.insert(2, str(tmp_path / "bad.png"))
    results, report = predict_batch(tiny_model, paths, resolution=56, config=TINY)
    assert [r.name for r in results] == paths and results[2].error and report.n_images == 6
    ok = [r for r in results if r.ok]
    assert all(r.rule == "batch" and r.threshold_source == "batch" and 0 < r.score < 1 for r in ok)
    assert all(r.anomaly_map.shape == (56, 56) and {"model", "mutual", "z"} <= set(r.scores) for r in ok)
    assert sum(r.is_anomalous for r in ok) == round(report.flagged * 6)
    with pytest.raises(ValueError, match="at least 2"):
        predict_batch(tiny_model, paths[:1], resolution=56, config=TINY)


def test_batch_mode_scores_the_tiles_of_large_images(tiny_model, tmp_path):
    from anomalyvfm.batch_predict import predict_batch

    paths = [str(write_image(tmp_path / f"{i}.png", size=(90, 90), seed=i)) for i in range(4)]
    whole, _ = predict_batch(tiny_model, paths, resolution=56, config=TINY)
    tiny_model.config.tile_size = 40
    try:
        tiled, _ = predict_batch(tiny_model, paths, resolution=56, config=TINY)
    finally:
        tiny_model.config.tile_size = 0
    assert all(r.ok and r.anomaly_map.shape == (90, 90) for r in tiled)
    assert [r.scores["model"] for r in tiled] != pytest.approx([r.scores["model"] for r in whole], abs=1e-6)


def test_batch_mode_from_the_api_and_the_cli(tiny_checkpoint, tiny_model, tmp_path, capsys, monkeypatch):
    import csv

    from anomalyvfm import batch_predict
    from anomalyvfm.cli import main

    paths = [str(write_image(tmp_path / "in" / f"{i}.png", size=(56, 56), seed=i)) for i in range(5)]
    with pytest.warns(UserWarning, match="fewer than 20"):
        results = tiny_model.predict(paths, resolution=56, batch_mode="mutual",
                                     batch_config=BatchConfig(mutual=TINY.mutual))
    assert len(results) == 5 and all(r.rule == "batch" for r in results)
    # the tiny backbone has blocks 0 and 1 only
    monkeypatch.setattr(batch_predict.BatchConfig, "for_model", classmethod(lambda cls, model: TINY))
    assert main(["predict", *paths, "--model", str(tiny_checkpoint), "--resolution", "56", "--batch-mode", "mutual",
                 "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert len(rows) == 5 and {r["rule"] for r in rows} == {"batch"} and {r["threshold_source"] for r in rows} == {
        "batch"}
    assert "target FPR 1.0%" in capsys.readouterr().err  # a target, never shown as a measurement


def test_a_checkpoint_carries_its_own_fusion_constants_into_batch_mode(tiny_model, tmp_path):
    from anomalyvfm import AnomalyVFM
    from anomalyvfm.batch_predict import predict_batch

    tiny_model.config.batch_fusion = {"level_full": 50.0, "level_zero": 60.0, "max_weight": 0.3}
    loaded = AnomalyVFM.from_pretrained(tiny_model.save_pretrained(tmp_path / "ckpt"))
    assert loaded.config.batch_fusion == {"level_full": 50.0, "level_zero": 60.0, "max_weight": 0.3}
    cfg = BatchConfig.for_model(loaded, mutual=TINY.mutual, min_images=4)
    assert (cfg.level_full, cfg.level_zero, cfg.max_weight, cfg.mutual) == (50.0, 60.0, 0.3, TINY.mutual)
    tiny_model.config.batch_fusion = {}
    assert BatchConfig.for_model(tiny_model) == BatchConfig()  # nothing stored: the class defaults
    images = [np.random.default_rng(i).integers(0, 256, (56, 56, 3), dtype=np.uint8) for i in range(5)]
    _, report = predict_batch(loaded, images, resolution=56, config=cfg)
    assert report.mutual_weight == pytest.approx(0.3)  # any level below 50: the checkpoint's max_weight
    with pytest.raises(ValueError, match="batch_fusion keys"):
        type(loaded.config)(batch_fusion={"fpr": 0.1})


def test_the_harness_runs_the_batch_method_with_the_model_and_mutual_scores_alongside(tmp_path, tiny_model):
    from anomalyvfm.benchmark import BenchmarkConfig, run_benchmark
    from anomalyvfm.methods.batch import AnomalyVFMBatch

    fake_mvtec(tmp_path / "data" / "toyset", "a", n=4, size=(56, 56))
    cfg = BenchmarkConfig(data=str(tmp_path / "data"), out=str(tmp_path / "out"), methods=("anomalyvfm-batch",))
    [part] = run_benchmark(cfg, lambda name: AnomalyVFMBatch(tiny_model, TINY, resolution=56))
    row = part["row"]
    assert {"I-AUROC[model]", "I-AUROC[mutual]", "FPR@thr", "recall@thr", "P-AUROC"} <= set(row)


def test_a_batch_with_many_defects_is_thresholded_from_its_good_component_and_warned_about():
    from anomalyvfm.batch import good_population

    rng = np.random.default_rng(2)
    good, bad = rng.normal(0, 1, 120), rng.normal(6, 1, 180)  # 60% defective: the median sits among the defects
    z = robust_z(np.r_[good, bad])
    report = calibrate_batch(z, BatchConfig(fpr=0.05))
    assert report.population == "mixture" and 0.5 < report.anomalous_estimated < 0.7
    assert np.mean(z[:120] > report.threshold_z) < 0.12 and np.mean(z[120:] > report.threshold_z) > 0.9
    assert any("looks anomalous" in w or "flagged" in w for w in report.warnings)
    loc, scale, method, _ = good_population(rng.normal(0, 1, 300))  # one population: median/MAD
    assert method == "robust" and abs(loc) < 0.2 and abs(scale - 1) < 0.2


def test_known_good_references_join_the_comparison_but_get_no_result(tiny_model, tmp_path):
    from anomalyvfm.batch_predict import predict_batch

    paths = [str(write_image(tmp_path / f"{i}.png", size=(56, 56), seed=i)) for i in range(5)]
    refs = [str(write_image(tmp_path / f"ref{i}.png", size=(56, 56), seed=10 + i)) for i in range(3)]
    alone, _ = predict_batch(tiny_model, paths, resolution=56, config=TINY)
    results, report = predict_batch(tiny_model, paths, resolution=56, config=TINY, references=refs)
    assert [r.name for r in results] == paths and report.n_images == 5
    assert [r.scores["model"] for r in results] == pytest.approx([r.scores["model"] for r in alone], abs=1e-5)
    assert [r.scores["mutual"] for r in results] != pytest.approx([r.scores["mutual"] for r in alone], abs=1e-5)
    with pytest.raises(ImageReadError):
        predict_batch(tiny_model, paths, resolution=56, config=TINY, references=[str(tmp_path / "missing.png")])


def test_a_batch_with_too_few_readable_images_is_one_line_naming_the_unreadable_ones(tiny_checkpoint, tmp_path,
                                                                                        capsys):
    import json

    from anomalyvfm.cli import main

    good = write_image(tmp_path / "in" / "ok.png", size=(56, 56), seed=0)
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nxxxxxxxx")
    assert main(["predict", str(good), str(broken), "--model", str(tiny_checkpoint), "--resolution", "56",
                 "--batch-mode", "mutual", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: batch mode needs at least 2 readable images, got 1")
    assert "broken.png: corrupt or truncated image" in err[-1] and not any("Traceback" in line for line in err)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "failed"  # not "interrupted"
    tall = write_image(tmp_path / "tall.png", size=(224, 56), seed=1)  # tiled into several crops, still one image
    assert main(["predict", str(tall), "--model", str(tiny_checkpoint), "--resolution", "56", "--batch-mode", "mutual",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # it blamed non-finite scores and damaged weights
    assert err[-1] == "error: batch mode needs at least 2 readable images, got 1"


def test_batch_mode_scores_the_model_through_its_test_views_as_predict_does(tiny_model, tmp_path):
    """The model's part of a batch score is the one single-image predict gives (its configured views averaged), and
    mutual scoring compares the tokens of each image itself, whatever the views."""
    from anomalyvfm.batch_predict import predict_batch
    from anomalyvfm.predict import iter_predict

    paths = [str(write_image(tmp_path / f"{i}.png", size=(56, 56), seed=i)) for i in range(5)]
    single, _ = predict_batch(tiny_model, paths, resolution=56, config=TINY)
    tiny_model.config.test_views = "flips"
    try:
        flips, _ = predict_batch(tiny_model, paths, resolution=56, config=TINY)
        alone = list(iter_predict(tiny_model, paths, resolution=56))
    finally:
        tiny_model.config.test_views = "single"
    rule = tiny_model.config.image_score
    assert [r.scores["model"] for r in flips] == pytest.approx([p.scores[rule] for p in alone], abs=1e-5)
    assert [r.scores["model"] for r in flips] != pytest.approx([r.scores["model"] for r in single], abs=1e-4)
    assert [r.scores["mutual"] for r in flips] == pytest.approx([r.scores["mutual"] for r in single], abs=1e-5)
