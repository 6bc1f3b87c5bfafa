"""Argument types and input checks of the ``anomalyvfm`` command line: each turns a bad value into one line;
``predict``'s model, loaded from its arguments; what ``calibrate`` reads and where it writes; and what each command
says when it is stopped."""
from __future__ import annotations

import argparse
import errno
import math
import sys
import warnings
from pathlib import Path

from .methods import METHODS


def apply_overrides(model, args: argparse.Namespace) -> bool:
    """Set ``--views`` and ``--tile-size`` on the model's config for this run, warning when its stored threshold was
    set without them (their scores differ; batch mode sets its own); False, after an error line, where the backend
    cannot take them."""
    if args.views is not None and args.backend == "onnx":
        print("error: --views is traced into an ONNX export; export again with the views you want", file=sys.stderr)
        return False
    for flag, key, value in (("--views", "test_views", args.views), ("--tile-size", "tile_size", args.tile_size)):
        if value is None:
            continue
        if value != getattr(model.config, key) and args.threshold is None and not args.batch_mode:
            print(f"warning: the model's threshold ({model.config.threshold:g}) was set with {flag} "
                  f"{getattr(model.config, key)}, not {value}, and scores change with it; calibrate with it "
                  f"(anomalyvfm calibrate MODEL {flag} {value} --good GOOD_DIR --out PROFILE), or pass --threshold",
                  file=sys.stderr)
        setattr(model.config, key, value)
    return True


def predict_model(args: argparse.Namespace):
    """The model ``predict`` runs (an ONNX export with ``--backend onnx``, else a checkpoint, profile or the
    default) with ``--views`` and ``--tile-size`` applied, after warning about an untrained model or a threshold
    not chosen on the user's product; None, after an error line, where they cannot be applied."""
    from .model import shipped_checkpoint

    if args.backend == "onnx":
        from .export import OnnxModel

        if not args.model:
            print("error: --backend onnx needs --model FILE.onnx (made by `anomalyvfm export`)", file=sys.stderr)
            return None
        model = OnnxModel(args.model)
        if args.resolution is None and args.mode is None:
            args.resolution = model.resolution
    else:
        model = load_quietly(args.model)  # the one warning that matters is printed below
        model.to(device(args.device))
    if not apply_overrides(model, args):
        return None
    if not model.config.trained:
        print("warning: this model's decoder and head are UNTRAINED (config.trained is false), so its scores and "
              "heatmaps are not meaningful", file=sys.stderr)
    calibrated = model.config.threshold_origin == "calibrated" or (model.profile is not None and
                                                                  model.profile.calibration is not None)
    if not (calibrated or args.batch_mode or args.threshold is not None):
        print(f"warning: the verdicts are UNCALIBRATED for your product: the threshold "
              f"({model.config.threshold:g}, {model.config.threshold_origin}) was not chosen on it; on real test sets "
              f"the default checkpoint's synthetic threshold flagged 0.3-53% of good parts (BENCHMARKS.md, 'Default "
              f"threshold'). Calibrate "
              f"it on good images of the line: anomalyvfm calibrate {args.model or shipped_checkpoint()} --good "
              f"GOOD_DIR --out PROFILE (then --model PROFILE), or score a whole batch with --batch-mode mutual",
              file=sys.stderr)
    return model


def device(name: str):
    from .runinfo import resolve_device

    try:
        return resolve_device(name)
    except RuntimeError as e:
        raise SystemExit(f"error: {e}") from None


