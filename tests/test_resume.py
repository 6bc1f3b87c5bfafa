"""``anomalyvfm predict --resume``: an interrupted run (or one to which images were added) is continued, not redone;
what it had scored is kept whole and never mixed with another model's or setting's results."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import anomalyvfm.outputs as outputs
from anomalyvfm.cli import main
from conftest import result_rows, write_image




def _jsonl(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture
def inputs(tmp_path) -> list[str]:
    return [str(write_image(tmp_path / "in" / f"{i}.png", seed=i)) for i in range(5)]


@pytest.fixture
def scored(monkeypatch) -> list[str]:
    """The names each later run scores (adds to its results)."""
    real_add, seen = outputs.ResultsWriter.add, []

    def add(self, p):
        seen.append(p.name)
        return real_add(self, p)

    monkeypatch.setattr(outputs.ResultsWriter, "add", add)
    return seen


def _interrupt_after(monkeypatch, n: int) -> None:
    real_add, seen = outputs.ResultsWriter.add, []

    def add_then_stop(self, p):
        if len(seen) == n:
            raise KeyboardInterrupt
        seen.append(p.name)
        return real_add(self, p)

    monkeypatch.setattr(outputs.ResultsWriter, "add", add_then_stop)


def test_resume_scores_only_what_an_interrupted_run_left_and_keeps_its_rows(tiny_checkpoint, tmp_path, inputs,
                                                                            capsys, monkeypatch, scored):
    out = tmp_path / "o"
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        assert main(["predict", *inputs, "--model", str(tiny_checkpoint), "--out", str(out),
                     "--batch-size", "2"]) == 130
    assert "--resume" in capsys.readouterr().err.splitlines()[-1]  # the interrupted line says how to go on
    before = _jsonl(out)
    del scored[:]
    assert main(["predict", *inputs, "--model", str(tiny_checkpoint), "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert scored == inputs[3:]  # only the two images the interrupted run had not finished
    assert "3 scored images kept, 2 to score" in err and "5 images:" in err
    after = _jsonl(out)
    assert after[:3] == before and [r["path"] for r in after] == inputs  # kept byte for byte, one run id
    assert len({r["run_id"] for r in after}) == 1 and len(result_rows(out)) == 5
    for kind in outputs.PNG_KINDS:
        assert sorted(p.name for p in (out / kind).iterdir()) == sorted(r["image"] for r in after)
    run = json.loads((out / "run.json").read_text())
    assert (run["status"], run["images"], run["carried_over"], run["resumed"]) == ("complete", 5, 3, 1)
    assert str(inputs[4]) in (out / "report.html").read_text() and str(inputs[0]) in (out / "report.html").read_text()
    assert main(["predict", *inputs, "--model", str(tiny_checkpoint), "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "5 scored images kept, 0 to score" in err[-2] and "img/s" not in err[-1]  # nothing scored: no speed
    assert "images_per_s" not in json.loads((out / "run.json").read_text()) and _jsonl(out) == after


def test_without_resume_a_rerun_still_replaces_the_previous_run(tiny_checkpoint, tmp_path, inputs, capsys, scored):
    out = tmp_path / "o"
    assert main(["predict", *inputs[:2], "--model", str(tiny_checkpoint), "--out", str(out)]) == 0
    assert main(["predict", *inputs[2:], "--model", str(tiny_checkpoint), "--out", str(out)]) == 0
    assert [r["path"] for r in result_rows(out)] == inputs[2:]
    assert main(["predict", *inputs, "--model", str(tiny_checkpoint), "--out", str(out), "--resume"]) == 0
    assert scored[-2:] == inputs[:2] and len(scored) == 2 + 3 + 2  # images added since are scored, the rest kept
    assert sorted(r["path"] for r in result_rows(out)) == sorted(inputs)


def test_resume_refuses_another_setting_and_leaves_the_results_as_they_were(tiny_checkpoint, tmp_path, inputs,
                                                                            capsys):
    out = tmp_path / "o"
    assert main(["predict", *inputs[:3], "--model", str(tiny_checkpoint), "--out", str(out)]) == 0
    capsys.readouterr()
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for extra in (["--threshold", "0.3"], ["--no-images"], ["--views", "flips"]):
        assert main(["predict", *inputs, "--model", str(tiny_checkpoint), "--out", str(out), "--resume",
                     *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after the tiny model's UNTRAINED warning
        assert err.startswith("error: ") and "cannot resume" in err and "without --resume" in err, err
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    assert main(["predict", *inputs, "--model", str(tiny_checkpoint), "--out", str(out), "--resume",
                 "--batch-mode", "mutual"]) == 2
    assert "no --resume" in capsys.readouterr().err


def test_resume_rescores_failed_cut_and_pictureless_rows_and_drops_orphan_pictures(tiny_checkpoint, tmp_path, inputs,
                                                                                   capsys, scored):
    out = tmp_path / "o"
    broken = tmp_path / "in" / "9.png"
    broken.write_bytes(b"not a png")
    assert main(["predict", *inputs, str(broken), "--model", str(tiny_checkpoint), "--out", str(out)]) == 1
    rows = _jsonl(out)
    assert rows[-1]["verdict"] == "error"
    # a run killed with SIGKILL: the last row cut short, and the PNGs of an image whose row was never written
    lines = (out / "results.jsonl").read_bytes().splitlines(keepends=True)
    (out / "results.jsonl").write_bytes(b"".join(lines[:3]) + lines[3][:20])
    for kind in outputs.PNG_KINDS:
        (out / kind / "orphan.png").write_bytes(b"x")
    (out / "overlays" / rows[1]["image"]).unlink()  # a picture deleted since
    write_image(broken, seed=9)  # the unreadable file was replaced
    del scored[:]
    assert main(["predict", *inputs, str(broken), "--model", str(tiny_checkpoint), "--out", str(out), "--resume"]) == 0
    assert sorted(scored) == sorted([inputs[1], *inputs[3:], str(broken)])
    after = _jsonl(out)
    assert sorted(r["path"] for r in after) == sorted([*inputs, str(broken)])
    assert all(r["verdict"] in ("normal", "anomalous") for r in after) and len(result_rows(out)) == 6
    for kind in outputs.PNG_KINDS:
        assert sorted(p.name for p in (out / kind).iterdir()) == sorted(r["image"] for r in after)


def test_resume_with_nothing_there_is_a_new_run(tiny_checkpoint, tmp_path, inputs, capsys):
    out = tmp_path / "o"
    assert main(["predict", *inputs[:2], "--model", str(tiny_checkpoint), "--out", str(out), "--resume"]) == 0
    assert "resuming" not in capsys.readouterr().err and len(result_rows(out)) == 2
    assert "carried_over" not in json.loads((out / "run.json").read_text())


def test_the_python_api_resumes_the_same_folder(tiny_checkpoint, tmp_path, inputs):
    from anomalyvfm import AnomalyVFM

    model = AnomalyVFM.from_pretrained(tiny_checkpoint)
    out = tmp_path / "o"
    first = model.predict(inputs[:2], out=out)
    rest = model.predict(inputs, out=out, resume=True)
    assert [p.name for p in rest] == inputs[2:]  # only what the folder lacked
    rows = _jsonl(out)
    assert [r["path"] for r in rows] == inputs and [r["score"] for r in rows[:2]] == [p.score for p in first]
    with pytest.raises(ValueError, match="out"):
        model.predict(inputs, resume=True)


def test_a_profile_calibrated_again_cannot_resume_the_run_of_its_former_calibration(tmp_path):
    """A profile's threshold is always 0.5 on its deviation scale: what moves is its calibration, which run.json
    records and a resume must share (same weights, another calibration, would mix two sets of verdicts)."""
    from types import SimpleNamespace

    from anomalyvfm.errors import OutputError

    def run(calibration: dict, resume: bool) -> None:
        metadata = {"weights_sha256": "w", "threshold": 0.5, "profile": True, "calibration": calibration}
        with outputs.ResultsWriter(tmp_path / "o", images=False, metadata=metadata, resume=resume) as writer:
            writer.add(SimpleNamespace(name="a.png", ok=True, error=None, score=0.7, is_anomalous=True, threshold=0.5,
                                       rule="memory", threshold_source="calibration", regions=[], image=None))

    first = {"threshold": 0.91, "scale": 0.02, "fpr": 0.01, "n_good": 64}
    run(first, resume=False)
    with pytest.raises(OutputError, match="cannot resume: its run has calibration"):
        run({**first, "threshold": 0.95}, resume=True)
    run(first, resume=True)  # the same calibration resumes
    assert json.loads((tmp_path / "o" / "run.json").read_text())["carried_over"] == 1
