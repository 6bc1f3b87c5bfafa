"""Result files: atomic writes, results.csv / results.jsonl, heatmap, overlay and thumbnail PNGs, run.json and the
report.html review page (``anomalyvfm.review``)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from .errors import OutputError

RESULT_FIELDS = ("path", "score", "verdict", "threshold", "rule", "threshold_source", "regions", "largest_region_pct",
                 "image", "run_id", "error")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file: mkstemp's 0600 is not what users expect


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it over ``path``: readers see all or nothing. A failed
    write (a full disk) leaves ``path`` as it was and raises an ``OSError`` that names ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and not e.filename:  # say which file could not be written
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, encoded.tobytes())


def verdict_of(p) -> str:
    return "error" if p.error else ("anomalous" if p.is_anomalous else "normal")


def result_row(p, heatmap_name: str | None = None, run_id: str | None = None) -> dict:
    """One ``Prediction`` as a results row: its score and the threshold it was judged by, the rule behind the score,
    where the threshold came from, its regions (strongest first; results.jsonl lists them, results.csv gets their
    count and the largest one's area in %), its PNGs' name and the run (run.json's ``run_id``) that produced it."""
    regions = [r.to_dict() for r in (p.regions or [])]
    threshold = getattr(p, "threshold", None)
    # scores and thresholds at full precision: a profile's scores crowd near 0 and 1, where six decimals would tie
    # images that rank apart and could show a flagged score equal to its threshold
    return {"path": p.name, "score": None if p.error else float(p.score), "verdict": verdict_of(p),
            "threshold": None if p.error or threshold is None else float(threshold),
            "rule": p.rule, "threshold_source": p.threshold_source, "regions": None if p.error else regions,
            "image": heatmap_name, "run_id": run_id, "error": p.error}


def _csv_row(row: dict) -> dict:
    regions = row.get("regions")
    flat = {**row, "regions": None if regions is None else len(regions),
            "largest_region_pct": max(r["area_pct"] for r in regions) if regions else None}
    return {k: ("" if flat.get(k) is None else flat[k]) for k in RESULT_FIELDS}


def _csv_line(row: dict, header: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_FIELDS, lineterminator="\n")
    if header:
        writer.writeheader()
    else:
        writer.writerow(_csv_row(row))
    return buffer.getvalue()


def write_results(out_dir: str | os.PathLike, rows: list[dict]) -> None:
    """results.csv and results.jsonl, each written atomically."""
    csv_text = _csv_line({}, header=True) + "".join(_csv_line(row) for row in rows)
    atomic_write_bytes(Path(out_dir) / "results.csv", csv_text.encode())
    atomic_write_bytes(Path(out_dir) / "results.jsonl", "".join(json.dumps(row) + "\n" for row in rows).encode())


def _append_whole(parts: list[tuple]) -> None:
    """Append each (unbuffered binary file, bytes) pair, all or none: on a failed write (a full disk) every file is
    cut back to where it was, so no row is ever left half-written; the ``OSError`` names the file."""
    starts = [f.tell() for f, _ in parts]
    try:
        for f, data in parts:
            view = memoryview(data)
            while view:
                try:
                    view = view[f.write(view):]
                except OSError as e:
                    raise OSError(e.errno, e.strerror, f.name) from e
    except OSError:
        for (f, _), start in zip(parts, starts):
            f.truncate(start)
            f.seek(start)
        raise


RUN_OUTPUTS = ("results.csv", "results.jsonl", "heatmaps", "overlays", "thumbnails", "run.json", "report.html")
PNG_KINDS = ("heatmaps", "overlays", "thumbnails")
LOCK = ".anomalyvfm.lock"
# run.json fields a resumed run must share with the run it continues: what decides a score, a verdict or a picture
RESUME_SETTINGS = ("anomalyvfm_version", "backbone", "weights_sha256", "profile", "image_score", "test_views",
                   "edge_pad", "ensemble_members", "threshold", "threshold_origin", "calibration", "pixel_threshold",
                   "resolution", "tile_size", "mode", "backend", "pngs")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(lock: Path) -> int:
    """The pid of another live run holding ``lock``, else 0 (no lock, our own, or a stale one whose run died)."""
    try:
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
    return pid if pid and pid != os.getpid() and _alive(pid) else 0


def check_folder(out: str | os.PathLike) -> None:
    """Raise ``OutputError`` if ``out`` cannot take a run: a file in the way, or another live run writing there.
    ``ResultsWriter.open`` checks this as it takes the folder; the command line also checks first, before the model
    loads."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another output folder")
    pid = _holder(out / LOCK)
    if pid:
        raise OutputError(f"{out}: another anomalyvfm run (pid {pid}) is writing there; wait for it or choose another "
                          f"output folder")


class ResultsWriter:
    """The results folder of a prediction run, the one writer behind ``AnomalyVFM.predict(out=...)`` and
    ``anomalyvfm predict``.

    ``open`` checks the folder before any inference (a file in the way, or another live run holding its lock, is an
    ``OutputError``), takes the lock and removes the previous run's outputs, so a folder never mixes two runs. Each
    result is then streamed as it arrives: a line appended to results.csv and results.jsonl (unbuffered, so a killed
    run keeps every row it finished) and a heatmap, overlay and thumbnail PNG (``images=False`` skips them) under a
    name no other input of the run has, recorded in the row's ``image`` field. A write that fails (a full disk) is an
    ``OutputError`` naming the file: that image leaves neither a partial row nor a PNG; finished rows stay whole.
    ``close`` writes report.html, marks the run in run.json complete (with its images/s), interrupted (Ctrl-C, a stop
    request) or failed (an error that ended it) and releases the lock.

    ``metadata`` (``anomalyvfm.runinfo.run_metadata``: model, weights sha256, threshold and its origin, resolution,
    mode, version, date, hardware) goes into run.json and the report's header; its ``run_id`` is in every row.

    ``resume=True`` continues the run in ``out`` instead (an interrupted one, or a finished one to which images were
    added): its scored rows and their PNGs are kept under its ``run_id``, rows that failed are dropped to be scored
    again, and ``scored(path)`` tells the caller which inputs to skip. The settings in ``RESUME_SETTINGS`` must be the
    same as that run's, and a batch-mode run (whose verdicts depend on the whole batch) cannot be resumed: either is an
    ``OutputError``. With nothing there, it is a new run."""

    def __init__(self, out: str | os.PathLike, images: bool = True, metadata: dict | None = None,
                 pixel_threshold: float = 0.5, resume: bool = False):
        self.out, self.images, self.resume = Path(out), images, resume
        self.metadata = dict(metadata or {})
        if "run_id" not in self.metadata:
            from .runinfo import new_run_id

            self.metadata["run_id"] = new_run_id()
        self.pixel_threshold = float(self.metadata.get("pixel_threshold", pixel_threshold))
        self._start = None
        self.rows: list[dict] = []
        self.failed = self.anomalous = 0
        self._stems: set[str] = set()
        self._files: list = []
        self._lock: Path | None = None
        self.carried = 0  # rows kept from the run this one resumes
        self._done: set[str] = set()

    def scored(self, path: str | os.PathLike) -> bool:
        """Whether the run being resumed scored ``path`` already (named as it was, or the same file from here)."""
        return str(path) in self._done or os.path.abspath(path) in self._done

    def _previous(self) -> tuple[dict, list[dict]] | None:
        """The run in ``out`` to resume: its run.json and the rows to keep (scored, every PNG present); None if none."""
        where = self.out / "run.json"
        try:
            run = json.loads(where.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise OutputError(f"{where}: cannot resume from it ({e}); rerun without --resume to replace it") from None
        now = {**self.metadata, "pngs": self.images}
        if str(run.get("mode", "")).startswith("batch") or str(now.get("mode", "")).startswith("batch"):
            raise OutputError(f"{self.out}: a batch-mode run cannot be resumed (its verdicts depend on the whole "
                              f"batch); rerun without --resume to score the batch again")
        for key in RESUME_SETTINGS:
            was = run.get(key, True if key == "pngs" else None)  # run.json before "pngs" was written: PNGs were
            if was != now.get(key):
                raise OutputError(f"{self.out}: cannot resume: its run has {key} {was!r} and this one "
                                  f"{now.get(key)!r}; rerun without --resume to replace it, or choose another --out")
        try:
            lines = (self.out / "results.jsonl").read_bytes().split(b"\n")
        except FileNotFoundError:
            lines = []
        rows = []
        for line in lines:  # a line cut short by a killed run is no row
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict) or row.get("verdict") not in ("normal", "anomalous"):
                continue  # failed images are scored again
            if self.images and not all((self.out / kind / str(row.get("image"))).is_file() for kind in PNG_KINDS):
                continue  # a row whose pictures are gone is scored again
            rows.append(row)
        return run, rows

    def _carry_over(self, run: dict, rows: list[dict]) -> None:
        """Keep ``rows`` (results files rewritten whole first, so a failure here loses nothing) and their PNGs."""
        self.metadata.update(run_id=run["run_id"], resumed=int(run.get("resumed", 0)) + 1)
        write_results(self.out, rows)
        keep = {row["image"] for row in rows if row.get("image")}
        for kind in PNG_KINDS:
            folder = self.out / kind
            for png in folder.iterdir() if folder.is_dir() else ():
                if png.name not in keep:  # drawn for an image whose row was never written, or is scored again
                    png.unlink()
        self.rows, self.carried = list(rows), len(rows)
        self.anomalous = sum(row["verdict"] == "anomalous" for row in rows)
        self._stems = {Path(name).stem.lower() for name in keep}
        self._done = {str(row["path"]) for row in rows} | {os.path.abspath(str(row["path"])) for row in rows}

    def open(self) -> "ResultsWriter":
        if self._lock is not None:
            return self
        check_folder(self.out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{self.out}: cannot create the output folder ({e.strerror or e})") from None
        lock = self.out / LOCK
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                check_folder(self.out)  # another live run: refused
                lock.unlink(missing_ok=True)  # a stale lock: its run died
                continue
            except OSError as e:
                raise OutputError(f"{self.out}: cannot write there ({e.strerror or e})") from None
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            break
        self._lock = lock
        try:
            previous = self._previous() if self.resume else None
            if previous is not None:
                self._carry_over(*previous)
        except BaseException:
            self._lock.unlink(missing_ok=True)
            self._lock = None
            raise
        for name in RUN_OUTPUTS:  # the previous run's outputs go: a folder holds one run
            path = self.out / name
            if previous is not None and name in ("results.csv", "results.jsonl", *PNG_KINDS):
                continue  # carried over
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        self._start = time.perf_counter()
        self._write_run("running")
        mode = "ab" if previous is not None else "wb"
        self._csv = open(self.out / "results.csv", mode, buffering=0)  # unbuffered: a row is on disk once added
        self._jsonl = open(self.out / "results.jsonl", mode, buffering=0)
        for f in (self._csv, self._jsonl):
            os.chmod(f.name, FILE_MODE)
        if previous is None:
            _append_whole([(self._csv, _csv_line({}, header=True).encode())])
        return self

    def __enter__(self) -> "ResultsWriter":
        return self.open()

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:  # Ctrl-C or a stop request interrupts; any other error ends the run as failed
            self.close("interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed")

    def _stem(self, name: str) -> str:
        """An output file stem not used yet in this run: the input's stem, else stem_2, stem_3, ..."""
        base = Path(name).stem or "image"
        stem, n = base, 1
        while stem.lower() in self._stems:  # case-insensitive: two names must not share a file on any filesystem
            n += 1
            stem = f"{base}_{n}"
        self._stems.add(stem.lower())
        return stem

    def _write_run(self, status: str) -> dict:
        """Write run.json (metadata, status, counts; time and images/s once finished) and return its content."""
        counts = {"images": len(self.rows), "failed": self.failed, "anomalous": self.anomalous}
        if self.carried:
            counts["carried_over"] = self.carried  # scored by the run this one resumed
        if self._start is not None and status != "running":
            seconds, scored = time.perf_counter() - self._start, len(self.rows) - self.carried - self.failed
            counts["seconds"] = round(seconds, 3)  # this session's: the carried rows took no time here
            if scored or not self.carried:  # a resume with nothing left to score has no speed
                counts["images_per_s"] = round(scored / max(seconds, 1e-9), 3)
        run = {**self.metadata, "pngs": self.images, "status": status, **counts}
        atomic_write_bytes(self.out / "run.json", json.dumps(run, indent=1).encode())
        return run

    def add(self, prediction):
        """Record one ``Prediction`` (its rows appended and flushed, its PNGs written); returns it."""
        self.open()
        p = prediction
        name = None
        pngs = []
        try:
            if p.ok and self.images and p.image is not None:
                from .visualize import heatmap, overlay, thumbnail

                name = f"{self._stem(p.name)}.png"
                pngs = [self.out / kind / name for kind in PNG_KINDS]
                write_png(pngs[0], heatmap(p.anomaly_map, self.pixel_threshold))
                write_png(pngs[1], overlay(
                    p.image, p.anomaly_map, p.mask, score=p.score, threshold=getattr(p, "threshold", None),
                    verdict=verdict_of(p), pixel_threshold=self.pixel_threshold, regions=p.regions))
                write_png(pngs[2], thumbnail(p.image))
            row = result_row(p, name, self.metadata["run_id"])
            _append_whole([(self._csv, _csv_line(row).encode()), (self._jsonl, (json.dumps(row) + "\n").encode())])
        except OSError as e:  # a full or vanished disk: stop, naming the file, with every finished row kept
            for png in pngs:  # no PNG without its row
                png.unlink(missing_ok=True)
            where = e.filename or self._csv.name
            raise OutputError(f"{where}: cannot write ({e.strerror or e}) while saving {p.name}; the run stops, its "
                              f"{len(self.rows)} finished results are kept") from None
        self.rows.append(row)
        self.anomalous += bool(p.ok and p.is_anomalous)
        self.failed += not p.ok
        return p

    def close(self, status: str = "complete") -> None:
        """Finish the run with run.json's ``status``: "complete", "interrupted" or "failed"."""
        if self._lock is None:
            return
        from .review import render

        try:
            for f in (self._csv, self._jsonl):
                with f:
                    os.fsync(f.fileno())
            run = self._write_run(status)
            atomic_write_bytes(self.out / "report.html", render(self.rows, run).encode("utf-8"))
        except OSError as e:
            if status == "complete":
                raise OutputError(f"{e.filename or self.out}: cannot write ({e.strerror or e}); the "
                                  f"{len(self.rows)} results are in {self.out / 'results.csv'}") from None
            # an error or Ctrl-C is ending the run already: that one is reported, not this one
        finally:
            self._lock.unlink(missing_ok=True)
            self._lock = None


def write_report(predictions, out: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write the results folder of ``predictions`` (``Prediction`` objects, e.g. from ``AnomalyVFM.predict(...,
    keep_images=True)``) with its report.html, through the writer ``anomalyvfm predict`` uses; returns the page."""
    with ResultsWriter(out, metadata=metadata) as writer:
        for p in predictions:
            writer.add(p)
    return Path(out) / "report.html"
