"""The partition tree of DnCShap: an (H × W) input halved recursively, rows first, as explicit arrays
(docs/dncshap.md §2), and the masks of its boxes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch


@dataclass(frozen=True)
class Partition:
    """The region hierarchy of an (height × width) input at ``depth``, as explicit arrays.

    Attributes:
        levels: ``levels[d]`` is a (2**d, 4) int64 array of boxes (top, left, bottom, right);
            the children of node ``i`` at level ``d`` are nodes ``2i`` and ``2i + 1`` at ``d + 1``.
        axes: ``axes[d]`` is a (2**d,) int8 array: the axis each node of level ``d`` is split
            along (0 = rows, i.e. the height is divided; 1 = columns).
    """

    height: int
    width: int
    depth: int
    levels: tuple[np.ndarray, ...]
    axes: tuple[np.ndarray, ...]

    @property
    def leaves(self) -> np.ndarray:
        """(2**depth, 4) boxes of the finest regions."""
        return self.levels[-1]


def _split_axis(height: int, width: int, level: int) -> int:
    """Rows at even levels, columns at odd ones; a side of 1 px is not split, the other one is."""
    axis = level % 2
    size = height if axis == 0 else width
    return axis if size >= 2 else 1 - axis


def _halves(box: tuple[int, int, int, int], axis: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split ``box`` at the middle of ``axis``; for an odd size the second half is 1 px larger."""
    top, left, bottom, right = box
    if axis == 0:
        mid = (top + bottom) // 2
        return (top, left, mid, right), (mid, left, bottom, right)
    mid = (left + right) // 2
    return (top, left, bottom, mid), (top, mid, bottom, right)


@lru_cache(maxsize=None)
def _max_depth(height: int, width: int, level: int) -> int:
    if height * width == 1:
        return 0
    axis = _split_axis(height, width, level)
    first, second = _halves((0, 0, height, width), axis)
    sizes = [(b[2] - b[0], b[3] - b[1]) for b in (first, second)]
    return 1 + min(_max_depth(h, w, (level + 1) % 2) for h, w in sizes)


def max_depth(height: int, width: int) -> int:
    """Largest depth at which every region of an (height × width) input keeps at least one pixel."""
    return _max_depth(height, width, 0)


@lru_cache(maxsize=64)
def build_partition(height: int, width: int, depth: int) -> Partition:
    """The partition tree of an (height × width) input to ``depth`` (≤ :func:`max_depth`), cached."""
    if not 0 <= depth <= max_depth(height, width):
        raise ValueError(f"depth {depth} is not in 0..{max_depth(height, width)} for a {height}x{width} input")
    levels = [np.array([[0, 0, height, width]], dtype=np.int64)]
    axes = []
    for level in range(depth):
        parents = levels[-1]
        axis = np.array([_split_axis(b - t, r - l, level) for t, l, b, r in parents], dtype=np.int8)
        children = [half for box, a in zip(parents, axis) for half in _halves(tuple(box), int(a))]
        axes.append(axis)
        levels.append(np.array(children, dtype=np.int64))
    return Partition(height, width, depth, tuple(levels), tuple(axes))



def box_masks(boxes: np.ndarray, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(M, 4) boxes → (M, 1, H, W) bool masks, True inside each box."""
    b = torch.as_tensor(boxes, device=device)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows[None] >= b[:, :1]) & (rows[None] < b[:, 2:3])
    in_cols = (cols[None] >= b[:, 1:2]) & (cols[None] < b[:, 3:4])
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]

