"""Test-time views: symmetries of the square input, optionally with a half-patch shift, whose outputs are mapped back
and averaged.

``AnomalyVFMConfig.test_views`` names a set in ``TEST_VIEWS``; ``AnomalyVFM.outputs`` runs one forward pass per view
and averages the logits, each view's maps first turned back onto the image. A view is an element of the square's
symmetry group (rotations by quarter turns, optionally after a left-right mirror), exact on square inputs, which is
what ``predict`` feeds the model (it tiles or resizes to a square), optionally preceded by a shift of the content by
whole cells of the decoder's map (half a patch each at the default upsampling), which moves the patch grid across the
content; a shift is not exact: the edge it uncovers is mirrored in, and its map cells are filled from their neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["IDENTITY", "View", "TEST_VIEWS", "apply_view", "undo_view"]


@dataclass(frozen=True)
class View:
    """Shift the content down and right by ``shift`` (rows, columns) map cells, mirror left-right (``mirror``), then
    rotate by ``turns`` quarter turns (counter-clockwise)."""

    mirror: bool = False
    turns: int = 0
    shift: tuple[int, int] = (0, 0)


IDENTITY = View()
TEST_VIEWS: dict[str, tuple[View, ...]] = {
    "single": (IDENTITY,),  # one pass
    "mirror": (IDENTITY, View(mirror=True)),  # the image and its left-right mirror
    "flips": (IDENTITY, View(mirror=True), View(mirror=True, turns=2), View(turns=2)),  # + up-down mirror, 180° turn
    "turns": tuple(View(turns=t) for t in range(4)),  # the four quarter turns
    "diagonals": (IDENTITY, View(mirror=True, turns=1), View(turns=2), View(mirror=True, turns=3)),  # + the mirrors
    # in the two diagonals, and the half turn
    "d4": tuple(View(m, t) for m in (False, True) for t in range(4)),  # all 8 symmetries of the square
    "shifted-flips": (IDENTITY, View(mirror=True, shift=(0, 1)), View(mirror=True, turns=2, shift=(1, 0)),
                      View(turns=2, shift=(1, 1))),  # flips, its other views at the grid's other half-patch phases
}


def _turn(x: torch.Tensor, turns: int) -> torch.Tensor:
    """``torch.rot90(x, turns, (-2, -1))`` from flips and a transpose, which ONNX export supports."""
    turns %= 4
    if turns == 1:
        return x.transpose(-2, -1).flip(-2)
    if turns == 2:
        return x.flip(-2).flip(-1)
    return x.transpose(-2, -1).flip(-1) if turns == 3 else x


def _shift(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``x`` (B, C, H, W) with its content moved down by ``rows`` and right by ``cols``, the uncovered edge mirrored."""
    if not rows and not cols:
        return x
    height, width = x.shape[-2:]
    return F.pad(x, (cols, 0, rows, 0), mode="reflect")[..., :height, :width]


def _unshift(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The inverse of ``_shift`` on a map; the cells shifted out are filled from their neighbours."""
    if not rows and not cols:
        return x
    return F.pad(x[..., rows:, cols:], (0, cols, 0, rows), mode="replicate")


def apply_view(x: torch.Tensor, view: View, cell: int = 1) -> torch.Tensor:
    """``x`` (…, H, W) seen through ``view``; ``cell``: pixels of ``x`` per map cell (for the shift)."""
    x = _shift(x, view.shift[0] * cell, view.shift[1] * cell)
    return _turn(x.flip(-1) if view.mirror else x, view.turns)


def undo_view(x: torch.Tensor, view: View) -> torch.Tensor:
    """A map computed on the viewed image, turned back onto the image: the inverse of ``apply_view`` (up to the edge
    a shift uncovers)."""
    x = _turn(x, -view.turns)
    return _unshift(x.flip(-1) if view.mirror else x, *view.shift)

