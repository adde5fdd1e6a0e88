"""The authors' original DnCShap recursion, quirks included (``variant="reference"``; docs/dncshap.md §5)."""

from __future__ import annotations

import numpy as np

from .partition import Partition


def plan_reference(part: Partition) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (M, 4) and ``keep`` flags (M,) of every evaluation, in order: x, baseline, then the
    children of each level, each child shown as the slab of the *whole image* between its bounds
    along the split axis (the mask is not restricted to the region being split)."""
    full, empty = part.levels[0][0], np.zeros(4, dtype=np.int64)
    boxes = [np.stack([full, empty])]
    for axes, children in zip(part.axes, part.levels[1:]):
        slabs = children.copy()
        rows = np.repeat(axes, 2) == 0
        slabs[rows, 1], slabs[rows, 3] = 0, part.width
        slabs[~rows, 0], slabs[~rows, 2] = 0, part.height
        boxes.append(slabs)
    boxes = np.concatenate(boxes)
    return boxes, np.ones(len(boxes), dtype=bool)


def scores_reference(u: np.ndarray, depth: int) -> np.ndarray:
    """Leaf scores of the original recursion from the values of :func:`_plan_reference`.

    Per node with passed-down (p0, p12) and children values p1, p2:
    φ(A) = ½(p1 − p0) + ½(p12 − p2); φ(B) = ½(p2 − p0) + ½(p12 − p2) (p2 where p1 is meant);
    child A receives (p0 + p2, p1), child B (p0 + p1, p2) (context values passed as sums).
    """
    p12, p0 = u[:1], u[1:2]
    scores, offset = p12 - p0, 2
    for level in range(depth):
        current = u[offset:offset + 2 ** (level + 1)]
        offset += len(current)
        p1, p2 = current[0::2], current[1::2]
        scores = np.stack([0.5 * (p1 - p0) + 0.5 * (p12 - p2), 0.5 * (p2 - p0) + 0.5 * (p12 - p2)], 1).reshape(-1)
        p0 = np.stack([p0 + p2, p0 + p1], axis=1).reshape(-1)
        p12 = current
    return scores

