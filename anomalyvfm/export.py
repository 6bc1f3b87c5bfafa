"""ONNX export of a checkpoint or a few-shot profile, and an onnxruntime runner with the prediction interface.

The graph takes normalised pixels (B, 3, R, R) at the mode's fixed size R, batch dynamic, and returns the image
score under every rule and the anomaly map (B, R, R). LoRA is merged into the backbone; a profile's kNN memory and
fusion are inside the graph. The calibration (0–1 deviation and threshold) and the model config travel in the
file's metadata and are applied by ``OnnxModel`` exactly as in PyTorch. Not exportable: golden-reference alignment
(OpenCV ECC runs before the network), so golden profiles are refused.

``quantize="int8"`` adds onnxruntime's dynamic quantization of the MatMul weights (int8 weights per output channel, activations
quantised per batch at run time): faster on CPUs with VNNI, but no longer within 1e-3 of PyTorch; its measured
parity and accuracy are in BENCHMARKS.md (``benchmarks/onnx_accuracy.py``).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .config import QUANTIZATIONS, resolution_for
from .scoring import SCORE_RULES
from .scoring import output_names as score_names

INPUT_NAME = "pixel_values"


class _Graph(nn.Module):
    def __init__(self, model, resolution: int):
        super().__init__()
        self.model, self.resolution = model, resolution

    def forward(self, pixel_values: torch.Tensor):
        scores, maps = self.model.infer(pixel_values, self.resolution)
        return (*scores.values(), maps)


def output_names(model) -> list[str]:
    """The graph's outputs, in the order of ``AnomalyVFM.scores``: every image-score rule, then the map."""
    has_memory = model.profile is not None and model.profile.memory is not None
    with_self = SCORE_RULES[model.config.image_score].needs_self
    return score_names(memory=has_memory, self_scores=with_self) + ["anomaly_map"]


def export_onnx(model, path: str | os.PathLike, *, mode: str | None = None, resolution: int | None = None,
                opset: int = 17, quantize: str | None = None) -> Path:
    """Write ``model`` (an ``AnomalyVFM``, possibly a profile) as ONNX; the file appears only once complete.
    ``quantize``: None (float32, parity with PyTorch) or "int8" (dynamic quantization of the MatMul weights)."""
    import onnx

    if quantize not in (None, *QUANTIZATIONS):
        raise ValueError(f"quantize must be one of {QUANTIZATIONS} or None, got {quantize!r}")
    if model.profile is not None and model.profile.golden:
        raise ValueError("golden-reference profiles cannot be exported: their OpenCV alignment runs outside the "
                         "network; export the base checkpoint or a kNN-memory profile instead")
    res = resolution_for(mode, resolution, model.config.mode)
    model.prepare_for_inference()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = output_names(model)
    x = torch.zeros(2, 3, res, res)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        tmp_file = Path(tmp) / path.name
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shapes that are constant for a fixed-size graph
            torch.onnx.export(_Graph(model, res).eval(), (x,), str(tmp_file), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=names,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}})
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            float_file, tmp_file = tmp_file, Path(tmp) / f"int8-{path.name}"
            root, level = logging.getLogger(), logging.getLogger().level
            root.setLevel(logging.ERROR)  # its advice to pre-process: symbolic shape inference fails on this graph
            try:
                quantize_dynamic(float_file, tmp_file, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                                 per_channel=True)
            finally:
                root.setLevel(level)
        proto = onnx.load(str(tmp_file))
        meta = {"anomalyvfm_config": json.dumps(model.config.to_dict()), "resolution": str(res),
                "quantization": quantize or "none"}
        if model.profile is not None:  # the scalars; the memory itself is inside the graph
            meta["anomalyvfm_profile"] = json.dumps(model.profile.to_json())
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp_file))
        os.replace(tmp_file, path)
    return path


class OnnxModel:
    """An exported model run by onnxruntime; ``predict`` works as ``AnomalyVFM.predict`` at the exported size."""

    device = torch.device("cpu")

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        from .errors import CheckpointError

        self.path = Path(path)
        if not self.path.is_file():
            hint = (": a checkpoint folder, which runs without --backend onnx (or export it with `anomalyvfm export`)"
                    if self.path.is_dir() else "")
            raise CheckpointError(f"{self.path}: no such ONNX file{hint}")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime's errors share no base class: one clear line for all
            raise CheckpointError(f"{self.path}: not a readable ONNX model ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "anomalyvfm_config" not in meta:
            raise CheckpointError(f"{self.path}: not an anomalyvfm export (no anomalyvfm_config metadata)")
        from .checkpoint import split_legacy
        from .profile import ProfileState

        self.config, legacy = split_legacy(json.loads(meta["anomalyvfm_config"]))  # 0.1.0 kept the state inside
        state = json.loads(meta["anomalyvfm_profile"]) if "anomalyvfm_profile" in meta else legacy
        self.profile = ProfileState.from_json(state) if state.get("calibration") else None
        self.resolution = int(meta["resolution"])
        self.quantization = meta.get("quantization", "none")
        self.outputs = [o.name for o in self.session.get_outputs()]

    def prepare_for_inference(self) -> "OnnxModel":
        return self

    def infer(self, pixel_values: torch.Tensor, resolution: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if resolution != self.resolution:
            raise ValueError(f"{self.path} was exported for {self.resolution} px input, asked for {resolution}")
        values = self.session.run(None, {INPUT_NAME: pixel_values.numpy()})
        out = {n: torch.from_numpy(v) for n, v in zip(self.outputs, values)}
        maps = out.pop("anomaly_map")
        return out, maps

    def predict(self, images, batch_size: int = 8, **kwargs):
        from .predict import iter_predict

        kwargs.setdefault("resolution", self.resolution)
        return list(iter_predict(self, images, batch_size=batch_size, **kwargs))
