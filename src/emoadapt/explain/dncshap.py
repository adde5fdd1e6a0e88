"""DnCShap: divide-and-conquer Shapley values over a binary partition of the image (SPEC §4).

The image is split recursively into two halves along alternating axes (rows first) to depth T,
giving 2**T rectangular regions. At every split the two halves get their exact two-player
Shapley value; the split values are pushed down the tree so that the leaf scores add up exactly
to v(x) − v(baseline). The formulas, the choice of context, the cost and the differences from
the authors' original recursion (``variant="reference"``) are in ``docs/dncshap.md``.

Cost: ``2 ** (T + 1)`` model evaluations for both variants — v(x), v(baseline) and two per
internal node; the other two values each split needs are reused from the level above. With a
budget (``max_evals``) the clean variant splits only the regions whose scores are largest in
magnitude until the budget is spent (:func:`plan_budgeted_round`): the scores of the regions it
ends with still add up to v(x) − v(baseline), and a budget of ``2 ** (T + 1)`` gives the full tree.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ._base import Explainer, Explanation, paint

VARIANTS = ("clean", "reference")
CONTEXTS = ("present", "absent")
NAMED_BASELINES = ("zero", "mean", "blur")

#: Below this total |ψ| (probability units) of two siblings, the residual of their parent is
#: split equally between them instead of in proportion to |ψ| (float32 outputs carry ~1e-7 noise).
TIE_TOLERANCE = 1e-6


# --- the partition tree ---------------------------------------------------------------------

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


# --- baselines ------------------------------------------------------------------------------

def resolve_baseline(baseline: Any, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The (C, H, W) baseline for input ``x`` (C, H, W) and its description.

    ``"zero"``: zeros (a black image); ``"mean"``: each channel's mean over the input;
    ``"blur"``: the input under a Gaussian blur with σ = max(H, W) / 10 px; a number: that
    constant; a tensor or array broadcastable to (C, H, W): itself.
    """
    if isinstance(baseline, str):
        if baseline == "zero":
            return torch.zeros_like(x), "zero"
        if baseline == "mean":
            return x.mean(dim=(1, 2), keepdim=True).expand_as(x).clone(), "mean"
        if baseline == "blur":
            sigma = max(x.shape[1:]) / 10
            return gaussian_blur(x, sigma), f"blur(sigma={sigma:.3g})"
        raise ValueError(f"baseline must be one of {NAMED_BASELINES}, a number or a tensor, got {baseline!r}")
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline)), f"constant({float(baseline):g})"
    tensor = torch.as_tensor(np.asarray(baseline) if not torch.is_tensor(baseline) else baseline)
    try:
        return tensor.to(x).expand_as(x).clone(), "tensor"
    except RuntimeError:
        raise ValueError(f"baseline of shape {tuple(tensor.shape)} does not broadcast to {tuple(x.shape)}") from None


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(C, H, W) → (C, H, W) separable Gaussian blur, edges replicated; ``sigma`` in pixels."""
    radius = max(1, math.ceil(3 * sigma))
    grid = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    kernel = (kernel / kernel.sum()).expand(x.shape[0], 1, 1, -1)
    h = F.pad(x[None], (radius, radius, 0, 0), mode="replicate")
    h = F.conv2d(h, kernel, groups=x.shape[0])
    h = F.pad(h, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(h, kernel.transpose(2, 3), groups=x.shape[0])[0]


# --- the evaluation plan --------------------------------------------------------------------

def _box_masks(boxes: np.ndarray, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(M, 4) boxes → (M, 1, H, W) bool masks, True inside each box."""
    b = torch.as_tensor(boxes, device=device)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows[None] >= b[:, :1]) & (rows[None] < b[:, 2:3])
    in_cols = (cols[None] >= b[:, 1:2]) & (cols[None] < b[:, 3:4])
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _plan_clean(part: Partition, context: str) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (M, 4) and keep flags (M,) of every evaluation, in order: x, baseline, then the
    children of each level. ``keep`` True: the box shows x, the rest the baseline; False: the
    box shows the baseline, the rest x."""
    full, empty = part.levels[0][0], np.zeros(4, dtype=np.int64)
    boxes, keep = [np.stack([full, empty])], [np.array([True, True])]
    for level, children in enumerate(part.levels[1:]):
        if level == 0 or context == "absent":
            boxes.append(children)  # v(child ∪ ∅)
            keep.append(np.ones(len(children), dtype=bool))
        else:
            boxes.append(children[np.arange(len(children)) ^ 1])  # v(x without the sibling)
            keep.append(np.zeros(len(children), dtype=bool))
    return np.concatenate(boxes), np.concatenate(keep)


def _plan_reference(part: Partition) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`_plan_clean` for the original recursion: each child is shown as the slab of the
    *whole image* between its bounds along the split axis (the mask is not restricted to the
    region being split)."""
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


