"""The review outputs: overlays, run metadata, report.html (in a real headless Chromium) and labels -> calibrate."""
import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from anomalyvfm.cli import main
from anomalyvfm.methods.base import Scored
from anomalyvfm.review import read_labels, render
from anomalyvfm.visualize import MAX_ALPHA, display_scale, overlay
from conftest import write_image


def test_overlay_colours_only_where_the_map_is_high_and_outlines_the_region():
    rgb = np.full((100, 100, 3), 128, np.uint8)
    amap = np.zeros((100, 100), np.float32)
    amap[40:60, 40:60] = 0.9
    mask = amap > 0.5
    out = overlay(rgb, amap, mask, score=0.8, threshold=0.6, verdict="anomalous", side=100)
    body = out[-100:, :100]  # under the banner, left of the colour bar
    assert (body[5:30, 5:30] == 128).all()  # low map: the part keeps its own colour
    assert np.abs(body[45:55, 45:55].astype(int) - 128).max() > 40  # high map: coloured
    assert (body[38:62, 38:62] == (255, 40, 40)).all(axis=2).any()  # the region's red outline
    assert out.shape[1] > 100 and tuple(out[5, 2]) == (190, 30, 30)  # colour bar beside, red verdict banner
    assert display_scale(np.array([0.0, 0.3, 0.6, 1.0]), 0.3).tolist() == [0.0, 0.5, pytest.approx(0.7143, abs=1e-3),
                                                                          1.0]
    assert MAX_ALPHA < 1


@pytest.mark.parametrize("shape, side, lines", [((100, 400), 512, 1), ((400, 100), 240, 4), ((600, 60), 240, 4)])
def test_the_banner_text_stays_inside_the_picture_however_narrow(shape, side, lines):
    """A narrow picture's banner wraps (each part whole) and shrinks its text instead of cutting it off at the
    right edge; a wide one keeps its single 30-px line."""
    import cv2

    h, w = shape
    out = overlay(np.full((h, w, 3), 128, np.uint8), np.zeros((h, w), np.float32), score=0.923, threshold=0.5977,
                  verdict="anomalous", side=side, label="bottom · scratch")
    band = out[:out.shape[0] - round(h * side / max(h, w))]
    ink = (band != (190, 30, 30)).any(axis=2)
    assert ink.any() and not ink[:, -6:].any() and not ink[-2:].any()  # ink only well inside the band
    assert cv2.connectedComponents(ink.any(axis=1).astype(np.uint8))[0] - 1 == lines  # lines of text
    assert (band.shape[0] == 30) == (lines == 1)


def test_a_grid_of_tall_images_keeps_its_whole_heading(tmp_path):
    """The benchmark grid's heading (title and legend) wraps inside the grid when tall tiles make it narrow."""
    from types import SimpleNamespace

    import cv2

    from anomalyvfm.report import write_grid

    samples, scored, images = [], {}, {}
    for i in range(4):
        path = tmp_path / f"{i}.png"
        samples.append(SimpleNamespace(path=path, label=i % 2, defect="crack" if i % 2 else "good", mask=None))
        scored[str(path)] = Scored(i / 4, np.zeros((300, 60), np.float32))
        images[str(path)] = np.full((300, 60, 3), 128, np.uint8)
    write_grid(tmp_path / "grid.png", samples, scored, images, "magnetic_tile/magnetic_tile - anomalyvfm k=0 seed=0")
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    head = grid[:np.flatnonzero((grid == (190, 30, 30)).all(axis=2).any(axis=1))[0] - 4]  # above the tiles
    ink = (head != 255).any(axis=2)
    assert ink.any() and not ink[:, -6:].any()  # the heading stops short of the right edge
    assert cv2.connectedComponents(ink.any(axis=1).astype(np.uint8))[0] - 1 >= 2  # on two lines or more


