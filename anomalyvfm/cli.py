"""The ``anomalyvfm`` command: one sub-command per verb, each a thin call into the library."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Sequence

from .config import MODES, QUANTIZATIONS
from .cliargs import (FULL_DISK, INTERRUPTED, calibration_inputs, calibration_target, count, device, interrupt, ints,
                      load_quietly, methods, one_line_warning, onnx_file, positive, predict_model, rate, readable,
                      resolution, score_threshold, show_warning, tile_size, writable)
from .methods import METHODS
from .runinfo import DEVICES
from .tta import TEST_VIEWS


def _predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .outputs import ResultsWriter, check_folder
    from .predict import collect_inputs, iter_predict

    out = Path(args.out)
    paths = collect_inputs(args.paths, exclude=out)
    if not paths:
        print(f"error: no images found in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    check_folder(out)  # a bad --out (an OutputError) is said before the model loads and warns
    model = predict_model(args)
    if model is None:
        return 2
    if args.batch_mode == "mutual" and (args.backend == "onnx" or args.threshold is not None or args.resume):
        print("error: --batch-mode mutual runs the PyTorch model on the batch as a whole and sets its own threshold "
              "from it (no --backend onnx, no --threshold, no --resume)", file=sys.stderr)
        return 2
    from .config import resolution_for
    from .runinfo import run_metadata

    metadata = run_metadata(model, model_id=args.model, resolution=resolution_for(args.mode, args.resolution,
                                                                                  model.config.mode),
                            mode=args.mode, batch_mode=args.batch_mode, backend=args.backend,
                            device=getattr(model, "device", None), threshold=args.threshold)
    # opened before any inference: a bad --out or a concurrent run into it (an OutputError) must not cost the run
    writer = ResultsWriter(out, images=not args.no_images, metadata=metadata, resume=args.resume).open()
    if writer.carried:
        paths = [p for p in paths if not writer.scored(p)]
        print(f"resuming {out}: {writer.carried} scored image{'s' * (writer.carried != 1)} kept, {len(paths)} to "
              f"score", file=sys.stderr)
    start = time.perf_counter()
    with writer:
        if args.batch_mode == "mutual":
            from .batch_predict import predict_batch

            results, report = predict_batch(model, paths, batch_size=args.batch_size, mode=args.mode,
                                            resolution=args.resolution, keep_images=not args.no_images,
                                            progress=True)
            print(f"batch of {report.n_images}: mutual weight {report.mutual_weight:.2f} (median mutual distance "
                  f"{report.level:.3f}); good parts estimated by {report.population} statistics; threshold at "
                  f"robust z {report.threshold_z:.2f}, target FPR {100 * report.fpr_target:.1f}%, "
                  f"{100 * report.flagged:.1f}% flagged", file=sys.stderr)
            for message in report.warnings:
                print(f"warning: {message}", file=sys.stderr)
        else:
            results = iter_predict(model, paths, batch_size=args.batch_size, mode=args.mode,
                                   resolution=args.resolution, threshold=args.threshold,
                                   keep_images=not args.no_images)
        for result in tqdm(results, total=len(paths), desc="predict", unit="img", file=sys.stderr,
                           disable=args.batch_mode is not None or not paths):  # batch mode shows its own
            writer.add(result)
            if not result.ok:
                tqdm.write(f"error: {result.name}: {result.error}", file=sys.stderr)
    total, done = len(writer.rows), len(paths) - writer.failed
    speed = f"{done / max(time.perf_counter() - start, 1e-9):.1f} img/s; " if paths else ""  # none if none scored
    normal = total - writer.failed - writer.anomalous
    print(f"{total} image{'s' * (total != 1)}: {writer.anomalous} anomalous, {normal} normal, {writer.failed} failed; "
          f"{speed}results in {out / 'results.csv'}; review them in {out / 'report.html'}", file=sys.stderr)
    return 0 if writer.failed == 0 else 1


def _benchmark(args: argparse.Namespace) -> int:
    import logging
    import time

    from .benchmark import BenchmarkConfig, config_dict, run_benchmark
    from .report import write_reports

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    for chatty in ("huggingface_hub", "open_clip"):  # offline, each weights lookup logged ~10 retries: the skip
        logging.getLogger(chatty).setLevel(logging.CRITICAL)  # warning says it once
    cfg = BenchmarkConfig(data=args.data, out=args.out, methods=args.methods,
                          datasets=tuple(args.datasets or ()), shots=ints(args.shots), seeds=ints(args.seeds),
                          mode=args.mode, resolution=args.resolution, pixel_max_side=args.pixel_max_side,
                          model=args.model, clip_model=args.clip_model, clip_pretrained=args.clip_pretrained,
                          device=args.device)
    device(args.device)  # a missing CUDA device fails here, before any category runs
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        parts = run_benchmark(cfg)
    wall = time.perf_counter() - start
    write_reports(parts, Path(cfg.out), config_dict(cfg), cfg.warnings, wall)
    print((Path(cfg.out) / "summary.md").read_text())
    print(f"{len(parts)} runs, {len(cfg.warnings)} warnings, {wall / 60:.1f} min this session; "
          f"results in {cfg.out}/", file=sys.stderr)
    if not parts:  # every method or category skipped: an empty table is not a result
        print("error: nothing was measured (the warnings above say what was skipped and why)", file=sys.stderr)
    return 0 if parts else 1


def _synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .outputs import write_png
    from .synth import SynthConfig, contact_sheet, generate, save_whole, to_dataset

    try:
        cfg = SynthConfig(size=args.size)
    except ValueError as e:
        print(f"error: synth: {e}", file=sys.stderr)
        return 2
    out = writable(Path(args.out), "choose another --out folder")
    if out is None:
        return 2
    preview = list(tqdm(generate(min(args.n, 24), args.seed, cfg), total=min(args.n, 24), desc="contact sheet"))
    save_whole(to_dataset(args.n, args.seed, cfg), out / "dataset")  # whole or not at all
    write_png(out / "contact_sheet.png", contact_sheet(preview))
    print(f"{args.n} pairs (seed {args.seed}, {args.size} px) in {out / 'dataset'} "
          f"(datasets.load_from_disk); preview {out / 'contact_sheet.png'}", file=sys.stderr)
    return 0


def _finetune(args: argparse.Namespace) -> int:
    import numpy as np

    from .fewshot import FinetuneConfig, finetune, save_profile
    from .model import shipped_checkpoint
    from .predict import collect_inputs

    if writable(Path(args.out), "choose another --out folder") is None:
        return 2
    good = readable(collect_inputs(args.good), "good")
    if not good:
        print(f"error: no readable images found in {' '.join(args.good)}", file=sys.stderr)
        return 2
    if args.shots:
        good = [good[i] for i in sorted(np.random.default_rng(args.seed).permutation(len(good))[:args.shots])]
    base = load_quietly(args.base)
    base.to(device(args.device))
    given = {"steps": args.steps, "mode": args.mode, "resolution": args.resolution}
    cfg = FinetuneConfig(**{k: v for k, v in given.items() if v is not None}, seed=args.seed, fpr=args.fpr,
                         memory=not args.no_memory, golden=args.golden)
    defective = []
    if args.defective:
        from .data.samples import find_mask

        for path in readable(collect_inputs(args.defective), "defective"):
            mask = find_mask(Path(args.masks), Path(path).stem) if args.masks else None
            defective.append((path, str(mask) if mask else None))
    profile, report = finetune(base, good, cfg, defective=defective)
    out = save_profile(profile, args.out, base=args.base or str(shipped_checkpoint()), good=good, config=cfg,
                       report=report)
    print(f"profile {out}: {len(good)} good images, {report.steps} steps (best {report.best_step}), fusion weight "
          f"{report.fusion_weight:g}, threshold at raw score {report.calibration['threshold']:.4f} "
          f"(target FPR {cfg.fpr:g}), {report.seconds:.0f} s", file=sys.stderr)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from .fewshot import recalibrate

    target = calibration_target(args.model, args.out)
    inputs = calibration_inputs(args) if target is not None else None
    if inputs is None:
        return 2
    model = load_quietly(args.model)
    if args.views is not None:  # the threshold is set on, and saved with, these views
        model.config.test_views = args.views
    if args.tile_size is not None:  # likewise this tiling
        model.config.tile_size = args.tile_size
    cal = recalibrate(model, inputs[0], args.fpr, inputs[1])
    out = model.save_pretrained(target)
    print(f"{out}: threshold at raw score {cal.threshold:.4f} from {cal.n_good} good"
          f"{f' and {cal.n_defective} defective' if cal.n_defective else ''} images (target FPR {cal.fpr:g})",
          file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    model = load_quietly(args.model)
    try:
        path = export_onnx(model, args.onnx, mode=args.mode, resolution=args.resolution, quantize=args.quantize)
    except OSError as e:  # an unwritable or missing place: one line (the export writes beside it, then renames)
        print(f"error: export to {args.onnx} failed: {e}", file=sys.stderr)
        return 2
    print(f"{path}: ONNX{f' ({args.quantize})' if args.quantize else ''}, {path.stat().st_size / 2**20:.1f} MiB",
          file=sys.stderr)
    return 0


def _push(args: argparse.Namespace) -> int:
    from .hub import push_folder

    try:
        url = push_folder(args.folder, args.repo, private=args.private, revision=args.revision)
    except (OSError, ValueError) as e:  # offline, no token, no such folder: one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = " (no network: push where the hub is reachable)" if "connect" in first.lower() or \
            "offline" in first.lower() else ""
        print(f"error: push {args.folder} to {args.repo} failed: {first}{hint}", file=sys.stderr)
        return 2
    print(f"pushed {args.folder} to {args.repo}: {url}", file=sys.stderr)
    return 0


def _card(args: argparse.Namespace) -> int:
    from huggingface_hub import ModelCard

    from .cards import build_card
    from .outputs import atomic_write_bytes

    out = Path(args.out) if args.out else Path(args.checkpoint) / "README.md"
    if writable(out.parent, "give --out FILE for the card (the shipped default's is model_cards/)") is None:
        return 2
    try:
        sections = {k: Path(v).read_text() if v else "" for k, v in
                    (("summary", args.summary), ("training", args.training), ("evaluation", args.evaluation),
                     ("limitations", args.limitations))}
        card = build_card(args.checkpoint, args.results, repo_or_path=args.repo, **sections)
    except (OSError, ValueError) as e:  # a missing or unreadable folder, section or results file: one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    ModelCard(str(card))  # parses back through huggingface_hub (YAML front matter, model-index)
    atomic_write_bytes(out, str(card).encode())
    print(f"model card: {out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="anomalyvfm", description="Zero/few-shot visual anomaly detection.")
    parser.add_argument("--version", action="version", version=f"anomalyvfm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="score images: results.csv/.jsonl, heatmap and overlay PNGs")
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--model", help="checkpoint folder or hub id (default: the shipped checkpoint)")
    p.add_argument("--mode", choices=tuple(MODES), help="fast (224 px) or accurate (448 px); default: the model's")
    p.add_argument("--resolution", type=resolution, help="explicit input side in pixels (a multiple of 14)")
    p.add_argument("--threshold", type=score_threshold, help="image score above which an image is anomalous")
    p.add_argument("--views", choices=tuple(TEST_VIEWS),
                   help="test-time views averaged per image (single: 1 pass, mirror: 2, flips, turns, "
                        "diagonals: 4, d4: 8); default: the model's")
    p.add_argument("--tile-size", type=tile_size,
                   help="cut images larger than this many pixels into overlapping tiles of this side, each seen at "
                        "the input resolution (for defects a few pixels wide); 0: whole images; default: the model's")
    p.add_argument("--batch-size", type=positive, default=8)
    p.add_argument("--out", default="anomalyvfm-out", help="output folder (its inputs are never scored; a rerun "
                   "replaces the previous run's results there, unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (interrupted, or with images "
                   "added since): images it scored are kept and skipped; same model and settings only")
    p.add_argument("--no-images", action="store_true", help="write only results.csv / results.jsonl")
    p.add_argument("--batch-mode", choices=("mutual",),
                   help="mutual: score the images as one batch (mutual scoring of the batch fused with the model; "
                        "verdicts from the batch's own scores, assuming most parts are good)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where the model runs (auto: CUDA if any)")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="onnx: run an `anomalyvfm export` file (--model FILE.onnx) with onnxruntime")
    p.set_defaults(func=_predict)

    b = sub.add_parser("benchmark", help="cross-dataset benchmark: per-category metrics, reports and PNGs")
    b.add_argument("--data", required=True, help="root folder holding datasets (scanned for known layouts)")
    b.add_argument("--datasets", nargs="*", help="dataset names or dataset/category keys (default: all found)")
    b.add_argument("--methods", default="anomalyvfm,knn", type=methods,
                   help="comma-separated, of: " + "; ".join(f"{m.name} ({m.help})" for m in METHODS.values()))
    b.add_argument("--shots", default="1,4", help="comma-separated k for few-shot methods")
    b.add_argument("--seeds", default="0,1,2", help="comma-separated seeds for drawing the k references")
    b.add_argument("--mode", choices=tuple(MODES), help="fast (224) or accurate (448); default: each method's")
    b.add_argument("--resolution", type=resolution, help="explicit input side (multiple of 14)")
    b.add_argument("--pixel-max-side", type=int, help="compute pixel metrics at this reduced size (faster)")
    b.add_argument("--model", help="checkpoint for the anomalyvfm method")
    b.add_argument("--clip-model", help="open_clip model for winclip (default ViT-B-16-plus-240)")
    b.add_argument("--clip-pretrained", help="open_clip pretrained tag or checkpoint path (default laion400m_e31)")
    b.add_argument("--out", default="results", help="output folder (an interrupted run resumes from it)")
    b.add_argument("--device", choices=DEVICES, default="auto", help="where the AnomalyVFM methods and kNN run")
    b.set_defaults(func=_benchmark)

    s = sub.add_parser("synth", help="generate a synthetic anomaly dataset (Hugging Face datasets on disk)")
    s.add_argument("--n", type=positive, required=True, help="number of good/defective pairs")
    s.add_argument("--out", required=True, help="output folder: dataset/ and contact_sheet.png")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=224, help="image side in pixels")
    s.set_defaults(func=_synth)

    f = sub.add_parser("finetune", help="adapt to one product from a few good images: a profile folder")
    f.add_argument("--good", nargs="+", required=True, help="good images: files, folders or glob patterns")
    f.add_argument("--shots", type=positive, help="use k of them, drawn with --seed (default: all)")
    f.add_argument("--base", help="base checkpoint folder or hub id (default: the shipped checkpoint)")
    f.add_argument("--out", required=True, help="profile folder to write")
    f.add_argument("--mode", choices=tuple(MODES))
    f.add_argument("--resolution", type=resolution)
    f.add_argument("--steps", type=count, help="most fine-tuning steps (default: FinetuneConfig.steps)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device", choices=DEVICES, default="auto", help="where fine-tuning runs (auto: CUDA if any)")
    f.add_argument("--fpr", type=rate, default=0.01, help="target false-positive rate of the threshold")
    f.add_argument("--no-memory", action="store_true", help="no kNN memory of the good images")
    f.add_argument("--golden", action="store_true",
                   help="fixed-position parts: align every image to the first good image and compare position-wise")
    f.add_argument("--defective", nargs="+", help="optional real defective images (mixed supervision)")
    f.add_argument("--masks", help="folder with their masks (<stem>_mask.png or <stem>.png); without: image labels")
    f.set_defaults(func=_finetune)

    k = sub.add_parser("calibrate", help="choose a model's or profile's threshold from good (and defective) images")
    k.add_argument("model", help="checkpoint or profile folder")
    k.add_argument("--good", nargs="+", help="good images it has not been fitted on")
    k.add_argument("--labels", help="labels.csv downloaded from a run's report.html: OK images recalibrate the "
                                    "threshold, NG images join as defective examples")
    k.add_argument("--defective", nargs="+", help="optional defective images")
    k.add_argument("--fpr", type=rate, default=0.01)
    k.add_argument("--views", choices=tuple(TEST_VIEWS),
                   help="test-time views to calibrate (and save) the model with; default: the model's")
    k.add_argument("--tile-size", type=tile_size,
                   help="tile size to calibrate (and save) the model with (see predict); default: the model's")
    k.add_argument("--out", help="write the calibrated model here (default: in place)")
    k.set_defaults(func=_calibrate)

    e = sub.add_parser("export", help="export a checkpoint or profile to ONNX (LoRA merged, batch dynamic)")
    e.add_argument("model", nargs="?", help="checkpoint/profile folder or hub id (default: the shipped checkpoint)")
    e.add_argument("--onnx", required=True, type=onnx_file, help="output .onnx file")
    e.add_argument("--mode", choices=tuple(MODES), help="input size of the graph (default: the model's mode)")
    e.add_argument("--resolution", type=resolution)
    e.add_argument("--quantize", choices=QUANTIZATIONS,
                   help="int8: dynamic quantization of the MatMul weights (faster on CPU; not within 1e-3 of PyTorch)")
    e.set_defaults(func=_export)

    u = sub.add_parser("push", help="upload a checkpoint or profile folder to the Hugging Face Hub")
    u.add_argument("folder")
    u.add_argument("--repo", required=True, help="user/name")
    u.add_argument("--private", action="store_true")
    u.add_argument("--revision", help="branch to push to")
    u.set_defaults(func=_push)

    c = sub.add_parser("card", help="model card (README.md) for a checkpoint from the benchmark's results.json")
    c.add_argument("checkpoint", help="checkpoint folder written by save_pretrained")
    c.add_argument("--results", help="results.json of an `anomalyvfm benchmark` run of this checkpoint")
    c.add_argument("--repo", help="hub repo id or path shown in the usage example (default: the folder)")
    for name in ("summary", "training", "evaluation", "limitations"):
        c.add_argument(f"--{name}", help=f"Markdown file with the card's {name} section")
    c.add_argument("--out", help="output file (default: CHECKPOINT/README.md)")
    c.set_defaults(func=_card)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import (BackboneMismatchError, BackboneNotFoundError, BatchError, CheckpointError, DataNotFoundError,
                         OutputError)

    args = build_parser().parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()  # only there can a handler be set
    previous = signal.signal(signal.SIGTERM, interrupt) if in_main else None  # a stop request ends it as Ctrl-C
    formatter, warnings.formatwarning = warnings.formatwarning, one_line_warning
    shower, warnings.showwarning = warnings.showwarning, show_warning
    try:
        return args.func(args)
    except (CheckpointError, BackboneNotFoundError, BackboneMismatchError, BatchError, DataNotFoundError,
            OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in FULL_DISK:
            raise
        print(f"error: {e.filename or 'output'}: cannot write ({e.strerror}); what was finished is kept",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {INTERRUPTED[args.command]}", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning, warnings.showwarning = formatter, shower
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