def positive(text: str, least: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def count(text: str) -> int:
    """A whole number, 0 allowed."""
    return positive(text, least=0)


def resolution(text: str) -> int:
    """An input side in pixels, as ``anomalyvfm.config.resolution_for`` accepts it (a multiple of 14, at least 28)."""
    from .config import resolution_for

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    try:
        return resolution_for(resolution=value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def finite(text: str) -> float:
    """A finite number (a NaN threshold would make every verdict 'normal')."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def score_threshold(text: str) -> float:
    """An image-score threshold: scores lie in [0, 1], so one outside it (a percentage such as 50) would flag every
    image or none."""
    value = finite(text)
    if not 0 <= value <= 1:
        hint = f" (a percentage? use {value / 100:g})" if 1 < value <= 100 else ""
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, as scores are, got {value:g}{hint}")
    return value


def rate(text: str) -> float:
    """A rate strictly between 0 and 1."""
    value = finite(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value:g}")
    return value


def onnx_file(text: str) -> str:
    """``export --onnx``: a file to write, never an existing folder (checked before the model loads)."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name, e.g. {Path(text) / 'model.onnx'}")
    return text


def tile_size(text: str) -> int:
    """A tile side in pixels: 0 (no tiling) or at least 28."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if value != 0 and value < 28:
        raise argparse.ArgumentTypeError(f"must be 0 (no tiling) or at least 28, got {value}")
    return value


def methods(text: str) -> tuple[str, ...]:
    names = tuple(m for m in text.split(",") if m)
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown) or text!r}; available: "
                                         f"{', '.join(METHODS)}")
    return names


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def readable(paths: list[str], what: str) -> list[str]:
    """The paths that read as images; each other one is named with its reason on one line and skipped."""
    from .preprocess import ImageReadError, read_image

    ok = []
    for path in paths:
        try:
            read_image(path)
            ok.append(path)
        except ImageReadError as e:
            print(f"warning: skipped {what} image {e.path}: {e.reason}", file=sys.stderr)
    return ok


def calibration_target(model: str, out: str | None) -> Path | None:
    """Where ``calibrate`` writes: ``out``, else ``model`` in place when that is a local folder. A hub id or a
    shipped checkpoint's name has no place to write back to, and a checkpoint shipped inside the package is never
    overwritten (that would change the default of every later run): None, after a one-line error."""
    target = Path(out if out is not None else model)
    if out is None and not target.is_dir():
        print(f"error: {model}: no local folder to calibrate in place (for a hub id or a shipped checkpoint's name, "
              f"give --out FOLDER for the calibrated copy)", file=sys.stderr)
        return None
    return writable(target, "give --out FOLDER for the calibrated copy")


def load_quietly(spec: str | None):
    """``load_default(spec)`` (None: the shipped default) with the libraries' loading chatter silenced."""
    from .model import load_default

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_default(spec)


def writable(target: Path, advice: str) -> Path | None:
    """``target``, a folder to write into, unless a file is in the way or it is a checkpoint shipped inside the
    package (``locations.shipped_folder``): checked before any work, so the refusal comes first, in one line."""
    from .locations import shipped_folder

    if target.exists() and not target.is_dir():
        print(f"error: {target}: exists and is not a folder; {advice}", file=sys.stderr)
        return None
    if shipped_folder(target):
        print(f"error: {target} is inside the package's shipped checkpoints; writing there would change the default "
              f"for every run: {advice}", file=sys.stderr)
        return None
    return target


def calibration_inputs(args: argparse.Namespace) -> tuple[list[str], list[str] | None] | None:
    """``calibrate``'s readable good and defective images from --good, --defective and --labels (None, after a
    one-line error, when fewer than 2 good images can be read)."""
    from .predict import collect_inputs

    if not (args.good or args.labels):
        print("error: calibrate needs --good images or --labels labels.csv (exported from report.html)",
              file=sys.stderr)
        return None
    good = readable(collect_inputs(args.good), "good") if args.good else []
    bad = readable(collect_inputs(args.defective), "defective") if args.defective else []
    if args.labels:
        from .review import read_labels

        try:
            ok, ng = read_labels(args.labels)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return None
        good += readable(ok, "good (labelled OK)")
        bad += readable(ng, "defective (labelled NG)")
        print(f"{args.labels}: {len(ok)} images labelled OK, {len(ng)} labelled NG", file=sys.stderr)
    good = _unfitted(good, args.model)
    if len(good) < 2:
        print(f"error: calibration needs at least 2 readable good images, found {len(good)}", file=sys.stderr)
        return None
    return good, bad or None


def _unfitted(good: list[str], model: str) -> list[str]:
    """``good`` without the images that the profile ``model`` was fitted on (after a warning): it scores them lower
    than a new good part, so they would set the threshold too low."""
    from .checkpoint import fitted_images
    from .hashing import sha256_if_file

    own = fitted_images(model)
    kept = [path for path in good if not own or sha256_if_file(path) not in own]
    if len(kept) < len(good):
        print(f"warning: left out {len(good) - len(kept)} of the {len(good)} good images: {model} was fitted on them "
              f"and scores them lower than it would a new good part, so they would set the threshold too low",
              file=sys.stderr)
    return kept


FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # write failures shown as one line, not a traceback
INTERRUPTED = {  # what Ctrl-C or a stop request (SIGTERM) leaves behind, per command
    "predict": "every finished image is kept in --out (its rows, PNGs and report.html; run.json says interrupted); "
               "the same command with --resume scores the rest",
    "benchmark": "finished runs are kept in --out; the same command resumes from there",
    "finetune": "no profile was written",
    "calibrate": "the model was not changed",
    "export": "no ONNX file was written",
    "synth": "no dataset was written (one already in --out is kept)",
    "push": "the hub takes a commit whole or not at all; push again",
    "card": "no card was written",
}


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """How the command shows a library warning: "warning: ..." on one line, not Python's file and source line."""
    return f"warning: {message}\n"


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Where the command shows it: on a line of its own above a running progress bar (tqdm.write), not glued to
    the bar's line."""
    from tqdm import tqdm

    text = warnings.formatwarning(message, category, filename, lineno, line)
    tqdm.write(text.rstrip("\n"), file=file or sys.stderr)


def interrupt(signum, frame) -> None:
    """SIGTERM's handler: raise KeyboardInterrupt, so every open writer closes what was finished, as after Ctrl-C."""
    raise KeyboardInterrupt
