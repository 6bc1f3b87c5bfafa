import csv
import json

import numpy as np
import pytest

from anomalyvfm.benchmark import BenchmarkConfig, draw_shots, run_benchmark
from anomalyvfm.cli import main
from anomalyvfm.methods.knn import KNN, KNNConfig
from anomalyvfm.methods.zeroshot import AnomalyVFMMethod
from anomalyvfm.report import COLUMNS, write_reports
from conftest import fake_mvtec, tiny_dinov2, write_mask


def _factory(tiny_model):
    def make(name):
        if name == "knn":
            return KNN(KNNConfig(resolution=56, sigma=1.0), backbone=tiny_dinov2())
        return AnomalyVFMMethod(tiny_model, resolution=56)
    return make


def test_runner_end_to_end_on_a_fake_tree(tmp_path, tiny_model):
    data = tmp_path / "data"
    fake_mvtec(data / "toyset", "a")
    fake_mvtec(data / "toyset", "b")
    cfg = BenchmarkConfig(data=str(data), out=str(tmp_path / "out"), methods=("anomalyvfm", "knn"),
                          shots=(1, 2), seeds=(0, 1))
    parts = run_benchmark(cfg, _factory(tiny_model))
    # per category: anomalyvfm once (k=0) + knn 2 shots x 2 seeds
    assert len(parts) == 2 * (1 + 4)
    zero_shot = [p["row"] for p in parts if p["row"]["method"] == "anomalyvfm"]
    assert all({"I-AUROC[cls]", "I-AUROC[topk]", "I-AUROC[fused]"} <= set(r) for r in zero_shot)
    write_reports(parts, tmp_path / "out", {"data": str(data)}, cfg.warnings, 1.0)
    with open(tmp_path / "out" / "results.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS and len(rows) == 10
    for r in rows:
        assert 0.0 <= float(r["I-AUROC"]) <= 1.0 and 0.0 <= float(r["AUPRO@0.3"]) <= 1.0 and float(r["img/s"]) > 0
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["environment"]["torch_threads"] >= 1 and "torch" in payload["environment"]["packages"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| toyset | a | knn | 2 | 56 |" in summary and "Mean over categories" in summary
    assert (tmp_path / "out" / "roc" / "toyset__a.png").stat().st_size > 1000
    assert (tmp_path / "out" / "grids" / "toyset__b__knn__k2.png").stat().st_size > 1000


def test_an_interrupted_run_resumes_without_recomputing(tmp_path, tiny_model):
    data = tmp_path / "data"
    fake_mvtec(data / "toyset", "a")
    cfg = BenchmarkConfig(data=str(data), out=str(tmp_path / "out"), methods=("knn",), shots=(1,), seeds=(0,))
    run_benchmark(cfg, _factory(tiny_model))

    def refuse(name):
        method = _factory(tiny_model)(name)
        method.score = lambda images: pytest.fail("a finished run was recomputed")
        return method

    assert len(run_benchmark(cfg, refuse)) == 1


def test_features_are_cached_across_shots_and_seeds(tmp_path, tiny_model):
    data = tmp_path / "data"
    fake_mvtec(data / "toyset", "a")
    method = _factory(tiny_model)("knn")
    calls = []
    forward = method.backbone.forward
    method.backbone.forward = lambda *a, **k: calls.append(k["pixel_values"].shape[0]) or forward(*a, **k)
    run_benchmark(BenchmarkConfig(data=str(data), out=str(tmp_path / "o"), methods=("knn",), shots=(1, 2),
                                  seeds=(0, 1)), lambda name: method)
    assert sum(calls) <= 6 + 3  # 6 test images once, at most 3 distinct train images


def test_bad_dataset_folder_warns_per_item_and_completes(tmp_path, tiny_model):
    data = tmp_path / "data"
    folder = fake_mvtec(data / "toyset", "a", n=4)
    (folder / "ground_truth" / "crack" / "000_mask.png").unlink()  # missing mask
    write_mask(folder / "ground_truth" / "crack" / "001_mask.png", size=(20, 20))  # wrong size
    (folder / "test" / "crack" / "002.png").write_bytes(b"garbage")  # unreadable image
    (data / "toyset" / "empty" / "train" / "good").mkdir(parents=True)  # empty category
    (data / "toyset" / "empty" / "test").mkdir()
    cfg = BenchmarkConfig(data=str(data), out=str(tmp_path / "out"), methods=("knn",), shots=(1,), seeds=(0,))
    parts = run_benchmark(cfg, _factory(tiny_model))
    text = "\n".join(cfg.warnings)
    assert "000.png: no mask" in text
    assert "001_mask.png: mask size 20x20 differs from image size 60x40" in text
    assert "002.png: not an image" in text
    assert len(parts) == 1 and len(parts[0]["paths"]) == 7  # 4 good + 3 readable defective
    assert not np.isnan(parts[0]["row"]["P-AUROC"])


def test_shots_are_reproducible_and_distinct(tmp_path):
    from anomalyvfm.data import Sample

    train = [Sample(tmp_path / f"{i}.png", 0) for i in range(20)]
    assert draw_shots(train, 4, 0) == draw_shots(train, 4, 0)
    assert draw_shots(train, 4, 0) != draw_shots(train, 4, 1)
    assert len(set(draw_shots(train, 16, 2))) == 16


def test_knn_gives_zero_distance_to_its_own_reference():
    method = KNN(KNNConfig(resolution=56, sigma=0), backbone=tiny_dinov2())
    image = np.random.default_rng(0).integers(0, 255, (56, 56, 3), np.uint8)
    other = np.random.default_rng(1).integers(0, 255, (56, 56, 3), np.uint8)
    method.fit({"ref": image})
    scored = method.score({"same": image, "other": other})
    assert scored["same"].score == pytest.approx(0.0, abs=1e-5) and scored["other"].score > 1e-3
    assert scored["same"].anomaly_map.shape == (56, 56)


def test_knn_rotations_and_masking_grow_and_shrink_the_memory():
    image = np.random.default_rng(0).integers(0, 255, (56, 56, 3), np.uint8)
    plain = KNN(KNNConfig(resolution=56), backbone=tiny_dinov2())
    plain.fit({"r": image})
    rotated = KNN(KNNConfig(resolution=56, rotations=True), backbone=tiny_dinov2())
    rotated.fit({"r": image})
    masked = KNN(KNNConfig(resolution=56, masking=True), backbone=tiny_dinov2())
    masked.fit({"r": image})
    assert rotated.memory.good.shape[0] == 4 * plain.memory.good.shape[0]
    assert 0 < masked.memory.good.shape[0] <= plain.memory.good.shape[0]


def test_benchmark_cli_writes_the_reports(tmp_path, tiny_checkpoint, capsys):
    data = tmp_path / "data"
    fake_mvtec(data / "toyset", "a")
    out = tmp_path / "out"
    code = main(["benchmark", "--data", str(data), "--methods", "anomalyvfm", "--model", str(tiny_checkpoint),
                 "--resolution", "56", "--out", str(out)])
    assert code == 0
    assert (out / "results.csv").is_file() and (out / "summary.md").is_file() and (out / "results.json").is_file()
    assert "| toyset | a | anomalyvfm | 0 | 56 |" in capsys.readouterr().out


def test_reused_features_still_count_in_the_throughput():
    method = KNN(KNNConfig(resolution=56), backbone=tiny_dinov2())
    images = {str(i): np.random.default_rng(i).integers(0, 255, (40, 40, 3), np.uint8) for i in range(3)}
    method.fit({"r": images["0"]})
    method.score(images)
    assert method.reused_seconds == 0.0
    method.score(images)
    assert method.reused_seconds > 0.0


@pytest.mark.integration
def test_knn_on_real_images_with_real_masks(tmp_path):
    """A small tree of real magnetic-tile images (linked, not copied) through the embedded backbone."""
    from conftest import SHARED_DATA, missing_real_data

    src = SHARED_DATA / "magnetic_tile" / "magnetic_tile"
    if not src.is_dir():
        missing_real_data(src)
    dst = tmp_path / "data" / "mt" / "tile"
    picks = {"train/good": sorted((src / "train/good").iterdir())[:2],
             "test/good": sorted((src / "test/good").iterdir())[:4],
             "test/blowhole": sorted((src / "test/blowhole").iterdir())[:4]}
    for sub, files in picks.items():
        (dst / sub).mkdir(parents=True)
        for f in files:
            (dst / sub / f.name).symlink_to(f)
            if sub == "test/blowhole":
                mask = src / "ground_truth/blowhole" / f"{f.stem}_mask.png"
                (dst / "ground_truth/blowhole").mkdir(parents=True, exist_ok=True)
                (dst / "ground_truth/blowhole" / mask.name).symlink_to(mask)
    cfg = BenchmarkConfig(data=str(tmp_path / "data"), out=str(tmp_path / "out"), methods=("knn",), shots=(2,),
                          seeds=(0,), resolution=224)
    [part] = run_benchmark(cfg)
    row = part["row"]
    assert len(part["paths"]) == 8 and not cfg.warnings
    assert all(0.0 <= row[m] <= 1.0 for m in ("I-AUROC", "P-AUROC", "AUPRO@0.3"))
    assert row["resolution"] == 224 and row["pixel_resolution"] == "ground truth"


def test_fewshot_method_in_the_runner_reports_calibration_and_fit_time(tmp_path, tiny_model):
    from anomalyvfm.fewshot import FinetuneConfig
    from anomalyvfm.methods.fewshot import AnomalyVFMFewShot

    data = tmp_path / "data"
    fake_mvtec(data / "toyset", "a", n=4, size=(56, 56))
    cfg = BenchmarkConfig(data=str(data), out=str(tmp_path / "out"), methods=("anomalyvfm-fewshot",), shots=(2,),
                          seeds=(0,))
    ft = FinetuneConfig(steps=2, batch_size=4, eval_every=1, holdout=4, resolution=56, augmentations=2)
    parts = run_benchmark(cfg, lambda name: AnomalyVFMFewShot(tiny_model, ft, resolution=56))
    row = parts[0]["row"]
    assert row["method"] == "anomalyvfm-fewshot" and row["shots"] == 2 and row["fit_s"] > 0
    assert 0.0 <= row["FPR@thr"] <= 1.0 and 0.0 <= row["recall@thr"] <= 1.0
    assert {"I-AUROC[raw]", "I-AUROC[topk]"} <= set(row)


def test_unreadable_or_empty_categories_are_warned_about_and_the_rest_finish(tmp_path, tiny_model):
    data = tmp_path / "data"
    fake_mvtec(data / "toyset", "fine")
    for f in (fake_mvtec(data / "toyset", "badtest") / "test").rglob("*.png"):
        f.write_bytes(b"")
    for f in (fake_mvtec(data / "toyset", "badtrain") / "train").rglob("*.png"):
        f.write_bytes(b"junk")
    (data / "toyset" / "empty" / "test" / "good").mkdir(parents=True)
    (data / "toyset" / "empty" / "train" / "good").mkdir(parents=True)
    cfg = BenchmarkConfig(data=str(data), out=str(tmp_path / "out"), methods=("knn", "anomalyvfm"), shots=(1,),
                          seeds=(0,))
    for _ in range(2):  # and again, as a resume: the same warnings, no stop
        rows = run_benchmark(cfg, _factory(tiny_model))
    done = {(r["row"]["category"], r["row"]["method"]) for r in rows}
    assert done == {("fine", "knn"), ("fine", "anomalyvfm"), ("badtrain", "anomalyvfm")}
    text = "\n".join(cfg.warnings)
    assert "toyset/badtest: 0 readable test images" in text and "toyset/empty has no test images" in text
    assert "toyset/badtrain: knn k=1 seed=0 failed" in text
    from anomalyvfm.report import write_reports

    write_reports(rows, tmp_path / "out", {}, cfg.warnings)
    assert json.loads((tmp_path / "out" / "results.json").read_text())["warnings"] == cfg.warnings