# --- the arithmetic -------------------------------------------------------------------------

def _split_clean(u_a: np.ndarray, u_b: np.ndarray, u_empty: np.ndarray, u_full: np.ndarray,
                 alloc: np.ndarray) -> np.ndarray:
    """Split each parent's allocation between its children (all arrays (P,); returns (2P,)).

    ψ is the two-player Shapley value in the parent's game u(S) = v(S ∪ context); the residual
    ``alloc − (u_full − u_empty)`` (zero at the root) is shared in proportion to |ψ|, equally
    when both |ψ| are below :data:`TIE_TOLERANCE`. The children's allocations sum to ``alloc``.
    """
    delta = u_full - u_empty
    psi_a = 0.5 * (u_a - u_empty) + 0.5 * (u_full - u_b)
    psi_b = delta - psi_a  # = ½(u_b − u_empty) + ½(u_full − u_a)
    residual = alloc - delta
    total = np.abs(psi_a) + np.abs(psi_b)
    tie = total <= TIE_TOLERANCE
    share_a = np.where(tie, 0.5, np.abs(psi_a) / np.where(tie, 1.0, total))
    a = psi_a + residual * share_a
    return np.stack([a, alloc - a], axis=1).reshape(-1)


def scores_clean(u: np.ndarray, depth: int, context: str) -> np.ndarray:
    """Leaf scores (2**depth,) from the values ``u`` (2**(depth+1),) of :func:`_plan_clean`."""
    v_full, v_empty = u[:1], u[1:2]
    alloc, previous, offset = v_full - v_empty, v_full, 2
    for level in range(depth):
        current = u[offset:offset + 2 ** (level + 1)]
        offset += len(current)
        if level == 0:
            u_empty, u_full = v_empty, v_full
        elif context == "absent":  # context ∅: u(∅) = v(∅), u(node) = v(node)
            u_empty, u_full = v_empty, previous
        else:  # context = x outside the node: u(∅) = v(x without node), u(node) = v(x)
            u_empty, u_full = previous[np.arange(len(previous)) ^ 1], v_full
        alloc = _split_clean(current[0::2], current[1::2], u_empty, u_full, alloc)
        previous = current
    return alloc


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


# --- the budgeted refinement -----------------------------------------------------------------

