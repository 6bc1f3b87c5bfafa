"""Train AnomalyVFM on streamed synthetic pairs: AdamW, gradient accumulation, confidence-weighted pixel loss and
image focal loss, periodic checkpoints with exact resume, loss curves as PNG, data-parallel through torchrun.

    python -m training.train --config training/configs/default.json [--out runs/x] [--steps N]
    torchrun --nproc-per-node 2 -m training.train --config ...       # data-parallel (gloo on CPU, nccl on CUDA)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from anomalyvfm.backbones import load_backbone
from anomalyvfm.checkpoint import load_weights
from anomalyvfm.config import IMAGENET_MEAN, IMAGENET_STD, AnomalyVFMConfig
from anomalyvfm.losses import anomalyvfm_loss, bernoulli_kl, image_loss
from anomalyvfm.model import AnomalyVFM, ModelOutput
from anomalyvfm.outputs import atomic_write_bytes
from anomalyvfm.preprocess import normalize
from anomalyvfm.synth import SynthConfig, make_pair
from anomalyvfm.tta import TEST_VIEWS, apply_view


@dataclass
class TrainConfig:
    out: str = "runs/default"  # run folder: checkpoints/, final/, log.jsonl, loss.png
    steps: int = 1000  # optimiser steps
    batch_size: int = 8  # images per micro-batch: half good, half defective (pairs)
    grad_accum: int = 1  # micro-batches per optimiser step
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup: int = 50  # linear warm-up steps, then cosine decay to 10%
    resolution: int = 224
    seed: int = 0  # model init and the synthetic stream
    checkpoint_every: int = 100
    alpha: float = 0.1  # confidence regulariser α
    image_weight: float = 1.0
    device: str = "auto"  # auto | cpu | cuda
    workers: int = 0  # processes that synthesise the next batches ahead (0: in the training loop); the batches are
    # the same either way, so a run's weights do not depend on it
    freeze_adapters: bool = False  # train the decoder and head only (LoRA stays at its identity init)
    refine_masks: bool = False  # keep only mask pixels where frozen-backbone features of good and bad differ
    refine_threshold: float = 0.1  # cosine distance above which a masked pixel is kept
    focal_alpha: float = -1.0  # focal loss class weight: -1 = none (ours), 0.25 = the published recipe
    binary_targets: bool = False  # threshold the resized masks at 0.5 (the published recipe); with "bilinear" at
    # 224 px the resized visible-change masks are already 0/1, so this changes nothing there
    mask_resize: str = "bilinear"  # how masks reach the 32x32 logit grid: "bilinear" (samples one pixel per cell at
    # 224 px) or "area" (the anomalous fraction of each cell)
    symmetry_augment: bool = False  # each pair seen through one random symmetry of the square (anomalyvfm.tta's
    # "d4" views), the same for its good and bad image and its mask
    init_from: str | None = None  # warm start: a checkpoint folder whose adapters and heads seed this run (new
    # decoder layers and image-head inputs start at zero, so step 0 reproduces that checkpoint)
    anchor_to: str | None = None  # a checkpoint folder whose outputs on the good half of each batch this run is
    # held near (Bernoulli KL on image and mask logits): a continued run learns new defects without moving its
    # verdict on good parts
    anchor_weight: float = 1.0
    hard_normals: int = 1  # candidate pairs drawn per pair slot; the one whose good image the model scores highest
    # right now is trained on (online hard-negative mining of normals; 1: off, the batches of earlier runs)
    model: dict = field(default_factory=dict)  # AnomalyVFMConfig fields
    synth: dict = field(default_factory=dict)  # SynthConfig fields

    def __post_init__(self) -> None:
        if self.hard_normals < 1:
            raise ValueError(f"hard_normals must be >= 1, got {self.hard_normals}")

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides) -> "TrainConfig":
        data = json.loads(Path(path).read_text()) if path else {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown training config keys {sorted(unknown)}")
        return cls(**data)


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def batch(cfg: TrainConfig, synth: SynthConfig, step: int, micro: int,
          rank_world: tuple[int, int] | None = None) -> tuple[torch.Tensor, ...]:
    """The micro-batch for (step, micro) of this rank: a pure function of the indices, so resume is exact."""
    rank, world = rank_world or _dist()
    pairs = cfg.batch_size // 2
    first = ((step * cfg.grad_accum + micro) * world + rank) * pairs
    images, masks, labels = [], [], []
    for i in range(first, first + pairs):
        for c in range(cfg.hard_normals):  # candidate 0 is the slot's pair without mining
            s = make_pair(np.random.default_rng([cfg.seed, i] + ([2, c] if c else [])), synth)
            images += [s["good"], s["bad"]]
            masks += [np.zeros_like(s["mask"]), s["mask"]]
            labels += [0.0, 1.0]
    x = normalize(np.stack(images), IMAGENET_MEAN, IMAGENET_STD)
    m = torch.from_numpy(np.stack(masks)).float().div_(255.0).unsqueeze(1)
    if cfg.symmetry_augment:
        views = TEST_VIEWS["d4"]
        for j, i in enumerate(range(first, first + pairs)):
            view = views[np.random.default_rng([cfg.seed, i, 1]).integers(len(views))]
            pair = slice(2 * cfg.hard_normals * j, 2 * cfg.hard_normals * (j + 1))
            x[pair], m[pair] = apply_view(x[pair], view), apply_view(m[pair], view)
    return x, m, torch.tensor(labels)


class _Batches(torch.utils.data.Dataset):
    """The micro-batches from ``start`` on, in training order, for a ``DataLoader`` whose workers synthesise them."""

    def __init__(self, cfg: TrainConfig, synth: SynthConfig, start: int):
        self.cfg, self.synth, self.start, self.rank_world = cfg, synth, start, _dist()

    def __len__(self) -> int:
        return (self.cfg.steps - self.start) * self.cfg.grad_accum

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        step, micro = divmod(i, self.cfg.grad_accum)
        return batch(self.cfg, self.synth, self.start + step, micro, self.rank_world)


def batches(cfg: TrainConfig, synth: SynthConfig, start: int):
    """Yield (step, micro, (x, m, y)) from step ``start`` on: built here, or ahead by ``cfg.workers`` processes."""
    data = _Batches(cfg, synth, start)
    items = (data[i] for i in range(len(data))) if cfg.workers == 0 else torch.utils.data.DataLoader(
        data, batch_size=None, num_workers=cfg.workers, prefetch_factor=4, persistent_workers=False)
    for i, item in enumerate(items):
        yield start + i // cfg.grad_accum, i % cfg.grad_accum, item


def refine(model: AnomalyVFM, x: torch.Tensor, m: torch.Tensor, y: torch.Tensor,
           threshold: float) -> tuple[torch.Tensor, ...]:
    """Refine the defect masks of the (good, bad) pairs interleaved in the batch with the frozen backbone's
    features, and drop the pairs whose mask becomes empty."""
    from anomalyvfm.synth.refine import refine_masks

    def features(images: torch.Tensor) -> torch.Tensor:
        with model.backbone.disable_adapter():
            tokens = model.backbone(pixel_values=images).last_hidden_state[:, model.prefix_tokens:]
        side = images.shape[-1] // model.patch_size
        return tokens.transpose(1, 2).reshape(images.shape[0], -1, side, side)

    refined, keep = refine_masks(features, x[0::2], x[1::2], m[1::2], threshold)
    if not keep.any():  # nothing visible at all: train on the unrefined batch rather than on nothing
        return x, m, y
    m = m.clone()
    m[1::2] = refined
    rows = keep.repeat_interleave(2)
    return x[rows], m[rows], y[rows]


def lr_factor(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, progress)))


# ---- checkpoints: safetensors + JSON only ----------------------------------------------------------------------

def save_checkpoint(folder: Path, model: AnomalyVFM, optimizer: torch.optim.Optimizer, step: int,
                    history: list[dict]) -> None:
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=folder.parent))
    model.save_pretrained(tmp / "model")
    tensors, groups = {}, []
    state = optimizer.state_dict()
    for pid, st in state["state"].items():
        for key, value in st.items():
            tensors[f"{pid}.{key}"] = value.detach().clone().contiguous() if torch.is_tensor(value) \
                else torch.tensor(value)
    for g in state["param_groups"]:
        groups.append({k: v for k, v in g.items()})
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "param_groups": groups,
                                                        "history": history}))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def load_checkpoint(folder: Path, model: AnomalyVFM, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict]]:
    from safetensors.torch import load_file

    load_weights(model, folder / "model")
    meta = json.loads((folder / "trainer_state.json").read_text())
    tensors = load_file(folder / "optimizer.safetensors")
    state: dict = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["step"], meta["history"]


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / "checkpoints").glob("step_*"))
    return found[-1] if found else None


def plot_losses(history: list[dict], path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = np.array([h["step"] for h in history])
    window = max(1, min(50, len(history) // 10))  # per-step losses are noisy: the trend is a running mean
    for key, colour in (("loss", "C0"), ("pixel", "C1"), ("image", "C2"), ("anchor", "C3")):
        if history and key not in history[0]:
            continue
        values = np.array([h[key] for h in history])
        ax.plot(steps, values, color=colour, lw=0.5, alpha=0.25)
        if len(values):
            trend = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], trend, color=colour, lw=1.5, label=f"{key} ({window}-step mean)")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax.legend()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


# ---- the loop ------------------------------------------------------------------------------------------------

def build(cfg: TrainConfig, device: torch.device) -> tuple[AnomalyVFM, torch.optim.Optimizer]:
    torch.manual_seed(cfg.seed)
    mcfg = AnomalyVFMConfig(**cfg.model)
    model = AnomalyVFM(mcfg, backbone=load_backbone(mcfg.backbone)).to(device).train()
    if cfg.init_from:
        warm_start(model, Path(cfg.init_from))
    if cfg.freeze_adapters:
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def warm_start(model: AnomalyVFM, folder: Path) -> None:
    """Seed ``model`` with a checkpoint's adapters and heads. Where this model's decoder reads more layers, the
    checkpoint's stem weights fill the channels of its own (last) layer and the rest start at zero; where the image
    head sees more inputs, the CLS weights are copied and the extra ones start at zero."""
    from anomalyvfm.checkpoint import ADAPTER_NAME, HEADS_NAME, read_tensors
    from anomalyvfm.lora import load_adapter_state

    load_adapter_state(model.backbone, read_tensors(folder / ADAPTER_NAME), str(folder / ADAPTER_NAME))
    own = model.state_dict()
    for name, value in read_tensors(folder / HEADS_NAME).items():
        target = own[name]
        if target.shape == value.shape:
            target.copy_(value)
        elif name == "decoder.stem.0.0.weight" and target.shape[1] > value.shape[1]:
            target.zero_()
            target[:, -value.shape[1]:] = value
        elif name == "image_head.fc.weight" and target.shape[1] > value.shape[1]:
            target.zero_()
            target[:, :value.shape[1]] = value
        else:
            raise ValueError(f"{folder}: {name} has shape {tuple(value.shape)}, this model {tuple(target.shape)}")


def load_anchor(cfg: TrainConfig, device: torch.device) -> AnomalyVFM | None:
    """The frozen checkpoint ``cfg.anchor_to`` names (None without one)."""
    if not cfg.anchor_to:
        return None
    backbone = load_backbone(AnomalyVFMConfig(**cfg.model).backbone)
    anchor = AnomalyVFM.from_pretrained(cfg.anchor_to, backbone=backbone).to(device).eval()
    anchor.requires_grad_(False)
    return anchor


def hardest_pairs(model: AnomalyVFM, x: torch.Tensor, m: torch.Tensor, y: torch.Tensor,
                  candidates: int) -> tuple[torch.Tensor, ...]:
    """Of each slot's ``candidates`` (good, bad) pairs, the one whose good image ``model`` scores highest now."""
    if candidates == 1:
        return x, m, y
    with torch.no_grad():
        logits = model(x[0::2]).image_logits.reshape(-1, candidates)
    first = (torch.arange(len(logits), device=x.device) * candidates + logits.argmax(1)) * 2
    rows = torch.stack([first, first + 1], 1).flatten()
    return x[rows], m[rows], y[rows]


