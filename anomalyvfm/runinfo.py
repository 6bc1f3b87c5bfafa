"""What produced a run: the metadata written to run.json and shown in report.html's header, and the device choice."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import uuid

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto"):
    """``auto`` = CUDA when available, else CPU; asking for ``cuda`` without one is a clear error."""
    import torch

    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device (use --device cpu or auto)")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus 8 random hex digits."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one)."""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def hardware(device=None) -> str:
    """The CPU model and core count, and the GPU when the run uses one."""
    text = f"{cpu_name()}, {os.cpu_count()} cores"
    if device is not None and getattr(device, "type", str(device)) == "cuda":
        import torch

        text += f"; {torch.cuda.get_device_name(device)}"
    return text


def run_metadata(model, *, model_id: str | None, resolution: int, mode: str | None = None,
                 batch_mode: str | None = None, backend: str = "torch", device=None,
                 threshold: float | None = None) -> dict:
    """run.json's fields for a prediction run of ``model`` (an ``AnomalyVFM`` or ONNX runner)."""
    from . import __version__

    cfg = model.config
    profile = getattr(model, "profile", None)
    calibration = getattr(profile, "calibration", None)
    if batch_mode:
        origin = "batch (the batch's own score distribution)"
    elif threshold is not None:
        origin = "given (--threshold)"
    elif calibration is not None:
        origin = f"calibrated on {calibration.sources()} (target FPR {calibration.fpr:g})"
    else:
        origin = cfg.threshold_origin
    return {
        "run_id": new_run_id(),
        "anomalyvfm_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "model": model_id or "shipped default",
        "backbone": cfg.backbone,
        "weights_sha256": cfg.weights_sha256,
        "profile": profile is not None,
        "image_score": "batch" if batch_mode else cfg.image_score,
        "test_views": cfg.test_views,  # batch mode too: its model part is scored as predict scores it
        "edge_pad": cfg.edge_pad,  # patches of mirrored border
        "ensemble_members": len(cfg.members),  # other checkpoints averaged in
        "threshold": 0.5 if (batch_mode or calibration is not None) and threshold is None else
        (cfg.threshold if threshold is None else threshold),
        "threshold_origin": origin,
        "calibration": None if batch_mode or calibration is None else calibration.to_dict(),  # a profile's own
        "pixel_threshold": cfg.pixel_threshold,
        "resolution": resolution,
        "tile_size": cfg.tile_size,  # 0: whole images
        "mode": f"batch ({batch_mode})" if batch_mode else (mode or cfg.mode),
        "backend": backend,
        "device": str(device) if device is not None else "cpu",
        "hardware": hardware(device),
    }
