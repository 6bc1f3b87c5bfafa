"""A hostile user's inputs and faults, through ``anomalyvfm predict`` as a user runs it. For every case: the good
images still get results, a bad one gets one line naming the file and the reason, the exit status says so, and the
output folder holds exactly one complete run."""
from __future__ import annotations

import csv
import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalyvfm.cli import main
from conftest import result_rows, write_image

GOOD = 2  # good images scored beside each bad input


def _png(path: Path, array: np.ndarray, **kw) -> Path:
    Image.fromarray(array).save(path, **kw)
    return path


def _raw_png(path: Path, width: int, height: int) -> Path:
    """A tiny, valid PNG of any size (1-bit greyscale, compressed zero rows): a few hundred bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    row = b"\0" + b"\0" * ((width + 7) // 8)
    body = zlib.compress(row * height, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _rgb(h=40, w=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _truncated(path: Path, fmt: str) -> Path:
    full = path.with_name("full" + path.suffix)
    Image.fromarray(_rgb()).save(full, fmt)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def _symlink_loop(path: Path) -> Path:
    other = path.with_name("loop_b.png")
    os.symlink(other, path)
    os.symlink(path, other)
    return path


# name: (make(tmp) -> path, expected reason fragment or None when the input must be scored)
BAD = {
    "empty file": (lambda d: _write(d / "empty.png", b""), "empty file"),
    "truncated PNG": (lambda d: _truncated(d / "trunc.png", "PNG"), "corrupt or truncated"),
    "truncated JPEG": (lambda d: _truncated(d / "trunc.jpg", "JPEG"), "corrupt or truncated"),
    "random bytes as .jpg": (lambda d: _write(d / "noise.jpg", os.urandom(2048)),
                             "not an image"),
    "text as .png": (lambda d: _write(d / "text.png", "hello"), "not an image"),
    "a .txt file given by name": (lambda d: _write(d / "notes.txt", "x"), "not an image"),
    "missing file": (lambda d: d / "missing.png", "no such file"),
    "broken symlink": (lambda d: os.symlink(d / "nowhere.png", d / "dangling.png") or d / "dangling.png",
                       "broken symbolic link"),
    "symlink loop": (lambda d: _symlink_loop(d / "loop_a.png"), "symbolic link loop"),
    "a folder named like an image": (lambda d: (d / "dir.png").mkdir() or d / "dir.png", None),  # searched: empty
    "SVG": (lambda d: _write(d / "v.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>"),
            "not an image"),
    "PNG header, garbage body": (lambda d: _write(d / "garbage.png", b"\x89PNG\r\n\x1a\n" + os.urandom(500)),
                                 "not an image"),
    "60000x1 PNG (318 bytes)": (lambda d: _raw_png(d / "line.png", 60000, 1), "aspect ratio"),
    "1x60000 PNG": (lambda d: _raw_png(d / "column.png", 1, 60000), "aspect ratio"),
    "13000x13000 PNG": (lambda d: _raw_png(d / "huge.png", 13000, 13000), "too large"),
    "decompression bomb (40000x40000)": (lambda d: _raw_png(d / "bomb.png", 40000, 40000), "too large"),
    "1x1 image (a placeholder)": (lambda d: _png(d / "dot.png", _rgb(1, 1)), "too small: 1×1"),
    "40x13 image (under one patch)": (lambda d: _png(d / "sliver.png", _rgb(13, 40)), "too small: 40×13"),
    # readable oddities: scored like any image
    "16-bit greyscale PNG": (lambda d: _png(d / "g16.png", (np.arange(2400).reshape(40, 60) * 20).astype(np.uint16)),
                             None),
    "greyscale PNG": (lambda d: _png(d / "grey.png", _rgb()[..., 0]), None),
    "RGBA PNG": (lambda d: _png(d / "rgba.png", np.dstack([_rgb(), np.full((40, 60), 128, np.uint8)])), None),
    "palette PNG": (lambda d: Image.fromarray(_rgb()).convert("P").save(d / "pal.png") or d / "pal.png", None),
    "CMYK JPEG": (lambda d: Image.fromarray(_rgb()).convert("CMYK").save(d / "cmyk.jpg") or d / "cmyk.jpg", None),
    "animated GIF": (lambda d: Image.fromarray(_rgb()).save(d / "anim.gif", save_all=True,
                                                            append_images=[Image.fromarray(_rgb(seed=1))])
                     or d / "anim.gif", None),
    "multi-page TIFF": (lambda d: Image.fromarray(_rgb()).save(d / "pages.tif", save_all=True,
                                                               append_images=[Image.fromarray(_rgb(seed=2))])
                        or d / "pages.tif", None),
    "float TIFF": (lambda d: Image.fromarray(np.random.default_rng(0).random((40, 60)).astype(np.float32)).save(
        d / "float.tif") or d / "float.tif", None),
    "WebP": (lambda d: Image.fromarray(_rgb()).save(d / "w.webp") or d / "w.webp", None),
    "BMP": (lambda d: Image.fromarray(_rgb()).save(d / "b.bmp") or d / "b.bmp", None),
    "upper-case extension": (lambda d: _png(d / "UPPER.PNG", _rgb()), None),
    "brackets in the name": (lambda d: _png(d / "part[1].png", _rgb()), None),
    "spaces and unicode in the name": (lambda d: _png(d / "pièce n°2.png", _rgb()), None),
    "tall image (tiled)": (lambda d: _png(d / "tall.png", _rgb(600, 60)), None),
    "all-black image (a covered lens)": (lambda d: _png(d / "black.png", np.zeros((40, 60, 3), np.uint8)),
                                         "blank: every pixel lies within 2 grey levels (0–0)"),
    "flat grey JPEG (a failed capture)": (lambda d: Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(
        d / "grey.jpg") or d / "grey.jpg", "blank: every pixel"),
    "dark, low-contrast image": (lambda d: _png(d / "dark.png", (_rgb() % 4 + 10).astype(np.uint8)), None),
    "EXIF-rotated JPEG": (lambda d: _exif_rotated(d / "rot.jpg"), None),
}


def _exif_rotated(path: Path) -> Path:
    image = Image.fromarray(_rgb())
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    image.save(path, exif=exif)
    return path




def _predict(args: list[str], capsys) -> tuple[int, str]:
    rc = main(["predict", *args])
    return rc, capsys.readouterr().err


@pytest.fixture
def goods(tmp_path) -> list[str]:
    return [str(write_image(tmp_path / "good" / f"ok{i}.png", seed=i)) for i in range(GOOD)]


@pytest.mark.parametrize("case", list(BAD))
def test_each_input_kind_gets_a_result_or_a_one_line_reason(case, tiny_checkpoint, tmp_path, goods, capsys):
    make, reason = BAD[case]
    bad_dir = tmp_path / "inputs"
    bad_dir.mkdir()
    path = make(bad_dir)
    out = tmp_path / "out"
    rc, err = _predict([*goods, str(path), "--model", str(tiny_checkpoint), "--resolution", "56", "--out", str(out)],
                       capsys)
    rows = result_rows(out)
    by_path = {r["path"]: r for r in rows}
    assert all(by_path[g]["verdict"] in ("normal", "anomalous") for g in goods)  # the good ones always scored
    if case == "a folder named like an image":  # a folder is searched: nothing inside, nothing added
        assert len(rows) == GOOD and rc == 0
        return
    row = by_path[str(path)]
    if reason is None:
        assert row["verdict"] in ("normal", "anomalous") and row["score"] != "" and rc == 0, row
        assert (out / "heatmaps" / row["image"]).is_file()
    else:
        assert row["verdict"] == "error" and reason in row["error"] and rc == 1, row
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert lines == [f"error: {path}: {row['error']}"]  # one line, naming the file and the reason
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not (out / ".anomalyvfm.lock").exists()


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_batch_size_is_refused_before_anything_runs(value, tmp_path, goods, capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", *goods, "--batch-size", value, "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "--batch-size" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [["predict", "IMG", "--threshold", "nan"], ["predict", "IMG", "--threshold", "50"],
                                  ["predict", "IMG", "--threshold", "-0.1"], ["predict", "IMG", "--resolution", "100"],
                                  ["predict", "IMG", "--resolution", "abc"], ["benchmark", "--resolution", "0"],
                                  ["calibrate", "m", "--good", "IMG", "--fpr", "2"], ["synth", "--n", "0"],
                                  ["finetune", "--good", "IMG", "--fpr", "inf"], ["finetune", "--good", "IMG", "--steps",
                                                                                 "-3"]])
def test_a_bad_number_is_refused_by_its_flag_before_anything_runs(args, tmp_path, goods, capsys):
    """A NaN threshold (every verdict would read 'normal'), one outside the scores' [0, 1] (a percentage would flag
    nothing), a resolution the model cannot take, a rate outside (0, 1) or no pairs: argparse's one line naming the
    flag, before any model loads or folder is made."""
    args = [goods[0] if a == "IMG" else a for a in args] + ["--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:
        main(args)
    flag = next(a for a in args if a.startswith("--") and a != "--good")
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {flag}" in err and not (tmp_path / "o").exists()
    if "50" in args:
        assert "a percentage? use 0.5" in err


def test_a_nan_threshold_is_refused_by_predict_too(tiny_model, goods):
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        tiny_model.predict(goods, threshold=float("nan"))


def test_synth_and_export_to_a_place_they_cannot_write_say_so_in_one_line(tiny_checkpoint, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    assert main(["synth", "--n", "1", "--size", "10", "--out", str(tmp_path / "s")]) == 2  # below the generator's least
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "s").exists()
    assert main(["synth", "--n", "1", "--out", str(taken)]) == 2
    assert main(["export", str(tiny_checkpoint), "--onnx", str(taken / "m.onnx")]) == 2  # inside a file
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and str(taken) in err[0] and "m.onnx" in err[1] and taken.read_text() == "a file"


def test_an_out_that_is_a_file_fails_before_the_model_loads(tiny_checkpoint, tmp_path, goods, capsys, monkeypatch):
    """One line, before any model loads (it came after the load and its UNCALIBRATED warning)."""
    import anomalyvfm.cliargs as cliargs

    monkeypatch.setattr(cliargs, "load_quietly", lambda *a: pytest.fail("the model loaded first"))
    (tmp_path / "o").write_text("keep me")
    rc, err = _predict([*goods, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "is not a folder" in err and (tmp_path / "o").read_text() == "keep me"
    assert len(err.strip().splitlines()) == 1


def test_finetune_calibrate_and_export_refuse_a_file_or_folder_in_the_way_before_any_work(tiny_checkpoint, tmp_path,
                                                                                          capsys, monkeypatch):
    """A file where finetune or calibrate would write its folder, or a folder where export would write its file, is
    one line, before anything is fitted, scored or loaded (finetune and calibrate raised FileExistsError at the end)."""
    import anomalyvfm.cliargs as cliargs
    import anomalyvfm.fewshot as fewshot
    from anomalyvfm.errors import CheckpointError
    from anomalyvfm.model import AnomalyVFM

    good = [str(write_image(tmp_path / "g" / f"{i}.png", seed=i)) for i in range(3)]
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    monkeypatch.setattr(fewshot, "finetune", lambda *a, **k: pytest.fail("fitted before refusing"))
    monkeypatch.setattr(fewshot, "recalibrate", lambda *a, **k: pytest.fail("scored before refusing"))
    for argv in (["finetune", "--good", *good, "--out", str(taken)],
                 ["calibrate", str(tiny_checkpoint), "--good", *good, "--out", str(taken)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {taken}: exists and is not a folder") and len(err.splitlines()) == 1
    monkeypatch.setattr(cliargs, "load_quietly", lambda *a: pytest.fail("the model loaded first"))
    with pytest.raises(SystemExit) as e:
        main(["export", str(tiny_checkpoint), "--onnx", str(tmp_path / "g")])
    assert e.value.code == 2 and "is a folder; give a file name" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="exists and is not a folder"):  # the Python API says the same
        AnomalyVFM.save_pretrained(object(), taken)
    assert taken.read_text() == "keep me"


def test_saved_checkpoints_follow_the_umask(tiny_model, tmp_path):
    """safetensors writes its files 0600: a profile shared on a team's drive could not be read by the others."""
    import importlib
    import stat

    import anomalyvfm.outputs as outputs

    old = os.umask(0o022)
    try:
        importlib.reload(outputs)
        folder = tiny_model.save_pretrained(tmp_path / "ckpt")
    finally:
        os.umask(old)
        importlib.reload(outputs)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in folder.iterdir()}
    assert "heads.safetensors" in modes and set(modes.values()) == {0o644}, modes


