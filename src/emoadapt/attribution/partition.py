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


def _halves(box: tuple[int, int, int, int], axis: int) -> list[tuple[int, ...]]:
    """Split ``box`` at the middle of ``axis``; for an odd size the second half is 1 px larger."""
    top, left, bottom, right = box
    return _cut(box, axis, (top + bottom) // 2 if axis == 0 else (left + right) // 2)


def _cut(box: tuple[int, int, int, int], axis: int, at: int) -> list[tuple[int, ...]]:
    """The two halves of ``box`` cut at row (``axis`` 0) or column (1) ``at``."""
    top, left, bottom, right = box
    if axis == 0:
        return [(top, left, at, right), (at, left, bottom, right)]
    return [(top, left, bottom, at), (top, at, bottom, right)]


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
    return _build_tree(height, width, depth, lambda box, axis, level: _halves(box, axis))


def _build_tree(height: int, width: int, depth: int, split) -> Partition:
    """The tree to ``depth``, rows first and alternating (:func:`_split_axis`); ``split(box, axis,
    level)`` returns a node's two children."""
    if not 0 <= depth <= max_depth(height, width):
        raise ValueError(f"depth {depth} is not in 0..{max_depth(height, width)} for a {height}x{width} input")
    levels = [np.array([[0, 0, height, width]], dtype=np.int64)]
    axes = []
    for level in range(depth):
        parents = levels[-1]
        axis = np.array([_split_axis(b - t, r - l, level) for t, l, b, r in parents], dtype=np.int8)
        children = [half for box, a in zip(parents, axis)
                    for half in split(tuple(int(v) for v in box), int(a), level)]
        axes.append(axis)
        levels.append(np.array(children, dtype=np.int64))
    return Partition(height, width, depth, tuple(levels), tuple(axes))


#: Where a content-following split may cut a node's side: between these fractions of it.
CUT_RANGE = (0.3, 0.7)
#: Sides shorter than this are halved at the middle (too few lines to choose a cut from).
MIN_SEARCH_SIDE = 8


def content_partition(image: np.ndarray, depth: int) -> Partition:
    """A partition tree that follows the image: each node is split along the same axis as in
    :func:`build_partition`, but at the line (within :data:`CUT_RANGE` of its side) that makes the
    two halves most uniform in colour (smallest summed squared deviation from each half's mean
    colour, found exactly with prefix sums) — so cuts fall on edges between objects. Of equally
    good cuts the one nearest the middle wins, so a flat image gets the grid's tree.

    Args:
        image: (C, H, W) float pixels (any range).
        depth: as in :func:`build_partition` (≤ :func:`max_depth`).
    Returns:
        A :class:`Partition` of rectangles, like the grid's; the same image gives the same tree.
    """
    _, height, width = image.shape
    pixels = np.asarray(image, dtype=np.float64)
    return _build_tree(height, width, depth, lambda box, axis, level: _cut(
        box, axis, _content_cut(pixels, box, axis, level, depth - level - 1)))


def _content_cut(pixels: np.ndarray, box: tuple[int, int, int, int], axis: int, level: int, below: int) -> int:
    """The cut line (absolute row or column) of ``box`` (at tree ``level``) along ``axis``;
    ``below``: levels still to split under the halves — each half keeps enough pixels for them."""
    top, left, bottom, right = box
    start, stop = (top, bottom) if axis == 0 else (left, right)
    middle = (start + stop) // 2
    side = stop - start
    if side < MIN_SEARCH_SIDE:
        return middle
    cuts = np.arange(start + int(np.ceil(CUT_RANGE[0] * side)), start + int(CUT_RANGE[1] * side) + 1)
    cuts = np.array([c for c in cuts if all(_max_depth(b - t, r - l, (level + 1) % 2) >= below
                                            for t, l, b, r in _cut(box, axis, int(c)))], dtype=np.int64)
    if not len(cuts):
        return middle
    region = pixels[:, top:bottom, left:right]
    # per line: the sum of its pixels (L, C) and of their squares (L,); each line has `count` pixels
    sums = region.sum(axis=2 if axis == 0 else 1).T
    squares = (region ** 2).sum(axis=(0, 2) if axis == 0 else (0, 1))
    count = region.shape[2] if axis == 0 else region.shape[1]
    cs, cq = np.cumsum(sums, axis=0), np.cumsum(squares)
    first = cuts - start  # lines in the first half
    s1, s2 = cs[first - 1], cs[-1] - cs[first - 1]
    sse = cq[-1] - (s1 ** 2).sum(1) / (first * count) - (s2 ** 2).sum(1) / ((side - first) * count)
    best = np.flatnonzero(sse <= sse.min() + 1e-9 * max(float(cq[-1]), 1.0))  # equal up to rounding
    return int(cuts[best[np.argmin(np.abs(cuts[best] - middle))]])  # of equal ones, the nearest the middle


def box_masks(boxes: np.ndarray, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(M, 4) boxes → (M, 1, H, W) bool masks, True inside each box."""
    b = torch.as_tensor(boxes, device=device)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows[None] >= b[:, :1]) & (rows[None] < b[:, 2:3])
    in_cols = (cols[None] >= b[:, 1:2]) & (cols[None] < b[:, 3:4])
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]

