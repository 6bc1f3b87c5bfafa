"""Mutual scoring of a batch of unlabeled images (MuSc: Li et al., "MuSc: Zero-Shot Industrial Anomaly
Classification and Segmentation with Mutual Scoring of the Unlabeled Images", ICLR 2024), as separate steps:

1. ``aggregate``: per transformer layer, the patch-token grid is layer-normed over the whole map (MuSc's LNAMD),
   averaged over an r×r neighbourhood (zero padding, r = 1, 3, 5: several degrees of local context) and
   L2-normalised per patch;
2. ``mutual_scores``: each patch's distance to its nearest patch in every *other* image of the batch; its score is the
   interval mean of the smallest ``interval`` fraction of those per-image distances (anomalous patches are far from
   most images; a normal patch has close twins in most images, while an anomaly shared by a few images still finds
   a twin in those few, which the interval mean ignores);
3. scores are averaged over layers and degrees into a patch map, the image score is its maximum (or the mean of its
   top 1%), and ``rscin`` re-scores each image with its nearest neighbours in CLS-token space (MuSc's RsCIN).

Where we depart from the published recipe: DINOv2 ViT-S/14 (the embedded backbone) at 224 px instead of ViT-L/14 at
518; degrees r = 1, 3 instead of 1, 3, 5, features compared after a seeded random orthogonal projection to 128
dimensions and each image against at most 64 others (12× cheaper, -0.9 AUROC on the validation category;
``MutualConfig(radii=(1, 3, 5), project=None, max_references=200)`` is the full recipe); cosine geometry
(Euclidean distance between L2-normalised vectors, as MuSc computes it); large batches are compared with a seeded
subsample of ``max_references`` reference images; distances are computed in chunks under a memory bound
(``chunk_mb``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class MutualConfig:
    layers: tuple[int, ...] = (5, 8, 11)  # 0-indexed transformer blocks whose patch tokens are compared
    radii: tuple[int, ...] = (1, 3)  # neighbourhood aggregation degrees r (r×r average); MuSc uses (1, 3, 5)
    project: int | None = 128  # compare features after a seeded random orthogonal projection to this many
    # dimensions (None: full width). With radii (1, 3) it cuts the cost 6× for -0.3 AUROC on the validation
    # category (benchmarks/mutual_speed.py)
    interval: float = 0.3  # a patch's score: mean of its smallest 30% of per-image nearest distances
    image_score: str = "max"  # "max" of the patch map (MuSc) or "top1" (mean of its top 1% patches)
    rscin: tuple[int, ...] = (1, 2, 3)  # RsCIN neighbourhood sizes k; () turns re-scoring off
    max_references: int | None = 64  # compare with at most this many other images (seeded subsample); chosen on
    # the validation category with the projection (benchmarks/mutual_speed.py: 79.1 vs 79.7 with 200, 3× cheaper)
    chunk_mb: int = 256  # memory bound of one similarity block
    bf16: bool | None = None  # similarity products in bfloat16; None: where the CPU has native bfloat16 (AVX512-BF16
    # or AMX), where it is 2-3× faster and gave the same AUROC to 0.1 point (benchmarks/mutual_ablation.py)
    seed: int = 0

    def __post_init__(self) -> None:
        self.layers, self.radii, self.rscin = tuple(self.layers), tuple(self.radii), tuple(self.rscin)
        if not self.layers or not self.radii:
            raise ValueError("MutualConfig needs at least one layer and one radius")
        if self.project is not None and self.project < 8:
            raise ValueError(f"project must be None or >= 8, got {self.project}")
        if any(r < 1 or r % 2 == 0 for r in self.radii):
            raise ValueError(f"radii must be odd and >= 1, got {self.radii}")
        if not 0.0 < self.interval <= 1.0:
            raise ValueError(f"interval must be in (0, 1], got {self.interval}")
        if self.image_score not in ("max", "top1"):
            raise ValueError(f"image_score must be 'max' or 'top1', got {self.image_score!r}")
        if self.max_references is not None and self.max_references < 1:
            raise ValueError(f"max_references must be >= 1 or None, got {self.max_references}")


@dataclass
class MutualResult:
    patch_scores: torch.Tensor  # (N, h, w) patch anomaly scores (distances, higher = more anomalous)
    image_scores: torch.Tensor  # (N,) image scores (after RsCIN when it is on)
    raw_image_scores: torch.Tensor  # (N,) image scores before RsCIN

    def head(self, n: int) -> "MutualResult":
        """The first ``n`` images' results (the rest were references only)."""
        return MutualResult(self.patch_scores[:n], self.image_scores[:n], self.raw_image_scores[:n])


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (Linux: from /proc/cpuinfo's flags)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def aggregate(tokens: torch.Tensor, radius: int, side: int | None = None) -> torch.Tensor:
    """(B, N, D) patch tokens of one layer on a square grid -> (B, N, D) layer-normed, r×r-averaged, L2-normalised.
    ``side``: the grid's side (default: √N; pass it where the shape is traced, as in ONNX export)."""
    b, n, d = tokens.shape
    side = math.isqrt(n) if side is None else side
    grid = tokens.transpose(1, 2).reshape(b, d, side, side).float()
    mean, var = grid.mean(dim=(1, 2, 3), keepdim=True), grid.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    grid = (grid - mean) / (var + 1e-5).sqrt()  # layer norm over the whole map (traceable for ONNX export)
    if radius > 1:
        grid = F.avg_pool2d(grid, radius, stride=1, padding=radius // 2, count_include_pad=True)
    return F.normalize(grid.flatten(2).transpose(1, 2), dim=-1)


def projection(dim: int, width: int, seed: int) -> torch.Tensor:
    """A seeded random (dim, width) matrix with orthonormal columns: cosine geometry is kept approximately
    (Johnson–Lindenstrauss) at a fraction of the cost."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, width, generator=g))
    return q


def reference_sets(n: int, max_references: int | None, seed: int = 0) -> list[torch.Tensor]:
    """For each image, the indices of the images it is compared with: every other one, or (for large batches) a
    seeded subsample of ``max_references`` others."""
    everyone = torch.arange(n)
    if max_references is None or n - 1 <= max_references:
        return [everyone[everyone != i] for i in range(n)]
    g = torch.Generator().manual_seed(seed)
    pool = torch.randperm(n, generator=g)[:max_references + 1]
    return [pool[pool != i][:max_references] for i in range(n)]


def mutual_scores(z: torch.Tensor, interval: float = 0.3, max_references: int | None = None, seed: int = 0,
                  chunk_mb: int = 256, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, P, D) L2-normalised patch features -> (N, P) mutual scores: per patch, the mean of the smallest
    ``interval`` fraction of its nearest-patch distances to each reference image. ``dtype=torch.bfloat16`` runs
    the similarity products in bfloat16 (about 3× faster on CPUs with AVX512-BF16)."""
    n, p, d = z.shape
    if n < 2:
        raise ValueError("mutual scoring needs at least 2 images")
    refs = reference_sets(n, max_references, seed)
    out = torch.empty(n, p)
    z = z.to(dtype)
    # one block: one query image × m reference images × p × p similarities of 4 bytes
    per_ref = max(1, (chunk_mb << 20) // (4 * p * p))
    for i in range(n):
        ref = refs[i]
        nearest = torch.empty(p, len(ref))
        for s in range(0, len(ref), per_ref):
            block = z[ref[s:s + per_ref]].reshape(-1, d)  # (m·P, D)
            nearest[:, s:s + per_ref] = (z[i] @ block.T).view(p, -1, p).amax(-1).float()  # best match per image
        dist = (2.0 - 2.0 * nearest).clamp_min(0.0).sqrt()
        k = max(1, int(dist.shape[1] * interval))
        out[i] = dist.topk(k, dim=1, largest=False).values.mean(1)
    return out


def image_statistic(patch: torch.Tensor, statistic: str) -> torch.Tensor:
    """(B, h, w) patch scores -> (B,) image scores: the maximum ("max") or the mean of the top 1% ("top1")."""
    flat = patch.flatten(1)
    if statistic == "max":
        return flat.amax(1)
    return flat.topk(max(1, (flat.shape[1] + 50) // 100), dim=1).values.mean(1)  # 1%, rounded (traceable)


def rscin(scores: torch.Tensor, cls_tokens: torch.Tensor, ks: tuple[int, ...] = (1, 2, 3)) -> torch.Tensor:
    """MuSc's re-scoring: min-max normalised scores averaged over each image's k most similar images in CLS space
    (itself included, weighted by cosine similarity), then averaged over ``ks``."""
    if not ks or scores.numel() < 2:
        return scores
    span = (scores.max() - scores.min()).clamp_min(1e-12)
    s = (scores - scores.min()) / span
    cls = F.normalize(cls_tokens.float(), dim=-1)
    w = cls @ cls.T
    out = []
    for k in ks:
        k = min(k, len(s))
        top = w.topk(k, dim=1)
        keep = torch.zeros_like(w).scatter_(1, top.indices, top.values)
        out.append((keep @ s) / keep.sum(1).clamp_min(1e-12))
    return torch.stack(out).mean(0)


def score_batch(layer_tokens: list[torch.Tensor], cls_tokens: torch.Tensor, cfg: MutualConfig,
                progress: bool = False) -> MutualResult:
    """Mutual scores of a batch from its patch tokens (one (N, P, D) tensor per layer in ``cfg.layers``) and CLS
    tokens (N, D)."""
    from tqdm import tqdm

    n, p, _ = layer_tokens[0].shape
    side = math.isqrt(p)
    total = torch.zeros(n, p)
    dtype = torch.bfloat16 if (native_bf16() if cfg.bf16 is None else cfg.bf16) else torch.float32
    jobs = [(i, r) for r in cfg.radii for i in range(len(layer_tokens))]
    for i, r in tqdm(jobs, desc="mutual scoring", unit="map", disable=not progress):
        z = aggregate(layer_tokens[i], r)
        if cfg.project is not None and cfg.project < z.shape[-1]:
            z = F.normalize(z @ projection(z.shape[-1], cfg.project, cfg.seed + i), dim=-1)
        total += mutual_scores(z, cfg.interval, cfg.max_references, cfg.seed, cfg.chunk_mb, dtype)
    patch = (total / len(jobs)).view(n, side, side)
    raw = image_statistic(patch, cfg.image_score)
    return MutualResult(patch, rscin(raw, cls_tokens, cfg.rscin), raw)