def anchor_loss(out: ModelOutput, anchor: AnomalyVFM, x: torch.Tensor) -> torch.Tensor:
    """KL between ``anchor``'s and the run's image and mask probabilities on the good images (even rows)."""
    with torch.no_grad():
        fixed = anchor(x[0::2])
    return (bernoulli_kl(out.image_logits[0::2], fixed.image_logits)
            + bernoulli_kl(out.mask_logits[0::2], fixed.mask_logits))


def train_step(cfg: TrainConfig, model: AnomalyVFM, ddp: torch.nn.Module, optimizer: torch.optim.Optimizer,
               micro_batches, device: torch.device, step: int,
               anchor: AnomalyVFM | None = None) -> dict[str, float]:
    """One optimiser step over the ``grad_accum`` micro-batches that ``micro_batches`` (``batches``) yields next;
    returns the mean losses."""
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * lr_factor(cfg, step)
    optimizer.zero_grad(set_to_none=True)
    totals = {"loss": 0.0, "pixel": 0.0, "image": 0.0, **({"anchor": 0.0} if anchor is not None else {})}
    for micro in range(cfg.grad_accum):
        at, at_micro, data = next(micro_batches)
        assert (at, at_micro) == (step, micro), f"batch {at}.{at_micro} arrived for step {step}.{micro}"
        x, m, y = hardest_pairs(model, *(t.to(device) for t in data), cfg.hard_normals)
        if cfg.refine_masks:
            x, m, y = refine(model, x, m, y, cfg.refine_threshold)
        out = ddp(x)
        loss = anomalyvfm_loss(out.mask_logits, out.confidence_logits, out.image_logits, m, y, cfg.alpha,
                               cfg.image_weight, cfg.focal_alpha, cfg.binary_targets, cfg.mask_resize)
        held = anchor_loss(out, anchor, x) if anchor is not None else None
        ((loss if held is None else loss + cfg.anchor_weight * held) / cfg.grad_accum).backward()
        with torch.no_grad():
            img = image_loss(out.image_logits, y).item()
        totals["loss"] += loss.item() / cfg.grad_accum
        totals["image"] += img / cfg.grad_accum
        totals["pixel"] += (loss.item() - cfg.image_weight * img) / cfg.grad_accum
        if held is not None:
            totals["anchor"] += held.item() / cfg.grad_accum
    optimizer.step()
    return totals


