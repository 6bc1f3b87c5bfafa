import json

import pytest

from anomalyvfm.cli import main
from conftest import result_rows, shared_images, write_image




def test_predict_writes_results_and_pngs(tiny_checkpoint, tmp_path, capsys):
    images = tmp_path / "imgs"
    for i in range(3):
        write_image(images / f"img{i}.png", seed=i)
    out = tmp_path / "out"
    code = main(["predict", str(images), "--model", str(tiny_checkpoint), "--resolution", "56", "--out", str(out)])
    assert code == 0
    rows = result_rows(out)
    assert [r["verdict"] in ("normal", "anomalous") for r in rows] == [True] * 3
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert len(list((out / "overlays").iterdir())) == 3
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))
    assert "3 images" in capsys.readouterr().err


def test_predict_views_changes_the_scores_and_is_recorded(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    image = str(write_image(tmp_path / "a.png", seed=1))
    runs = {}
    for views in ("single", "d4"):
        out = tmp_path / views
        assert main(["predict", image, "--model", str(tiny_checkpoint), "--resolution", "56", "--views", views,
                     "--out", str(out)]) == 0
        runs[views] = (json.loads((out / "run.json").read_text())["test_views"], float(result_rows(out)[0]["score"]))
    assert runs["single"][0] == "single" and runs["d4"][0] == "d4"
    assert runs["single"][1] != runs["d4"][1]  # the eight views were averaged
    assert "was set with --views single, not d4" in capsys.readouterr().err  # it belongs to the model's views
    from anomalyvfm import batch_predict
    from anomalyvfm.mutual import MutualConfig

    tiny = batch_predict.BatchConfig(mutual=MutualConfig(layers=(0, 1), radii=(1, 3)), min_images=4)
    monkeypatch.setattr(batch_predict.BatchConfig, "for_model", classmethod(lambda cls, model: tiny))  # 2 blocks
    lot = [image] + [str(write_image(tmp_path / f"l{i}.png", seed=20 + i)) for i in range(3)]
    assert main(["predict", *lot, "--model", str(tiny_checkpoint), "--resolution", "56", "--views", "d4",
                 "--batch-mode", "mutual", "--out", str(tmp_path / "b")]) == 0  # batch mode scores through them too
    assert json.loads((tmp_path / "b" / "run.json").read_text())["test_views"] == "d4"
    assert "was set with" not in capsys.readouterr().err  # batch mode sets its own threshold: nothing to warn of
    good = [str(write_image(tmp_path / f"g{i}.png", seed=10 + i)) for i in range(3)]
    assert main(["calibrate", str(tiny_checkpoint), "--views", "mirror", "--good", *good, "--out",
                 str(tmp_path / "cal")]) == 0
    assert json.loads((tmp_path / "cal" / "config.json").read_text())["test_views"] == "mirror"


def test_predict_tile_size_changes_the_scores_and_is_recorded(tiny_checkpoint, tmp_path, capsys):
    image = str(write_image(tmp_path / "a.png", (90, 90), seed=2))
    runs = {}
    for size in ("0", "40"):
        out = tmp_path / size
        assert main(["predict", image, "--model", str(tiny_checkpoint), "--resolution", "56", "--tile-size", size,
                     "--out", str(out)]) == 0
        runs[size] = (json.loads((out / "run.json").read_text())["tile_size"], float(result_rows(out)[0]["score"]))
    assert runs["0"][0] == 0 and runs["40"][0] == 40
    assert runs["0"][1] != runs["40"][1]  # nine tiles, the most anomalous one's score
    assert "was set with --tile-size 0, not 40" in capsys.readouterr().err  # it belongs to the model's tiling
    with pytest.raises(SystemExit):
        main(["predict", image, "--tile-size", "10"])
    assert "at least 28" in capsys.readouterr().err
    good = [str(write_image(tmp_path / f"g{i}.png", (90, 90), seed=10 + i)) for i in range(3)]
    assert main(["calibrate", str(tiny_checkpoint), "--tile-size", "40", "--good", *good, "--out",
                 str(tmp_path / "cal")]) == 0
    assert json.loads((tmp_path / "cal" / "config.json").read_text())["tile_size"] == 40


def test_unreadable_files_are_reported_and_the_rest_scored(tiny_checkpoint, tmp_path, capsys):
    good = write_image(tmp_path / "good.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    out = tmp_path / "out"
    code = main(["predict", str(good), str(empty), str(text), str(tmp_path / "missing.png"),
                 "--model", str(tiny_checkpoint), "--resolution", "56", "--out", str(out)])
    assert code == 1
    rows = {r["path"]: r for r in result_rows(out)}
    assert rows[str(good)]["verdict"] != "error" and rows[str(good)]["score"] != ""
    assert rows[str(empty)]["verdict"] == "error" and "empty file" in rows[str(empty)]["error"]
    assert "not an image" in rows[str(text)]["error"]
    assert "no such file" in rows[str(tmp_path / "missing.png")]["error"]
    err = capsys.readouterr().err
    assert f"{empty}: empty file" in err and "3 failed" in err
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["error"] is None for r in records] == [True, False, False, False]


def test_no_images_found_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no images found" in capsys.readouterr().err


@pytest.mark.integration
def test_predict_on_real_images_with_the_default_model(tmp_path, capsys):
    images = shared_images("magnetic_tile", "magnetic_tile", "crack", 3)
    out = tmp_path / "out"
    assert main(["predict", *map(str, images), "--out", str(out)]) == 0
    rows = result_rows(out)
    assert len(rows) == 3 and all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert len(list((out / "overlays").glob("*.png"))) == 3


def test_predict_says_when_its_verdicts_are_uncalibrated(tiny_checkpoint, tmp_path, capsys):
    from anomalyvfm import AnomalyVFM
    from anomalyvfm.fewshot import recalibrate

    image = str(write_image(tmp_path / "a.png", seed=1))
    assert main(["predict", image, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o1")]) == 0
    err = capsys.readouterr().err
    assert "UNCALIBRATED" in err and "anomalyvfm calibrate" in err
    assert main(["predict", image, "--model", str(tiny_checkpoint), "--threshold", "0.7", "--out",
                 str(tmp_path / "o2")]) == 0
    assert "UNCALIBRATED" not in capsys.readouterr().err  # the user chose the threshold
    model = AnomalyVFM.from_pretrained(tiny_checkpoint)
    recalibrate(model, [str(write_image(tmp_path / f"g{i}.png", seed=10 + i)) for i in range(4)])
    assert model.config.threshold_origin == "calibrated"
    model.save_pretrained(tmp_path / "calibrated")
    assert main(["predict", image, "--model", str(tmp_path / "calibrated"), "--out", str(tmp_path / "o3")]) == 0
    assert "UNCALIBRATED" not in capsys.readouterr().err


@pytest.mark.integration
def test_the_shipped_threshold_comes_from_synthetic_normals():
    from anomalyvfm.model import load_default

    config = load_default().config
    assert config.threshold_origin == "synthetic" and 0.5 < config.threshold < 0.7


def test_library_warnings_read_as_one_line_on_the_command_line(monkeypatch):
    """A warning from the library shows as "warning: ..." on one line, not with Python's file name and source
    line; the formatter is the command's own only while it runs."""
    import warnings

    from anomalyvfm import cli

    before, shown = warnings.formatwarning, []
    monkeypatch.setattr(cli, "_synth", lambda args: shown.append(warnings.formatwarning(
        UserWarning("the threshold comes from 1 good image"), UserWarning, "/x/cli.py", 366, "args.func(args)")) or 0)
    assert main(["synth", "--n", "1", "--out", "unused"]) == 0
    assert shown == ["warning: the threshold comes from 1 good image\n"] and warnings.formatwarning is before
