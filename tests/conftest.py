"""Offline, deterministic test set-up: no network, temporary caches, tiny random DINOv2 models."""
from __future__ import annotations

import csv
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_SESSION_CACHE: dict[str, Path] = {}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """Every test runs with the network unreachable and all hub caches in a temporary folder; the converted
    embedded backbone is cached once per session."""
    if "hf" not in _SESSION_CACHE:
        _SESSION_CACHE["hf"] = tmp_path_factory.mktemp("hf_home")
        _SESSION_CACHE["anomalyvfm"] = tmp_path_factory.mktemp("anomalyvfm_cache")
    monkeypatch.setenv("HF_HOME", str(_SESSION_CACHE["hf"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ANOMALYVFM_CACHE", str(_SESSION_CACHE["anomalyvfm"]))

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in tests")

    connect = socket.socket.connect

    def local_only(sock, address):  # unix sockets stay open: worker processes pass tensors through them
        return connect(sock, address) if sock.family == socket.AF_UNIX else refuse()

    monkeypatch.setattr(socket.socket, "connect", local_only)
    monkeypatch.setattr(socket, "create_connection", refuse)
    torch.manual_seed(0)
    np.random.seed(0)


def tiny_dinov2(**overrides):
    from transformers import Dinov2Config, Dinov2Model

    cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, patch_size=14,
               image_size=56, use_mask_token=False)
    cfg.update(overrides)
    torch.manual_seed(0)
    return Dinov2Model(Dinov2Config(**cfg)).eval()


@pytest.fixture
def tiny_backbone_dir(tmp_path) -> Path:
    """A tiny random DINOv2 saved as a Hugging Face folder: a backbone spec that loads offline."""
    path = tmp_path / "tiny-dinov2"
    tiny_dinov2().save_pretrained(path)
    return path


@pytest.fixture
def tiny_model(tiny_backbone_dir):
    from anomalyvfm import AnomalyVFM, AnomalyVFMConfig

    torch.manual_seed(0)
    return AnomalyVFM(AnomalyVFMConfig(backbone=str(tiny_backbone_dir), top_k=10)).eval()


@pytest.fixture
def tiny_checkpoint(tiny_model, tmp_path) -> Path:
    return tiny_model.save_pretrained(tmp_path / "ckpt")


def write_image(path: Path, size=(40, 60), seed=0, mode="RGB") -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(path)
    return path


def shared_images(dataset: str, category: str, split: str, n: int) -> list[Path]:
    folder = SHARED_DATA / dataset / category / "test" / split
    files = sorted(folder.glob("*"))[:n]
    if not files:
        missing_real_data(folder)
    return files


def missing_real_data(where) -> None:
    """Skip a test whose real data is missing, except under CI=true, where it must fail: CI never passes without it."""
    import os

    message = f"real data not found at {where}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: tests on real data must run)")
    pytest.skip(message)


def write_mask(path: Path, size=(40, 60), box=(5, 15, 10, 30)) -> Path:
    from PIL import Image

    mask = np.zeros(size, np.uint8)
    y0, y1, x0, x1 = box
    mask[y0:y1, x0:x1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
    return path


def fake_mvtec(root: Path, category: str = "widget", n: int = 3, size=(40, 60)) -> Path:
    """A tiny MVTec-layout category: n train/good, n test/good, n test/crack with masks."""
    folder = root / category
    for i in range(n):
        write_image(folder / "train" / "good" / f"{i:03d}.png", size, seed=i)
        write_image(folder / "test" / "good" / f"{i:03d}.png", size, seed=100 + i)
        write_image(folder / "test" / "crack" / f"{i:03d}.png", size, seed=200 + i)
        write_mask(folder / "ground_truth" / "crack" / f"{i:03d}_mask.png", size)
    return folder


def result_rows(out: Path) -> list[dict]:
    """The rows of a results folder's results.csv."""
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))
