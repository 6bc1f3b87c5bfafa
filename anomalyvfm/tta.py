"""Test-time views: symmetries of the square input whose outputs are mapped back and averaged.

``AnomalyVFMConfig.test_views`` names a set in ``TEST_VIEWS``; ``AnomalyVFM.outputs`` runs one forward pass per view
and averages the logits, each view's maps first turned back onto the image. Every view is an element of the square's
symmetry group (rotations by quarter turns, optionally after a left-right mirror), so any set is exact on square
inputs, which is what ``predict`` feeds the model (it tiles or resizes to a square).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["IDENTITY", "View", "TEST_VIEWS", "apply_view", "undo_view"]


@dataclass(frozen=True)
class View:
    """Mirror left-right (``mirror``), then rotate by ``turns`` quarter turns (counter-clockwise)."""

    mirror: bool = False
    turns: int = 0


IDENTITY = View()
TEST_VIEWS: dict[str, tuple[View, ...]] = {
    "single": (IDENTITY,),  # one pass
    "mirror": (IDENTITY, View(mirror=True)),  # the image and its left-right mirror
    "flips": (IDENTITY, View(mirror=True), View(mirror=True, turns=2), View(turns=2)),  # + up-down mirror, 180° turn
    "turns": tuple(View(turns=t) for t in range(4)),  # the four quarter turns
    "diagonals": (IDENTITY, View(mirror=True, turns=1), View(turns=2), View(mirror=True, turns=3)),  # + the mirrors
    # in the two diagonals, and the half turn
    "d4": tuple(View(m, t) for m in (False, True) for t in range(4)),  # all 8 symmetries of the square
}


def _turn(x: torch.Tensor, turns: int) -> torch.Tensor:
    """``torch.rot90(x, turns, (-2, -1))`` from flips and a transpose, which ONNX export supports."""
    turns %= 4
    if turns == 1:
        return x.transpose(-2, -1).flip(-2)
    if turns == 2:
        return x.flip(-2).flip(-1)
    return x.transpose(-2, -1).flip(-1) if turns == 3 else x


def apply_view(x: torch.Tensor, view: View) -> torch.Tensor:
    """``x`` (…, H, W) seen through ``view``."""
    return _turn(x.flip(-1) if view.mirror else x, view.turns)


def undo_view(x: torch.Tensor, view: View) -> torch.Tensor:
    """A map computed on the viewed image, turned back onto the image: the inverse of ``apply_view``."""
    x = _turn(x, -view.turns)
    return x.flip(-1) if view.mirror else x

