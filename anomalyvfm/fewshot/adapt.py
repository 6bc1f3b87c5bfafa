"""Stage 1 of few-shot fitting: fine-tune a copy of the model's adapters, decoder and head on synthetic defects
made on the good images (and on real defective ones, if given), with early stopping on held-out synthetic pairs."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from ..losses import anomalyvfm_loss, confidence_weighted, image_loss, pixel_loss
from ..model import AnomalyVFM
from ..synth import SynthConfig
from .config import FinetuneConfig, FinetuneReport
from .views import make_pairs, to_tensors

Pairs = tuple  # (views (2n, R, R, 3), masks (2n, R, R), labels (2n,), source image per row, mask known per row)


def _loss(out, m: torch.Tensor, y: torch.Tensor, known: torch.Tensor, cfg: FinetuneConfig) -> torch.Tensor:
    """The training objective; rows whose mask is unknown (real defects given without a mask) get the image loss
    only."""
    if bool(known.all()):
        return anomalyvfm_loss(out.mask_logits, out.confidence_logits, out.image_logits, m, y, cfg.alpha,
                               cfg.image_weight)
    m = torch.nn.functional.interpolate(m, size=out.mask_logits.shape[-2:], mode="bilinear", align_corners=False)
    pixel = confidence_weighted(pixel_loss(out.mask_logits[known], m[known]), out.confidence_logits[known],
                                cfg.alpha) if bool(known.any()) else out.mask_logits.sum() * 0
    return pixel + cfg.image_weight * image_loss(out.image_logits, y)


def _trainable_state(model: AnomalyVFM) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _held_out_loss(model: AnomalyVFM, held: Pairs, cfg: FinetuneConfig, device) -> float:
    model.eval()
    x, m, y = to_tensors(model, *held[:3], device)
    losses = []
    with torch.no_grad():
        for s in range(0, len(x), cfg.batch_size):
            o = model(x[s:s + cfg.batch_size])
            losses.append(anomalyvfm_loss(o.mask_logits, o.confidence_logits, o.image_logits,
                                          m[s:s + cfg.batch_size], y[s:s + cfg.batch_size], cfg.alpha,
                                          cfg.image_weight).item())
    model.train()
    return float(np.mean(losses))


def adapt(model: AnomalyVFM, images: list[np.ndarray], real: list[tuple[np.ndarray, np.ndarray | None]],
          cfg: FinetuneConfig, res: int, progress: bool = True) -> tuple[AnomalyVFM, Pairs, FinetuneReport]:
    """A fine-tuned copy of ``model`` (without any profile state, LoRA merged, eval mode; of an ensemble, its first
    model alone), the held-out pairs it was stopped on, and the report so far. ``model`` itself is left as it was."""
    from tqdm import tqdm

    device = model.device
    model = copy.deepcopy(model).train()
    model.profile = None
    if len(model.members):  # an ensemble: its first model is fine-tuned alone and the others dropped
        model.members, model.config = torch.nn.ModuleList(), dataclasses.replace(model.config, members=())
    synth = SynthConfig(**{**cfg.synth, "size": res})
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 0])
    held = make_pairs(np.random.default_rng([cfg.seed, 1]), images, cfg.holdout, synth,
                      sources=[j % len(images) for j in range(cfg.holdout)])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    report = FinetuneReport()
    best, best_state, stale = _held_out_loss(model, held, cfg, device), _trainable_state(model), 0
    report.holdout_loss.append(best)
    bar = tqdm(range(1, cfg.steps + 1), desc="finetune", unit="step", disable=not progress)
    for step in bar:
        views, masks, labels, _, known = make_pairs(rng, images, cfg.batch_size // 2, synth, real=real,
                                                    real_fraction=cfg.real_fraction)
        x, m, y = to_tensors(model, views, masks, labels, device)
        loss = _loss(model(x), m, y, torch.from_numpy(known).to(device), cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        report.steps = step
        bar.set_postfix(loss=f"{loss.item():.4f}", held_out=f"{best:.4f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            current = _held_out_loss(model, held, cfg, device)
            report.holdout_loss.append(current)
            if current < best:
                best, best_state, stale, report.best_step = current, _trainable_state(model), 0, step
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
    bar.close()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in best_state:
                p.copy_(best_state[name])
    return model.prepare_for_inference(), held, report