def plan_budgeted_round(levels: np.ndarray, scores: np.ndarray, depth: int, budget: int,
                        max_splits: int) -> np.ndarray:
    """Which current regions to split next: indices into the (R,) arrays, largest |score| first.

    A round splits the better half of the splittable regions (at least one), so that the budget
    follows the scores as they sharpen, in about log2(splits) rounds rather than one per split.

    Args:
        levels: (R,) tree level of each current region; a region at ``depth`` is not split.
        scores: (R,) their current scores.
        budget: model evaluations left (a split costs two).
        max_splits: most splits in one round (half a batch, so a round is one model call).
    """
    splittable = np.flatnonzero(levels < depth)
    count = min((len(splittable) + 1) // 2, budget // 2, max_splits)
    order = splittable[np.argsort(-np.abs(scores[splittable]), kind="stable")]
    return order[:count]


def _split_round(node_levels: np.ndarray, known: np.ndarray, child_values: np.ndarray, alloc: np.ndarray,
                 v_full: float, v_empty: float, context: str) -> np.ndarray:
    """Children's allocations (2P,) for P nodes split in one round.

    ``known`` (P,) is the one value each node's game takes from the level above (unused at the
    root), ``child_values`` (2P,) what this round evaluated for the children (first, second,
    first, …). The game of each node follows the table of docs/dncshap.md §4: the root plays v
    itself; context "present": u(∅) = v(x without node) = ``known`` (the value stored at the
    node's sibling), u(node) = v(x); context "absent": u(∅) = v(∅), u(node) = ``known`` (the value
    stored at the node)."""
    root = node_levels == 0
    if context == "present":
        u_empty = np.where(root, v_empty, known)
        u_full = np.full(len(alloc), v_full)
    else:
        u_empty = np.full(len(alloc), v_empty)
        u_full = np.where(root, v_full, known)
    return _split_clean(child_values[0::2], child_values[1::2], u_empty, u_full, alloc)


# --- the explainer --------------------------------------------------------------------------

class DnCShap(Explainer):
    """Divide-and-conquer Shapley values of image regions.

    Args:
        forward: an ``nn.Module``, an onnxruntime ``InferenceSession`` or a callable
            (N, C, H, W) → (N, K) (see :class:`~emoadapt.explain._base.BatchFunction`).
        depth: partition depth T (2**T regions); capped at :func:`max_depth` of the input.
        baseline: ``"zero"``, ``"mean"``, ``"blur"``, a number or a tensor (see
            :func:`resolve_baseline`): what absent pixels are replaced by.
        batch_size: images per model call.
        variant: ``"clean"`` (efficient, see docs/dncshap.md) or ``"reference"`` (the original
            recursion, quirks included).
        context: clean variant only: what the rest of the image is while a node is split —
            ``"present"`` (default: the original pixels) or ``"absent"`` (the baseline).
        output: ``"auto"``, ``"probs"`` or ``"logits"``: what ``forward`` returns.
        class_names: optional names of the outputs.
        max_evals: clean variant only: a budget of model evaluations (at least 2). Below the full
            tree's ``2 ** (T + 1)``, regions are split largest |score| first, in rounds of up to
            ``batch_size // 2`` splits, until the budget or depth T is reached; the result has
            regions of several sizes. ``None`` (default): the full tree.
    """

    def __init__(self, forward: Any, *, depth: int = 6, baseline: Any = "zero", batch_size: int = 64,
                 variant: str = "clean", context: str = "present", output: str = "auto",
                 class_names: Sequence[str] | None = None, max_evals: int | None = None):
        super().__init__(forward, batch_size=batch_size, output=output, class_names=class_names)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        if depth < 0:
            raise ValueError(f"depth must be at least 0, got {depth}")
        if max_evals is not None and (max_evals < 2 or variant != "clean"):
            raise ValueError(f"max_evals must be at least 2 and needs variant='clean', got {max_evals} "
                             f"with variant={variant!r}")
        self.depth, self.baseline, self.variant, self.context = depth, baseline, variant, context
        self.max_evals = max_evals

    def attribute(self, inputs: torch.Tensor, target: int | None = None) -> Explanation:
        """Explain one input (C, H, W) or (1, C, H, W) for class ``target`` (default: argmax f(x))."""
        start, before = time.perf_counter(), self.function.evaluations
        x = _single(inputs)
        baseline, description = resolve_baseline(self.baseline, x)
        depth = min(self.depth, max_depth(*x.shape[1:]))
        part = build_partition(x.shape[1], x.shape[2], depth)
        if self.max_evals is not None and self.max_evals < 2 ** (depth + 1):
            values, boxes, u, target, probability, reached = self._refine_budgeted(x, baseline, part, target)
        else:
            if self.variant == "clean":
                plan_boxes, keep = _plan_clean(part, self.context)
            else:
                plan_boxes, keep = _plan_reference(part)
            u, target, probability = self._evaluate(x, baseline, plan_boxes, keep, target)
            values = scores_clean(u, depth, self.context) if self.variant == "clean" else scores_reference(u, depth)
            boxes, reached = part.leaves.copy(), depth
        return Explanation(
            values=values, boxes=boxes, map=paint(values, boxes, *x.shape[1:]), target=target,
            target_name=self.class_name(target), probability=probability, base_value=float(u[1]),
            full_value=float(u[0]), evaluations=self.function.evaluations - before,
            seconds=time.perf_counter() - start, depth=reached, requested_depth=self.depth,
            variant=self.variant, context=self.context if self.variant == "clean" else "reference",
            baseline=description, max_evals=self.max_evals)

    def _refine_budgeted(self, x: torch.Tensor, baseline: torch.Tensor, part: Partition,
                         target: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, float, int]:
        """Split the largest-|score| regions of ``part`` round by round within ``max_evals``.

        Returns the scores (R,) and boxes (R, 4) of the regions it ends with (in the order of the
        full tree's leaves), the values ``[v(x), v(baseline)]``, the target, its probability and
        the deepest level reached.
        """
        root = np.stack([part.levels[0][0], np.zeros(4, dtype=np.int64)])
        u, target, probability = self._evaluate(x, baseline, root, np.array([True, True]), target)
        v_full, v_empty = float(u[0]), float(u[1])
        levels, index, alloc = np.array([0]), np.array([0]), u[:1] - u[1:]
        stored: dict[tuple[int, int], float] = {}  # (level, index) -> the value its parent's split evaluated
        budget = self.max_evals - 2
        while len(chosen := plan_budgeted_round(levels, alloc, part.depth, budget, max(1, self.batch_size // 2))):
            child_levels = np.repeat(levels[chosen] + 1, 2)
            child_index = np.stack([2 * index[chosen], 2 * index[chosen] + 1], axis=1).reshape(-1)
            # "present": x without the sibling; "absent": the child alone (the same image at the root)
            shown = child_index ^ 1 if self.context == "present" else child_index
            eval_boxes = np.stack([part.levels[d][i] for d, i in zip(child_levels, shown)])
            keep = np.full(len(eval_boxes), self.context != "present")
            child_values, _, _ = self._evaluate(x, baseline, eval_boxes, keep, target)
            holder = index[chosen] ^ 1 if self.context == "present" else index[chosen]  # sibling or node itself
            known = np.array([stored.get((d, i), np.nan) for d, i in zip(levels[chosen], holder)])
            child_alloc = _split_round(levels[chosen], known, child_values, alloc[chosen], v_full, v_empty,
                                       self.context)
            stored.update(zip(zip(child_levels.tolist(), child_index.tolist()), child_values.tolist()))
            unsplit = np.ones(len(levels), dtype=bool)
            unsplit[chosen] = False
            levels = np.concatenate([levels[unsplit], child_levels])
            index = np.concatenate([index[unsplit], child_index])
            alloc = np.concatenate([alloc[unsplit], child_alloc])
            budget -= len(child_values)
        order = np.argsort(index << (part.depth - levels), kind="stable")  # position among the full tree's leaves
        boxes = np.stack([part.levels[d][i] for d, i in zip(levels[order], index[order])])
        return alloc[order], boxes, u, target, probability, int(levels.max())

    def _evaluate(self, x: torch.Tensor, baseline: torch.Tensor, boxes: np.ndarray, keep: np.ndarray,
                  target: int | None) -> tuple[np.ndarray, int, float]:
        """Values (M,) of the target class on every planned masked input, in batches.

        The first planned input is x itself: its probabilities fix the target when it is None.
        """
        values = []
        for start in range(0, len(boxes), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            mask = _box_masks(boxes[chunk], x.shape[1], x.shape[2], x.device)
            mask = mask == torch.as_tensor(keep[chunk], device=x.device)[:, None, None, None]
            probs = self.function(torch.where(mask, x[None], baseline[None]))
            if target is None:
                target = int(np.argmax(probs[0]))
            elif not 0 <= target < probs.shape[1]:
                raise ValueError(f"target {target} is not a class index of a model with {probs.shape[1]} outputs")
            values.append(probs[:, target])
        u = np.concatenate(values)
        return u, target, float(u[0])


def _single(inputs: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(C, H, W) or (1, C, H, W) → (C, H, W) float32 tensor."""
    x = torch.as_tensor(inputs)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"expected one image (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    return x.float()