def test_predict_writes_run_metadata_every_row_points_to(tiny_checkpoint, tmp_path):
    for i in range(3):
        write_image(tmp_path / "in" / f"{i}.png", seed=i)
    assert main(["predict", str(tmp_path / "in"), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 0
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    for key in ("weights_sha256", "threshold", "threshold_origin", "resolution", "mode", "anomalyvfm_version",
                "date", "hardware", "images_per_s", "run_id", "model"):
        assert run[key] not in (None, ""), key
    rows = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert {r["run_id"] for r in rows} == {run["run_id"]} and all(r["threshold"] == run["threshold"] for r in rows)
    with open(tmp_path / "o" / "results.csv") as f:
        assert {r["run_id"] for r in csv.DictReader(f)} == {run["run_id"]}
    page = (tmp_path / "o" / "report.html").read_text()
    assert run["weights_sha256"] in page and page.count("<tr data-path=") == 3
    assert "http://" not in page and "https://" not in page  # offline: nothing fetched
    assert all((tmp_path / "o" / d / rows[0]["image"]).is_file() for d in ("overlays", "thumbnails", "heatmaps"))


def test_version_and_a_missing_cuda_device_are_one_line_answers(tiny_checkpoint, tmp_path, capsys):
    import torch

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("anomalyvfm ")
    if not torch.cuda.is_available():
        write_image(tmp_path / "a.png")
        with pytest.raises(SystemExit, match="no CUDA device"):
            main(["predict", str(tmp_path / "a.png"), "--model", str(tiny_checkpoint), "--device", "cuda",
                  "--out", str(tmp_path / "o")])


def test_labels_csv_feeds_calibration(tiny_checkpoint, tmp_path, capsys):
    good = [write_image(tmp_path / "g" / f"{i}.png", seed=i) for i in range(4)]
    bad = write_image(tmp_path / "b.png", seed=9)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"g/{p.name},OK\n" for p in good) + "b.png,NG\n")
    ok, ng = read_labels(labels)
    assert len(ok) == 4 and all(os.path.exists(p) for p in ok + ng)  # paths resolved beside the CSV
    assert main(["calibrate", str(tiny_checkpoint), "--labels", str(labels), "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert "4 images labelled OK, 1 labelled NG" in err and "from 4 good and 1 defective" in err
    state = json.loads((tmp_path / "p" / "state.json").read_text())
    assert state["calibration"]["n_good"] == 4
    labels.write_text("path,label\ng/0.png,maybe\n")
    assert main(["calibrate", str(tiny_checkpoint), "--labels", str(labels)]) == 2
    assert "labels.csv:2: label 'maybe' is not OK or NG" in capsys.readouterr().err


def test_labels_csv_saved_again_by_a_spreadsheet_still_reads(tmp_path):
    """Excel's 'CSV UTF-8' adds a byte-order mark and CRLF, and in many locales puts ';' between the columns: each
    was refused as 'expected a CSV with the columns path,label'. A file in another encoding or a row without a path
    is one line naming the file."""
    labels = tmp_path / "labels.csv"
    for text in ("\ufeffpath,label\r\na.png,OK\r\nb.png,NG\r\n", "Path;Label\na.png;ok\nb.png;NG\n",
                 "path\tlabel\na.png\tOK\nb.png\tng\n"):
        labels.write_text(text, encoding="utf-8", newline="")
        assert read_labels(labels) == (["a.png"], ["b.png"]), repr(text)
    labels.write_bytes("path,label\nä.png,OK\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"labels.csv: not UTF-8 text \(byte 11\)"):
        read_labels(labels)
    labels.write_text("path,label\na.png,OK\n,NG\n")
    with pytest.raises(ValueError, match="labels.csv:3: no image path"):
        read_labels(labels)


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium not found (CI=true: .ci/run installs it; the report must be tested in a browser)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return path


def test_report_in_a_real_browser_sorts_filters_and_exports_labels(tmp_path, monkeypatch):
    """Headless Chromium loads report.html from disk: one row per image, sorting by score, the verdict filter and
    the OK/NG labels downloaded as CSV, with each image's absolute path (the CSV works from any folder)."""
    playwright = pytest.importorskip("playwright.sync_api")
    monkeypatch.chdir(tmp_path)  # where the run was: its relative paths start here
    rows = [{"path": f"parts/p{i}.png", "score": s, "verdict": v, "threshold": 0.5, "regions": [], "image": None,
             "error": None} for i, (s, v) in enumerate([(0.2, "normal"), (0.9, "anomalous"), (0.6, "anomalous"),
                                                        (0.1, "normal")])]
    rows.append({"path": "parts/broken.png", "score": None, "verdict": "error", "regions": None, "image": None,
                 "error": "not an image"})
    page_path = tmp_path / "report.html"
    page_path.write_text(render(rows, {"run_id": "test-run", "model": "m", "weights_sha256": "abc123"}))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto(page_path.as_uri())
            body = page.locator("#results tbody tr")
            assert body.count() == 5
            assert page.locator("tr[data-path='parts/broken.png'] input").count() == 0  # nothing to label
            page.click("th[data-key=score]")  # highest score first
            order = [body.nth(i).get_attribute("data-path") for i in range(5)]
            assert order[:4] == ["parts/p1.png", "parts/p2.png", "parts/p0.png", "parts/p3.png"]
            page.click("th[data-key=score]")  # and back
            assert body.nth(0).get_attribute("data-path") == "parts/broken.png"
            page.select_option("#filter", "anomalous")
            visible = [r for r in range(5) if body.nth(r).is_visible()]
            assert len(visible) == 2 and page.inner_text("#shown") == "2 shown"
            page.select_option("#filter", "all")
            page.locator("svg.histogram g.bin").last.click()  # the highest bar lists its image alone
            shown = [body.nth(r).get_attribute("data-path") for r in range(5) if body.nth(r).is_visible()]
            assert shown == ["parts/p1.png"] and "click the bar again" in page.inner_text("#shown")
            page.locator("svg.histogram g.bin").last.click()  # and again: all
            assert page.inner_text("#shown") == "5 shown"
            page.check("tr[data-path='parts/p1.png'] input[value=NG]")
            page.check("tr[data-path='parts/p0.png'] input[value=OK]")
            page.check("tr[data-path='parts/p3.png'] input[value=OK]")
            assert page.inner_text("#labelled") == "3 labelled"
            with page.expect_download() as info:
                page.click("#download")
            download = tmp_path / "labels.csv"
            info.value.save_as(download)
            page.reload()  # labels survive a reload (kept per run in the browser, and in the URL)
            assert page.inner_text("#labelled") == "3 labelled"
            fresh = browser.new_context().new_page()  # no stored labels: the URL alone brings them back
            fresh.goto(page.url)
            assert fresh.inner_text("#labelled") == "3 labelled"
            assert fresh.is_checked("tr[data-path='parts/p1.png'] input[value=NG]")
            # a resumed run re-orders rows (its failed ones scored again at the end): the link's labels follow
            # each image, not its old position
            url = fresh.url
            moved = tmp_path / "moved.html"
            moved.write_text(render([rows[3], rows[0], rows[1], rows[2], rows[4]],
                                    {"run_id": "other-run", "model": "m"}))
            again = browser.new_context().new_page()
            again.goto(moved.as_uri() + url[url.index("#"):])
            assert again.inner_text("#labelled") == "3 labelled"
            assert again.is_checked("tr[data-path='parts/p1.png'] input[value=NG]")
            assert again.is_checked("tr[data-path='parts/p0.png'] input[value=OK]")
            assert again.is_checked("tr[data-path='parts/p3.png'] input[value=OK]")
            assert not again.is_checked("tr[data-path='parts/p2.png'] input[value=OK]")
            fresh.click("#clear")
            assert fresh.inner_text("#labelled") == "0 labelled" and "labels=" not in fresh.url
        finally:
            browser.close()
    parts = tmp_path.resolve() / "parts"
    assert download.read_text().splitlines() == ["path,label", f"{parts / 'p0.png'},OK", f"{parts / 'p1.png'},NG",
                                                 f"{parts / 'p3.png'},OK"]
    monkeypatch.chdir(parts.parent.parent)  # calibrate run from elsewhere still finds them
    assert read_labels(download) == ([str(parts / "p0.png"), str(parts / "p3.png")], [str(parts / "p1.png")])


def test_write_report_from_the_api(tiny_model, tmp_path):
    from anomalyvfm.outputs import write_report

    images = [np.asarray(Image.open(write_image(tmp_path / f"{i}.png", seed=i))) for i in range(2)]
    preds = tiny_model.predict(images, keep_images=True)
    page = write_report(preds, tmp_path / "o")  # also anomalyvfm.write_report
    assert page.is_file() and page.read_text().count("<tr data-path=") == 2
    assert json.loads((tmp_path / "o" / "run.json").read_text())["status"] == "complete"


def test_grid_banners_name_the_truth_and_the_outcome_at_the_threshold(tmp_path, monkeypatch, tiny_model):
    """A grid tile says whether the image is defective or good and, where the method has a threshold (the zero-shot
    model's stored one included), whether it was flagged, missed, a false alarm or passed."""
    from types import SimpleNamespace

    import anomalyvfm.visualize as visualize
    from anomalyvfm.methods.zeroshot import AnomalyVFMMethod
    from anomalyvfm.report import write_grid

    image = np.random.default_rng(0).integers(0, 256, (56, 56, 3), dtype=np.uint8)
    scored = AnomalyVFMMethod(tiny_model, resolution=56).score({"a": image, "b": image[::-1]})
    assert all(isinstance(r.verdict, bool) for r in scored.values())  # zero-shot rows get FPR@thr / recall@thr

    seen = []
    drawn = visualize.overlay
    monkeypatch.setattr(visualize, "overlay", lambda *a, **k: seen.append(k) or drawn(*a, **k))
    samples, scored, images = [], {}, {}
    for i, (label, verdict) in enumerate([(1, True), (1, False), (0, True), (0, False), (0, None)]):
        path = tmp_path / f"{i}.png"
        samples.append(SimpleNamespace(path=path, label=label, defect="crack" if label else "good", mask=None))
        scored[str(path)] = Scored(1 - i / 10, np.zeros((40, 40), np.float32), verdict=verdict)
        images[str(path)] = np.full((40, 40, 3), 128, np.uint8)
    write_grid(tmp_path / "grid.png", samples, scored, images, "t", n=5)
    assert [(k["heading"], k["label"]) for k in seen] == [
        ("DEFECTIVE", "top · crack · flagged"), ("DEFECTIVE", "top · crack · MISSED"),
        ("GOOD", "top · good · FALSE ALARM"), ("GOOD", "top · good · passed"), ("GOOD", "top · good")]


def test_tiny_scores_are_shown_apart_not_as_zero():
    """A profile's scores crowd near 0: the report and the overlay banner show them in e-notation, so two images
    that rank apart do not both read 0.0000."""
    from anomalyvfm.visualize import score_text

    rows = [{"path": f"{i}.png", "score": s, "verdict": "normal", "image": None, "regions": []}
            for i, s in enumerate([3.1e-06, 4.6e-05, 0.0093, 0.5977])]
    page = render(rows, {"status": "complete"})
    for shown in ("3.1e-06", "4.6e-05", "0.0093", "0.5977"):
        assert f'<td class="score">{shown}</td>' in page
    assert (score_text(0.0), score_text(0.25), score_text(0.0004)) == ("0.000", "0.250", "4.0e-04")


def test_overlay_numbers_the_regions_as_the_report_lists_them():
    """Strongest first: '1' on the small, hot blob's outline, '2' on the large, weaker one, nothing else changed;
    the report's region text uses the same numbers."""
    from anomalyvfm.regions import find_regions

    rgb = np.full((200, 200, 3), 128, np.uint8)
    amap = np.zeros((200, 200), np.float32)
    amap[20:120, 20:120], amap[150:160, 150:160] = 0.6, 0.95
    mask = amap > 0.5
    regions = find_regions(mask, amap)
    plain = overlay(rgb, amap, mask, verdict="anomalous", side=200)
    ranked = overlay(rgb, amap, mask, verdict="anomalous", side=200, regions=regions)
    changed = np.argwhere((plain != ranked).any(axis=2))
    near = lambda y, x: (np.abs(changed - [plain.shape[0] - 200 + y, x]).max(axis=1) <= 16)  # noqa: E731
    assert near(150, 150).any() and near(20, 20).any() and (near(150, 150) | near(20, 20)).all()
    row = {"path": "a.png", "score": 0.9, "verdict": "anomalous", "image": None,
           "regions": [r.to_dict() for r in regions]}
    assert "2 regions: #1 peak 0.95, 0.25% in x 150–160" in render([row], {"status": "complete"})


def test_report_links_to_pictures_whose_names_hold_url_characters():
    """'lot#3 cam?1%.png': unquoted, the browser read '#3 ...' as a fragment and the picture did not show."""
    row = {"path": "lot#3 cam?1%.jpg", "score": 0.4, "verdict": "normal", "image": "lot#3 cam?1%.png", "regions": []}
    page = render([row], {"status": "complete"})
    assert 'src="thumbnails/lot%233%20cam%3F1%25.png"' in page and 'href="overlays/lot%233%20cam%3F1%25.png"' in page
    assert "1 image: 0 anomalous" in page  # not "1 images"


def test_the_score_histogram_puts_each_scored_image_in_one_bar_on_its_side_of_the_threshold():
    """report.html's histogram: every scored row in exactly one bar (the bar its data-bin names), bars counting what
    they hold, none straddling the threshold (so a bar is all normal or all anomalous), errors in none."""
    import re

    from anomalyvfm.score_chart import score_histogram

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(1e-6, 0.3, 40), rng.uniform(0.3, 1 - 1e-9, 25), [1 - 1e-13]])
    rows = [{"path": f"{i}.png", "score": float(s), "verdict": "anomalous" if s > 0.3 else "normal", "threshold": 0.3}
            for i, s in enumerate(scores)] + [{"path": "x.png", "score": None, "verdict": "error"}]
    svg, bins = score_histogram(rows)
    assert bins[-1] is None and all(b is not None for b in bins[:-1])
    for b in set(bins[:-1]):
        verdicts = {r["verdict"] for r, rb in zip(rows, bins) if rb == b}
        assert len(verdicts) == 1, f"bar {b} holds both sides of the threshold"
        title = re.search(rf'data-bin="{b}"[^>]*><title>([^<]*)', svg).group(1)
        counted = re.search(r"(\d+) anomalous, (\d+) normal", title).groups()
        assert tuple(map(int, counted)) == (sum(r["verdict"] == "anomalous" for r, rb in zip(rows, bins) if rb == b),
                                            sum(r["verdict"] == "normal" for r, rb in zip(rows, bins) if rb == b))
    assert "threshold 0.3000" in svg
    at = [{"path": "t.png", "score": 0.3, "verdict": "normal", "threshold": 0.3}]  # not above: normal
    _, with_at = score_histogram(rows[:-1] + at)
    assert {b for r, b in zip(rows, with_at) if r["verdict"] == "normal"} >= {with_at[-1]}
    assert score_histogram(rows[:1])[0] == ""  # one score makes no histogram
    assert 'class="histogram"' in render(rows, {"run_id": "r"})
