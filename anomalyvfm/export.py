"""ONNX export of a checkpoint or a few-shot profile, and an onnxruntime runner with the prediction interface.

The graph takes normalised pixels (B, 3, R, R) at the mode's fixed size R, batch dynamic, and returns the image
score under every rule and the anomaly map (B, R, R). LoRA is merged into the backbone and each layer scale folded
into the linear layer before it (both exact re-parametrisations); a profile's kNN memory and fusion are inside the
graph. ``fuse=True`` (the default when onnxruntime is installed) then lets onnxruntime's transformer optimizer fuse
each attention block, LayerNorm+residual and bias+GELU into its contrib operators (``com.microsoft`` domain), which
only onnxruntime runs; ``fuse=False`` keeps standard ONNX operators for other runtimes. The calibration (0–1 deviation and threshold) and the model config travel in the
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

from .config import AnomalyVFMConfig, IMAGE_SCORES, MEMORY_SCORES, QUANTIZATIONS, resolution_for

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
    return list(IMAGE_SCORES) + (list(MEMORY_SCORES) + ["model"] if model.memory is not None else []) + ["anomaly_map"]


def _export_copy(model):
    """A copy of ``model`` for tracing whose backbone is a plain ``Dinov2Model``: LoRA merged and unloaded, every
    layer scale folded into the output projection / second MLP layer before it (y = λ⊙(Wx + b) = (λW)x + λb),
    and eager attention, whose MatMul–Softmax–MatMul block onnxruntime's optimizer recognises."""
    import copy

    model.prepare_for_inference()
    clone = copy.deepcopy(model)
    clone.backbone.unmerge_adapter()
    clone.backbone = clone.backbone.merge_and_unload()
    for layer in clone.backbone.encoder.layer:
        with torch.no_grad():
            for linear, scale in ((layer.attention.o_proj, layer.layer_scale1), (layer.mlp.fc2, layer.layer_scale2)):
                linear.weight.mul_(scale.lambda1[:, None])
                linear.bias.mul_(scale.lambda1)
        layer.layer_scale1, layer.layer_scale2 = nn.Identity(), nn.Identity()
    clone.backbone.set_attn_implementation("eager")
    return clone.eval()


def _scale_by_division(proto) -> None:
    """Eager attention scales QKᵀ by a Mul before the Softmax; onnxruntime's attention fusion looks for the same
    scaling written as a Div, so the constant is inverted and the node turned into one."""
    from onnx import numpy_helper

    producer = {out: node for node in proto.graph.node for out in node.output}
    for node in proto.graph.node:
        mul = producer.get(node.input[0]) if node.op_type == "Softmax" else None
        const = producer.get(mul.input[1]) if mul is not None and mul.op_type == "Mul" else None
        if const is None or const.op_type != "Constant":
            continue
        value = numpy_helper.to_array(const.attribute[0].t)
        const.attribute[0].t.CopyFrom(numpy_helper.from_array((1.0 / value).astype(value.dtype)))
        mul.op_type = "Div"


def _fuse(path: Path, model) -> None:
    """onnxruntime's transformer optimizer, in place: Attention, SkipLayerNormalization and BiasGelu contrib ops."""
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = model.backbone.config
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)
    try:
        optimize_model(str(path), model_type="vit", num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size,
                       opt_level=0).save_model_to_file(str(path))
    finally:
        root.setLevel(level)


def export_onnx(model, path: str | os.PathLike, *, mode: str | None = None, resolution: int | None = None,
                opset: int = 17, quantize: str | None = None, fuse: bool | None = None) -> Path:
    """Write ``model`` (an ``AnomalyVFM``, possibly a profile) as ONNX; the file appears only once complete.
    ``quantize``: None (float32, parity with PyTorch) or "int8" (dynamic quantization of the MatMul weights).
    ``fuse``: fuse attention etc. into onnxruntime's contrib operators (default: when onnxruntime is installed)."""
    import importlib.util

    import onnx

    if quantize not in (None, *QUANTIZATIONS):
        raise ValueError(f"quantize must be one of {QUANTIZATIONS} or None, got {quantize!r}")
    if model.config.memory_mode == "golden":
        raise ValueError("golden-reference profiles cannot be exported: their OpenCV alignment runs outside the "
                         "network; export the base checkpoint or a kNN-memory profile instead")
    if fuse is None:
        fuse = importlib.util.find_spec("onnxruntime") is not None
    res = resolution_for(mode, resolution, model.config.mode)
    model = _export_copy(model)
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
        if fuse:
            proto = onnx.load(str(tmp_file))
            _scale_by_division(proto)
            onnx.save(proto, str(tmp_file))
            _fuse(tmp_file, model)
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            float_file, tmp_file = tmp_file, Path(tmp) / f"int8-{path.name}"
            root, level = logging.getLogger(), logging.getLogger().level
            root.setLevel(logging.ERROR)  # its advice to pre-process: symbolic shape inference fails on this graph
            try:
                quantize_dynamic(float_file, tmp_file, weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=["MatMul", "Attention"],
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # types behind
                # contrib operators are not inferred
            finally:
                root.setLevel(level)
        proto = onnx.load(str(tmp_file))
        meta = {"anomalyvfm_config": json.dumps(model.config.to_dict()), "resolution": str(res),
                "quantization": quantize or "none", "fused": str(bool(fuse)).lower()}
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp_file))
        os.replace(tmp_file, path)
    return path


class OnnxModel:
    """An exported model run by onnxruntime; ``predict`` works as ``AnomalyVFM.predict`` at the exported size."""

    memory = None
    reference = None
    device = torch.device("cpu")

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if "anomalyvfm_config" not in meta:
            raise ValueError(f"{self.path}: not an anomalyvfm export (no anomalyvfm_config metadata)")
        self.config = AnomalyVFMConfig.from_dict(json.loads(meta["anomalyvfm_config"]))
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