def train(cfg: TrainConfig, crash_at_step: int | None = None) -> Path:
    """Run (or resume) training; returns the folder of the final model."""
    from tqdm import tqdm

    rank, world = _dist()
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          (cfg.device if cfg.device != "auto" else "cpu"))
    out = Path(cfg.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    synth = SynthConfig(**{**cfg.synth, "size": cfg.resolution})
    model, optimizer = build(cfg, device)
    anchor = load_anchor(cfg, device)
    step, history = 0, []
    resume = latest_checkpoint(out)
    if resume is not None:
        step, history = load_checkpoint(resume, model, optimizer)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    if rank == 0:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    start = time.perf_counter()
    micro_batches = batches(cfg, synth, step)
    with tqdm(total=cfg.steps, initial=step, desc="train", unit="step", disable=rank != 0) as bar:
        while step < cfg.steps:
            totals = train_step(cfg, model, ddp, optimizer, micro_batches, device, step, anchor)
            step += 1
            history.append({"step": step, **totals, "lr": optimizer.param_groups[0]["lr"],
                            "elapsed_s": time.perf_counter() - start})
            bar.update(1)
            bar.set_postfix(loss=f"{totals['loss']:.4f}")
            if rank == 0 and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
                save_checkpoint(out / "checkpoints" / f"step_{step:07d}", model, optimizer, step, history)
                atomic_write_bytes(out / "log.jsonl", "".join(json.dumps(h) + "\n" for h in history).encode())
                plot_losses(history, out / "loss.png")
            if crash_at_step is not None and step == crash_at_step:
                raise SystemExit(f"simulated crash at step {step}")
    if rank == 0:
        model.config.trained = True
        model.save_pretrained(out / "final")
    if world > 1:
        torch.distributed.barrier()  # every rank returns only once the checkpoints and final model are written
    return out / "final"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="JSON file of TrainConfig fields")
    parser.add_argument("--out")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--seed", type=int, help="another seed for the config's recipe")
    parser.add_argument("--crash-at-step", type=int, help=argparse.SUPPRESS)  # for the resume test
    args = parser.parse_args(argv)
    cfg = TrainConfig.from_file(args.config, out=args.out, steps=args.steps, seed=args.seed)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        final = train(cfg, crash_at_step=args.crash_at_step)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    print(f"final model: {final}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
