import json

import numpy as np
from PIL import Image

from anomalyvfm.data import read_btad, read_folder, read_ksdd2, read_mvtec, read_realiad, read_visa, scan
from conftest import fake_mvtec, write_image, write_mask


def test_mvtec_layout(tmp_path):
    cat = read_mvtec(fake_mvtec(tmp_path / "mvtec"), "mvtec")
    assert cat.counts() == {"train_good": 3, "test_good": 3, "test_defective": 3, "masks": 3}
    crack = [s for s in cat.test if s.label][0]
    assert crack.defect == "crack" and crack.mask.name == "000_mask.png"


def test_missing_mask_is_warned_and_kept_for_image_metrics(tmp_path):
    folder = fake_mvtec(tmp_path / "d")
    (folder / "ground_truth" / "crack" / "001_mask.png").unlink()
    cat = read_mvtec(folder, "d")
    assert cat.counts()["masks"] == 2 and cat.counts()["test_defective"] == 3
    assert any("001.png: no mask" in w for w in cat.warnings)


def test_btad_layout(tmp_path):
    folder = tmp_path / "btad" / "01"
    write_image(folder / "train" / "ok" / "0.png")
    write_image(folder / "test" / "ok" / "1.png")
    write_image(folder / "test" / "ko" / "2.png")
    write_mask(folder / "ground_truth" / "ko" / "2.png")
    cat = read_btad(folder)
    assert cat.counts() == {"train_good": 1, "test_good": 1, "test_defective": 1, "masks": 1}


def test_visa_split_csv(tmp_path):
    root = tmp_path / "visa"
    write_image(root / "candle/Data/Images/Normal/0.JPG")
    write_image(root / "candle/Data/Images/Normal/1.JPG")
    write_image(root / "candle/Data/Images/Anomaly/2.JPG")
    write_mask(root / "candle/Data/Masks/Anomaly/2.png")
    (root / "split_csv").mkdir()
    (root / "split_csv" / "1cls.csv").write_text(
        "object,split,label,image,mask\n"
        "candle,train,normal,candle/Data/Images/Normal/0.JPG,\n"
        "candle,test,normal,candle/Data/Images/Normal/1.JPG,\n"
        "candle,test,anomaly,candle/Data/Images/Anomaly/2.JPG,candle/Data/Masks/Anomaly/2.png\n")
    [cat] = read_visa(root)
    assert cat.name == "candle" and cat.counts() == {"train_good": 1, "test_good": 1, "test_defective": 1, "masks": 1}


def test_ksdd2_labels_come_from_the_gt_masks(tmp_path):
    root = tmp_path / "ksdd2"
    for split in ("train", "test"):
        for i, defective in enumerate([False, True]):
            write_image(root / split / f"{i}.png")
            write_mask(root / split / f"{i}_GT.png", box=(5, 15, 10, 30) if defective else (0, 0, 0, 0))
    cat = read_ksdd2(root)
    assert cat.counts() == {"train_good": 1, "test_good": 1, "test_defective": 1, "masks": 1}


def test_realiad_json_splits(tmp_path):
    root = tmp_path / "realiad"
    write_image(root / "realiad_1024/toy/OK/a.jpg")
    write_image(root / "realiad_1024/toy/OK/b.jpg")
    write_image(root / "realiad_1024/toy/NG/c.jpg")
    write_mask(root / "realiad_1024/toy/NG/c.png")
    (root / "realiad_jsons").mkdir(parents=True)
    (root / "realiad_jsons" / "toy.json").write_text(json.dumps({
        "meta": {"normal_class": "OK"},
        "train": [{"image_path": "toy/OK/a.jpg", "anomaly_class": "OK", "mask_path": None}],
        "test": [{"image_path": "toy/OK/b.jpg", "anomaly_class": "OK", "mask_path": None},
                 {"image_path": "toy/NG/c.jpg", "anomaly_class": "AK", "mask_path": "toy/NG/c.png"}]}))
    [cat] = read_realiad(root)
    assert cat.counts() == {"train_good": 1, "test_good": 1, "test_defective": 1, "masks": 1}
    assert all(s.path.is_file() for s in cat.test) and cat.test[1].defect == "AK"


def test_plain_folder_of_good_and_bad(tmp_path):
    root = tmp_path / "myparts"
    write_image(root / "good" / "g.png")
    write_image(root / "bad" / "b.png")
    write_mask(root / "masks" / "b_mask.png")
    cat = read_folder(root)
    assert cat.counts() == {"train_good": 0, "test_good": 1, "test_defective": 1, "masks": 1}


def test_scan_finds_every_category_and_skips_empty_ones(tmp_path, caplog):
    fake_mvtec(tmp_path / "mvtec", "a")
    fake_mvtec(tmp_path / "mvtec", "b")
    (tmp_path / "mvtec" / "empty" / "train" / "good").mkdir(parents=True)
    (tmp_path / "mvtec" / "empty" / "test").mkdir()
    cats = scan(tmp_path)
    assert [c.key for c in cats] == ["mvtec/a", "mvtec/b"]
    assert "no test images" in caplog.text
    assert [c.key for c in scan(tmp_path, ["mvtec/b"])] == ["mvtec/b"]


def test_hidden_files_and_folders_are_not_samples_or_defect_types(tmp_path):
    folder = fake_mvtec(tmp_path / "mvtec")
    (folder / "test" / "crack" / "._000.png").write_bytes(b"\x00\x05\x16\x07Mac OS X")
    write_image(folder / "test" / ".ipynb_checkpoints" / "000.png")
    cat = read_mvtec(folder, "mvtec")
    assert cat.counts() == {"train_good": 3, "test_good": 3, "test_defective": 3, "masks": 3}
    assert {s.defect for s in cat.test if s.label} == {"crack"}