def test_a_second_concurrent_run_is_refused_and_a_stale_lock_is_taken_over(tiny_checkpoint, tmp_path, goods, capsys):
    import subprocess
    import sys

    out = tmp_path / "o"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".anomalyvfm.lock").write_text(str(sleeper.pid))  # a live run holds the folder
        rc, err = _predict([*goods, "--model", str(tiny_checkpoint), "--out", str(out)], capsys)
        assert rc == 2 and f"another anomalyvfm run (pid {sleeper.pid})" in err and not (out / "results.csv").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    rc, _ = _predict([*goods, "--model", str(tiny_checkpoint), "--out", str(out)], capsys)  # its pid is dead now
    assert rc == 0 and len(result_rows(out)) == GOOD and not (out / ".anomalyvfm.lock").exists()


def test_a_rerun_replaces_the_previous_run_and_leaves_nothing_stale(tiny_checkpoint, tmp_path, capsys):
    first = [str(write_image(tmp_path / "in" / f"first{i}.png", seed=i)) for i in range(3)]
    second = [str(write_image(tmp_path / "in2" / "second.png", seed=9))]
    out = tmp_path / "o"
    assert _predict([*first, "--model", str(tiny_checkpoint), "--out", str(out)], capsys)[0] == 0
    assert _predict([*second, "--model", str(tiny_checkpoint), "--out", str(out)], capsys)[0] == 0
    assert [r["path"] for r in result_rows(out)] == second
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == ["second.png"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["second.png"]


def test_predicting_the_current_folder_twice_never_scores_its_own_outputs(tiny_checkpoint, tmp_path, capsys,
                                                                          monkeypatch):
    for i in range(2):
        write_image(tmp_path / "lot" / f"{i}.png", seed=i)
    monkeypatch.chdir(tmp_path / "lot")
    for _ in range(2):
        assert _predict([".", "--model", str(tiny_checkpoint), "--out", "out"], capsys)[0] == 0
        assert len(result_rows(tmp_path / "lot" / "out")) == 2


def test_a_run_killed_midway_keeps_every_row_it_finished(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    import anomalyvfm.outputs as outputs

    paths = [str(write_image(tmp_path / "in" / f"{i}.png", seed=i)) for i in range(5)]
    real_add, seen = outputs.ResultsWriter.add, []

    def add_then_die(self, p):
        if len(seen) == 3:
            raise KeyboardInterrupt  # the process dies here
        seen.append(p.name)
        return real_add(self, p)

    monkeypatch.setattr(outputs.ResultsWriter, "add", add_then_die)
    assert main(["predict", *paths, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o"),
                 "--batch-size", "2"]) == 130  # one line, no traceback
    rows = result_rows(tmp_path / "o")
    assert [r["path"] for r in rows] == paths[:3] and all(r["score"] for r in rows)
    assert len((tmp_path / "o" / "results.jsonl").read_text().splitlines()) == 3
    assert json.loads((tmp_path / "o" / "run.json").read_text())["status"] == "interrupted"


def test_an_interrupted_finetune_or_synth_says_what_it_left(tmp_path, capsys, monkeypatch):
    """Each command's Ctrl-C line said 'what was finished is kept (run.json says so; benchmark resumes from --out)',
    true of predict and benchmark only. A stopped finetune leaves no profile, and a synth stopped while its dataset
    is saved leaves the dataset that was there before, not a half-written one."""
    import datasets

    import anomalyvfm.fewshot as fewshot

    good = [str(write_image(tmp_path / "g" / f"{i}.png", seed=i)) for i in range(3)]

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fewshot, "finetune", stopped)
    assert main(["finetune", "--good", *good, "--out", str(tmp_path / "p")]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted: no profile was written"
    assert not (tmp_path / "p").exists()
    assert main(["synth", "--n", "2", "--size", "32", "--out", str(tmp_path / "s")]) == 0
    before = datasets.load_from_disk(str(tmp_path / "s" / "dataset"))
    real_save = datasets.Dataset.save_to_disk

    def save_then_stop(self, path, *a, **k):
        real_save(self.select([0]), path, *a, **k)  # part of the new dataset is on disk when the stop comes
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", save_then_stop)
    capsys.readouterr()
    assert main(["synth", "--n", "3", "--seed", "1", "--size", "32", "--out", str(tmp_path / "s")]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("interrupted: no dataset was written")
    after = datasets.load_from_disk(str(tmp_path / "s" / "dataset"))
    assert len(after) == 2 and after[0]["index"] == before[0]["index"] and after.info.description == \
        before.info.description
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["contact_sheet.png", "dataset"]  # no temporary left


def test_a_full_disk_stops_the_run_in_one_line_and_keeps_every_finished_row(tiny_checkpoint, tmp_path, capsys,
                                                                            monkeypatch):
    """Disk full while the second image's PNGs are written: one line naming the file and the reason (a traceback
    before), the first image's row kept whole, run.json 'failed', the folder's lock released."""
    import errno

    import anomalyvfm.outputs as outputs

    paths = [str(write_image(tmp_path / "in" / f"{i}.png", seed=i)) for i in range(4)]
    real_write_png, calls = outputs.write_png, []

    def fill_up(path, rgb):
        calls.append(path)
        if len(calls) > 3:  # the first image's three PNGs fit
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write_png(path, rgb)

    monkeypatch.setattr(outputs, "write_png", fill_up)
    assert main(["predict", *paths, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o"),
                 "--batch-size", "2"]) == 2
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    assert "Traceback" not in err and "No space left on device" in line and "1.png" in line
    assert [r["path"] for r in result_rows(tmp_path / "o")] == paths[:1]
    assert json.loads((tmp_path / "o" / "run.json").read_text())["status"] == "failed"
    assert not (tmp_path / "o" / outputs.LOCK).exists() and (tmp_path / "o" / "report.html").exists()
    assert sorted(p.name for p in (tmp_path / "o").rglob("*.png")) == ["0.png"] * 3  # none without its row


def test_a_row_that_cannot_be_written_whole_is_not_written_at_all(tmp_path):
    """A write cut short by a full disk, in the second of the two files a row goes to: both are cut back."""
    import errno

    from anomalyvfm.outputs import _append_whole

    class FillsUp:
        def __init__(self, f):
            self.f, self.name = f, f.name

        def write(self, data):
            self.f.write(bytes(data[:3]))
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, attr):
            return getattr(self.f, attr)

    with open(tmp_path / "a.csv", "wb", buffering=0) as a, open(tmp_path / "b.jsonl", "wb", buffering=0) as b:
        _append_whole([(a, b"head\n"), (b, b"{}\n")])
        with pytest.raises(OSError, match="b.jsonl"):
            _append_whole([(a, b"row 2\n"), (FillsUp(b), b'{"row": 2}\n')])
        _append_whole([(a, b"row 3\n"), (b, b'{"row": 3}\n')])  # later rows follow the whole ones
    assert (tmp_path / "a.csv").read_bytes() == b"head\nrow 3\n"
    assert (tmp_path / "b.jsonl").read_bytes() == b'{}\n{"row": 3}\n'


def test_colliding_names_get_one_heatmap_each(tiny_checkpoint, tmp_path, capsys):
    paths = [str(write_image(tmp_path / "c" / "A" / "a.png", seed=1)), str(write_image(tmp_path / "c" / "B" / "a.png"))]
    paths.append(str(write_image(tmp_path / "c" / "a_2.png", seed=2)))
    _predict([*paths, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o")], capsys)
    rows = result_rows(tmp_path / "o")
    names = [r["image"] for r in rows]
    assert len(rows) == 3 and len(set(names)) == 3
    assert all((tmp_path / "o" / "heatmaps" / n).is_file() for n in names)


def test_outputs_follow_the_umask(tiny_checkpoint, tmp_path, goods, capsys):
    import importlib
    import stat

    import anomalyvfm.outputs as outputs

    old = os.umask(0o022)
    try:
        importlib.reload(outputs)
        _predict([*goods, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o")], capsys)
    finally:
        os.umask(old)
        importlib.reload(outputs)
    for name in ("results.csv", "results.jsonl", "run.json", "heatmaps/ok0.png", "overlays/ok0.png"):
        assert stat.S_IMODE((tmp_path / "o" / name).stat().st_mode) == 0o644, name


def test_a_nan_score_is_an_error_never_a_verdict(tiny_model, tmp_path, goods, capsys):
    import torch

    with torch.no_grad():
        for p in tiny_model.image_head.parameters():
            p.fill_(float("nan"))
    tiny_model.config.weights_sha256 = None
    ckpt = tiny_model.save_pretrained(tmp_path / "nan")
    rc, err = _predict([*goods, "--model", str(ckpt), "--out", str(tmp_path / "o")], capsys)
    rows = result_rows(tmp_path / "o")
    assert rc == 1 and all(r["verdict"] == "error" and "non-finite" in r["error"] for r in rows)
    lines = (tmp_path / "o" / "results.jsonl").read_text()
    def bare(token):
        raise AssertionError(f"results.jsonl holds a bare {token}")

    assert all(json.loads(line, parse_constant=bare)["score"] is None for line in lines.splitlines())


def test_tampered_weights_are_refused_by_their_recorded_sha256(tiny_checkpoint, tmp_path, goods, capsys):
    from safetensors.torch import load_file, save_file

    heads = tiny_checkpoint / "heads.safetensors"
    tensors = load_file(heads)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, heads)
    rc = main(["predict", *goods, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "sha256" in err and str(tiny_checkpoint) in err and len(err.strip().splitlines()) == 1


def test_a_damaged_safetensors_file_names_the_file(tiny_checkpoint, tmp_path, goods, capsys):
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    cfg["weights_sha256"] = None  # past the checksum: the reader itself must explain
    (tiny_checkpoint / "config.json").write_text(json.dumps(cfg))
    (tiny_checkpoint / "heads.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{bad")
    rc = main(["predict", *goods, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "heads.safetensors" in err and "safetensors" in err and len(err.strip().splitlines()) == 1


def test_a_mistyped_local_model_path_is_not_looked_up_on_the_hub(tmp_path, goods, capsys):
    rc = main(["predict", *goods, "--model", str(tmp_path / "no-such-profile"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "no such checkpoint folder" in err and "internet" not in err


def test_an_onnx_file_given_as_a_model_says_how_to_run_it(tmp_path, goods, capsys):
    """An exported model passed without --backend onnx: one line saying it is an ONNX export and how it runs, not
    'no such checkpoint folder' for a file that is plainly there."""
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not looked at")
    rc = main(["predict", *goods, "--model", str(onnx), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "--backend onnx" in err and str(onnx) in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("what", ["folder", "damaged", "missing"])
def test_the_onnx_backend_given_no_onnx_model_says_so_in_one_line(tiny_checkpoint, tmp_path, goods, capsys, what):
    """--backend onnx with a checkpoint folder, a damaged file or no file: one line naming it, no traceback."""
    model = {"folder": tiny_checkpoint, "damaged": tmp_path / "bad.onnx", "missing": tmp_path / "none.onnx"}[what]
    if what == "damaged":
        model.write_bytes(b"\x08\x07 not a protobuf")
    rc = main(["predict", *goods, "--backend", "onnx", "--model", str(model), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and str(model) in err and len(err.strip().splitlines()) == 1
    assert ("without --backend onnx" in err) == (what == "folder")


@pytest.mark.parametrize("what", ["missing", "empty", "misnamed"])
def test_a_benchmark_without_its_data_says_why_in_one_line_and_writes_nothing(tmp_path, capsys, what):
    """A missing data folder, one with no dataset in a known layout, or a --datasets name that is not there: one line
    naming the folder (and the name), no traceback, no results folder; before, a misnamed dataset ran nothing and
    exited 0."""
    data = tmp_path / "data"
    if what != "missing":
        (data / "other").mkdir(parents=True)
    if what == "misnamed":
        write_image(data / "toy" / "test" / "good" / "g.png")
        write_image(data / "toy" / "test" / "bad" / "b.png")
        write_image(data / "toy" / "train" / "good" / "t.png")
    args = ["benchmark", "--data", str(data), "--methods", "knn", "--out", str(tmp_path / "out")]
    rc = main(args + (["--datasets", "toyy"] if what == "misnamed" else []))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and str(data) in err and len(err.splitlines()) == 1
    assert {"missing": "no such data folder", "empty": "no dataset found", "misnamed": "toyy"}[what] in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("what", ["folder", "results", "section"])
def test_a_card_for_a_missing_input_says_which_in_one_line(tiny_checkpoint, tmp_path, capsys, what):
    bad_json = tmp_path / "results.json"
    bad_json.write_text("{bad")
    args = {"folder": [str(tmp_path / "nothing")], "results": [str(tiny_checkpoint), "--results", str(bad_json)],
            "section": [str(tiny_checkpoint), "--summary", str(tmp_path / "none.md")]}[what]
    rc = main(["card", *args, "--out", str(tmp_path / "card.md")])
    err = capsys.readouterr().err.strip()
    named = {"folder": "nothing", "results": "results.json", "section": "none.md"}[what]
    assert rc == 2 and named in err and len(err.splitlines()) == 1 and not (tmp_path / "card.md").exists()


def test_any_command_that_fills_the_disk_says_which_file_in_one_line(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """Here `card`: the atomic write fails for a full disk; one line naming the file, no file or temporary left."""
    import errno

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real_fdopen(fd, *a, **k)))
    rc = main(["card", str(tiny_checkpoint), "--out", str(tmp_path / "card.md")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "card.md" in err and "No space left on device" in err
    assert not list(tmp_path.glob("*card.md*"))


def test_a_local_path_with_a_trailing_slash_is_not_looked_up_on_the_hub():
    from anomalyvfm.locations import looks_local

    assert looks_local("no-such-model/") and not looks_local("org/model")


def test_a_backbone_that_brings_code_is_refused(tiny_backbone_dir):
    from anomalyvfm.backbones import load_backbone
    from anomalyvfm.errors import BackboneNotFoundError

    cfg = json.loads((tiny_backbone_dir / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "evil.EvilModel"}
    (tiny_backbone_dir / "config.json").write_text(json.dumps(cfg))
    (tiny_backbone_dir / "evil.py").write_text("raise SystemExit('the code ran')\n")
    with pytest.raises(BackboneNotFoundError, match="auto_map"):
        load_backbone(str(tiny_backbone_dir))


def test_a_pickle_backbone_is_never_unpickled(tiny_backbone_dir, tmp_path):
    import torch

    from anomalyvfm.backbones import load_backbone
    from anomalyvfm.errors import BackboneNotFoundError

    state = {k: v for k, v in __import__("safetensors.torch", fromlist=["load_file"]).load_file(
        tiny_backbone_dir / "model.safetensors").items()}
    (tiny_backbone_dir / "model.safetensors").unlink()
    torch.save(state, tiny_backbone_dir / "pytorch_model.bin")
    with pytest.raises(BackboneNotFoundError, match="safetensors"):
        load_backbone(str(tiny_backbone_dir))


def test_a_profile_saved_over_another_keeps_none_of_its_files(tiny_model, tmp_path):
    from anomalyvfm.profile import ProfileState

    folder = tmp_path / "p"
    tiny_model.profile = ProfileState(reference=_rgb())
    tiny_model.save_pretrained(folder)
    assert (folder / "reference.png").is_file()
    tiny_model.profile = None
    tiny_model.save_pretrained(folder)
    assert not (folder / "reference.png").exists() and not (folder / "state.json").exists()


def test_finetune_and_calibrate_skip_an_unreadable_good_image_and_go_on(tiny_checkpoint, tmp_path, capsys):
    """calibrate also leaves out the profile's own references (they set the threshold too low; it used them)."""
    good = tmp_path / "good"
    for i in range(3):
        write_image(good / f"{i}.png", seed=i)
    _write(good / "broken.png", b"\x89PNG\r\n\x1a\nbroken")
    _png(good / "capped.png", np.zeros((40, 60, 3), np.uint8))  # a blank reference would join the memory
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the few-image threshold warning
        rc = main(["finetune", "--good", str(good), "--base", str(tiny_checkpoint), "--out", str(tmp_path / "p"),
                   "--resolution", "56", "--steps", "2"])
    err = capsys.readouterr().err
    assert rc == 0 and f"skipped good image {good / 'broken.png'}: not an image" in err
    assert f"skipped good image {good / 'capped.png'}: blank" in err
    assert len(json.loads((tmp_path / "p" / "profile.json").read_text())["images"]) == 3
    new = tmp_path / "new"
    for i in range(3):
        write_image(new / f"{i}.png", seed=10 + i)
    _write(new / "broken.png", b"\x89PNG\r\n\x1a\nbroken")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["calibrate", str(tmp_path / "p"), "--good", str(new), str(good / "0.png")])
    err = capsys.readouterr().err
    assert rc == 0 and "skipped good image" in err and "from 3 good images" in err
    assert f"left out 1 of the 4 good images: {tmp_path / 'p'} was fitted on them" in err  # its own reference
    assert main(["calibrate", str(tmp_path / "p"), "--good", str(good)]) == 2  # only its own: none left
    assert "at least 2 readable good images, found 0" in capsys.readouterr().err
    for f in new.glob("[0-9].png"):
        f.write_bytes(b"")
    assert main(["calibrate", str(tmp_path / "p"), "--good", str(new)]) == 2  # too few remain: a clear failure
    assert "at least 2 readable good images, found 0" in capsys.readouterr().err


def test_finetune_refuses_zero_shots(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--good", str(tmp_path), "--shots", "0", "--out", str(tmp_path / "p")])
    assert e.value.code == 2 and "--shots" in capsys.readouterr().err


def test_push_without_network_is_one_clear_line(tiny_checkpoint, capsys):
    rc = main(["push", str(tiny_checkpoint), "--repo", "someone/tiny"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"error: push {tiny_checkpoint} to someone/tiny failed") and "\n" not in err


def test_a_checkpoint_missing_a_weight_file_is_one_line(tiny_checkpoint, tmp_path, goods, capsys):
    """heads.safetensors gone from a folder (a partial copy): loading it was a FileNotFoundError traceback."""
    (tiny_checkpoint / "heads.safetensors").unlink()
    rc, err = _predict([*goods, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and err.strip().splitlines()[-1] == (f"error: {tiny_checkpoint}: a weight file cannot be read (No "
                                                        f"such file or directory: heads.safetensors)")
    assert "Traceback" not in err


def test_push_refuses_damaged_weights_before_any_upload(tiny_checkpoint, capsys, monkeypatch):
    """A folder whose weights no longer match its config.json's sha256 (a damaged copy, a save cut short) would not
    load anywhere; it was uploaded all the same."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda *a, **k: pytest.fail("contacted the Hub"))
    heads = tiny_checkpoint / "heads.safetensors"
    heads.write_bytes(heads.read_bytes()[:-8] + bytes(8))
    assert main(["push", str(tiny_checkpoint), "--repo", "someone/tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: push {tiny_checkpoint} to someone/tiny failed: {tiny_checkpoint}: its weights' "
                          f"sha256") and err.endswith("not pushed") and "\n" not in err
    heads.unlink()
    assert main(["push", str(tiny_checkpoint), "--repo", "someone/tiny"]) == 2
    assert "a weight file cannot be read (No such file or directory: heads.safetensors); not pushed" in \
        capsys.readouterr().err


def test_a_profile_used_at_another_resolution_than_its_calibration_warns(tiny_model, tmp_path):
    from anomalyvfm.calibration import Calibration
    from anomalyvfm.profile import ProfileState

    tiny_model.profile = ProfileState(calibration=Calibration(0.5, 0.1, 0.01, 8, resolution=56))
    image = write_image(tmp_path / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_model.predict([image], resolution=56)  # same resolution: silent
    with pytest.warns(UserWarning, match="calibrated at 56 px but predicts at 112 px"):
        tiny_model.predict([image], resolution=112)
    ckpt = tiny_model.save_pretrained(tmp_path / "p")  # the resolution is saved with the calibration
    from anomalyvfm import AnomalyVFM

    assert AnomalyVFM.from_pretrained(ckpt).profile.calibration.resolution == 56


def test_kill_9_midway_keeps_the_finished_rows_and_a_rerun_completes(tiny_checkpoint, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    paths = [str(write_image(tmp_path / "in" / f"{i:03d}.png", size=(28, 28), seed=i)) for i in range(300)]
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "anomalyvfm.cli", "predict", str(tmp_path / "in"), "--model", str(tiny_checkpoint),
           "--resolution", "56", "--batch-size", "1", "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jsonl = out / "results.jsonl"
    while proc.poll() is None and (not jsonl.exists() or jsonl.read_text().count("\n") < 3):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    lines = jsonl.read_text().splitlines()
    assert 3 <= len(lines) < len(paths) and all(json.loads(line)["score"] is not None for line in lines)
    assert len(result_rows(out)) >= len(lines) - 1  # the csv is streamed the same way
    assert json.loads((out / "run.json").read_text())["status"] == "running"  # it never finished
    rc = subprocess.run(cmd, env=env, capture_output=True).returncode  # the dead run's lock is taken over
    assert rc == 0 and len(result_rows(out)) == len(paths)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_a_mistyped_local_backbone_path_is_not_looked_up_on_the_hub(tmp_path):
    from anomalyvfm.backbones import load_backbone
    from anomalyvfm.errors import BackboneNotFoundError

    with pytest.raises(BackboneNotFoundError, match="no such backbone folder"):
        load_backbone(str(tmp_path / "no-such-backbone"))


def test_a_stop_request_closes_the_run_like_ctrl_c(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """SIGTERM (a service stop, a killed container) mid-run: the finished rows stay, run.json says 'interrupted',
    the report is written, the lock released, and the command exits 130 with one line."""
    import os
    import signal

    import anomalyvfm.outputs as outputs

    paths = [str(write_image(tmp_path / "in" / f"{i}.png", seed=i)) for i in range(5)]
    real_add, seen = outputs.ResultsWriter.add, []

    def add_then_stop(self, p):
        if len(seen) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        seen.append(p.name)
        return real_add(self, p)

    def before(signum, frame):  # the caller's handler; without main's own, the signal would end up here
        raise RuntimeError("SIGTERM reached the caller's handler")

    monkeypatch.setattr(outputs.ResultsWriter, "add", add_then_stop)
    original = signal.signal(signal.SIGTERM, before)
    try:
        code = main(["predict", *paths, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o"),
                     "--batch-size", "2"])
    finally:
        assert signal.signal(signal.SIGTERM, original) is before  # main gave the caller's handler back
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert [r["path"] for r in result_rows(tmp_path / "o")] == paths[:3]  # the rows finished before the signal
    assert json.loads((tmp_path / "o" / "run.json").read_text())["status"] == "interrupted"
    assert (tmp_path / "o" / "report.html").is_file() and not (tmp_path / "o" / outputs.LOCK).exists()


def test_results_keep_scores_that_differ_far_below_six_decimals_apart(tmp_path):
    """A profile's scores crowd near 0 and 1: results.csv and results.jsonl keep every score and threshold exactly,
    so images rank as they were scored and a flagged score never reads equal to its threshold."""
    from types import SimpleNamespace

    from anomalyvfm.outputs import ResultsWriter

    scores = [3.1e-06, 3.4e-06, 0.5 + 2e-9, 1 - 4e-12, 1 - 3e-12]
    with ResultsWriter(tmp_path / "out", images=False) as writer:
        for i, s in enumerate(scores):
            writer.add(SimpleNamespace(name=f"{i}.png", ok=True, error=None, score=s, is_anomalous=s > 0.5,
                                       threshold=0.5, rule="memory", threshold_source="calibration", regions=[],
                                       image=None))
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert [float(r["score"]) for r in rows] == scores
    assert [json.loads(line)["score"] for line in open(tmp_path / "out" / "results.jsonl")] == scores
    assert float(rows[2]["score"]) > float(rows[2]["threshold"]) and rows[2]["verdict"] == "anomalous"


def test_no_command_overwrites_a_shipped_checkpoint_and_calibrate_needs_out_for_a_name(tmp_path, capsys, monkeypatch):
    """The package's checkpoints are never written (by calibrate, finetune, card or save_pretrained: that would change
    every later run's default), and calibrate in place is for local folders (a name or hub id has nothing local to write
    back to): the command line refuses in one line before any image is scored."""
    import anomalyvfm.fewshot as fewshot
    import anomalyvfm.model as model_module
    from anomalyvfm.errors import CheckpointError

    good = [str(write_image(tmp_path / "g" / f"{i}.png", seed=i)) for i in range(3)]
    shipped = model_module.shipped_checkpoint()
    monkeypatch.setattr(fewshot, "recalibrate", lambda *a, **k: pytest.fail("scored before refusing"))
    before = {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()}
    for model, out in [(str(shipped), None), (str(shipped.parent / "anomalyvfm-vits14-v6"), None),
                       ("anomalyvfm-vits14-v6", None), ("someone/checkpoint", None), ("x", str(shipped))]:
        argv = ["calibrate", model, "--good", *good] + (["--out", out] if out else [])
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "--out FOLDER" in err and len(err.splitlines()) == 1
    monkeypatch.setattr(fewshot, "finetune", lambda *a, **k: pytest.fail("fitted before refusing"))
    assert main(["finetune", "--good", *good, "--out", str(shipped)]) == 2
    assert "shipped checkpoints" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="never overwritten"):  # the Python API: save itself refuses
        model_module.AnomalyVFM.save_pretrained(object(), shipped / "nested")
    assert main(["card", str(shipped)]) == 2  # its card would have gone into the package beside the weights
    assert "shipped checkpoints" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()} == before


def test_a_warning_during_the_progress_bar_gets_a_line_of_its_own(tiny_checkpoint, tmp_path, goods, capsys,
                                                                   monkeypatch):
    """Warnings raised while images are read (here: 12-bit data in a 16-bit file) used to be glued to the end of the
    progress bar's line."""
    import anomalyvfm.preprocess as preprocess

    monkeypatch.setattr(preprocess, "_warned_depth", False)
    dark = tmp_path / "in" / "mono12.png"
    dark.parent.mkdir()
    Image.fromarray((np.random.default_rng(0).random((40, 60)) * 4000).astype(np.uint16)).save(dark)
    rc, err = _predict([*goods, str(dark), "--model", str(tiny_checkpoint), "--resolution", "56", "--out",
                        str(tmp_path / "out")], capsys)
    lines = err.replace("\r", "\n").splitlines()
    assert rc == 0 and [line for line in lines if "its values stay under 4096" in line] == [
        next(line for line in lines if line.startswith(f"warning: {dark}: its values stay under 4096"))]
