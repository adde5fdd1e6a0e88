"""DnCShap: divide-and-conquer Shapley values over a binary partition of the image (SPEC §4).

The image is split recursively into two halves along alternating axes (rows first) to depth T,
giving 2**T rectangular regions. At every split the two halves get their two-player Shapley value
in the node's game — with the rest of the image present, absent, or (default, Owen-style) the
average of both — and the split values are pushed down the tree so that the leaf scores add up
exactly to v(x) − v(baseline). Formulas, axioms, cost and the differences from the authors'
original recursion (``variant="reference"``) are in ``docs/dncshap.md``.

Cost of the whole tree: 2**(T+1) model evaluations with one context, 2**(T+2) − 4 with both
(:func:`~emoadapt.attribution.settings.tree_evaluations`). With a budget (``max_evals``) regions are
split largest |score| first until the budget is spent; the scores still add up exactly.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from . import settings
from ._base import Explainer, Explanation, one_image, paint
from ._reference import plan_reference, scores_reference
from .baselines import NAMED_BASELINES, gaussian_blur, resolve_baseline
from .partition import Partition, box_masks, build_partition, content_partition, max_depth

__all__ = ["DnCShap", "GameValues", "NAMED_BASELINES", "Partition", "TIE_TOLERANCE", "build_partition",
           "content_partition", "gaussian_blur", "in_leaf_order", "max_depth", "plan_budgeted_round",
           "replace_by_children", "resolve_baseline", "split_node"]

VARIANTS, CONTEXTS = settings.VARIANTS, settings.CONTEXTS

#: Below this (probability units) a marginal contribution counts as zero: float32 model outputs
#: carry ~1e-7 noise.
TIE_TOLERANCE = 1e-6


# --- the arithmetic of one split -------------------------------------------------------------

def split_node(games: Sequence[np.ndarray], alloc: np.ndarray, weight_games: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Split each parent's allocation between its two children (P parents → (2P,) allocations).

    ``games`` are (4, P) arrays ``(u(∅), u(A), u(B), u(A∪B))``, one per context; the children's
    value is their two-player Shapley value averaged over the contexts,
    ψ(A) = mean_c ½[u_c(A) − u_c(∅)] + ½[u_c(A∪B) − u_c(B)], and ψ(A) + ψ(B) = Δ = mean_c [u_c(A∪B) − u_c(∅)].
    The residual ``alloc − Δ`` (zero at the root) is shared in proportion to each child's total
    absolute marginal contribution w over ``games`` and ``weight_games`` (extra contexts evaluated
    only to share it): a child that changes no evaluated value gets none of it. Equal shares when
    both w are below :data:`TIE_TOLERANCE`. The children's allocations add up to ``alloc``.
    """
    u = np.stack(games)  # (K, 4, P)
    psi_a = (0.5 * (u[:, 1] - u[:, 0]) + 0.5 * (u[:, 3] - u[:, 2])).mean(0)
    delta = (u[:, 3] - u[:, 0]).mean(0)
    w = np.stack(list(games) + list(weight_games))
    w_a = (np.abs(w[:, 1] - w[:, 0]) + np.abs(w[:, 3] - w[:, 2])).sum(0)
    w_b = (np.abs(w[:, 2] - w[:, 0]) + np.abs(w[:, 3] - w[:, 1])).sum(0)
    w_a, w_b = np.where(w_a > TIE_TOLERANCE, w_a, 0.0), np.where(w_b > TIE_TOLERANCE, w_b, 0.0)
    tie = w_a + w_b == 0
    share_a = np.where(tie, 0.5, w_a / np.where(tie, 1.0, w_a + w_b))
    a = psi_a + (alloc - delta) * share_a
    return np.stack([a, alloc - a], axis=1).reshape(-1)


def plan_budgeted_round(levels: np.ndarray, scores: np.ndarray, depth: int, budget: int, max_splits: int,
                        cost: int = 2) -> np.ndarray:
    """Which current regions to split next: indices into the (R,) arrays, largest |score| first.

    A round splits the better half of the splittable regions (at least one), so that the budget
    follows the scores as they sharpen, in about log2(splits) rounds. ``cost``: evaluations per
    split; ``budget``: evaluations left; ``max_splits``: most splits in one round.
    """
    splittable = np.flatnonzero(levels < depth)
    count = min((len(splittable) + 1) // 2, budget // cost, max_splits)
    order = splittable[np.argsort(-np.abs(scores[splittable]), kind="stable")]
    return order[:count]


def replace_by_children(levels: np.ndarray, index: np.ndarray, alloc: np.ndarray, chosen: np.ndarray,
                        child_alloc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The current regions — (R,) tree levels, indices within the level and allocations — after the
    regions ``chosen`` were split; ``child_alloc`` (2 · len(chosen),) holds their children's allocations."""
    keep = np.ones(len(levels), dtype=bool)
    keep[chosen] = False
    lv, ix = levels[chosen], index[chosen]
    return (np.concatenate([levels[keep], np.repeat(lv + 1, 2)]),
            np.concatenate([index[keep], np.stack([2 * ix, 2 * ix + 1], axis=1).reshape(-1)]),
            np.concatenate([alloc[keep], child_alloc]))


def in_leaf_order(part: Partition, levels: np.ndarray, index: np.ndarray, alloc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The regions' scores (R,) and boxes (R, 4), ordered by their position among the full tree's leaves."""
    order = np.argsort(index << (part.depth - levels), kind="stable")
    return alloc[order], np.stack([part.levels[d][i] for d, i in zip(levels[order], index[order])])


# --- the explainer --------------------------------------------------------------------------

class DnCShap(Explainer):
    """Divide-and-conquer Shapley values of image regions.

    Args:
        forward: an ``nn.Module``, an onnxruntime ``InferenceSession`` or a callable
            (N, C, H, W) → (N, K) (see :class:`~emoadapt.attribution._base.BatchFunction`).
        depth: partition depth T (2**T regions); capped at :func:`max_depth` of the input.
        baseline: ``"zero"``, ``"mean"``, ``"blur"``, a number or a tensor (see
            :func:`resolve_baseline`): what absent pixels are replaced by.
        batch_size: images per model call.
        variant: ``"clean"`` (efficient, see docs/dncshap.md) or ``"reference"`` (the original
            recursion, quirks included).
        context: clean variant only: the game in which a node is split — ``"both"`` (default: the
            average of the two below, Owen-style), ``"present"`` (the rest of the image shown) or
            ``"absent"`` (the rest at the baseline).
        output: ``"auto"``, ``"probs"`` or ``"logits"``: what ``forward`` returns.
        class_names: optional names of the outputs.
        max_evals: clean variant only: a budget of model evaluations (at least 2; ``None``: the
            whole tree). Regions are split largest |score| first, in rounds of up to
            ``batch_size`` evaluations, until the budget or depth T is reached; the result then has
            regions of several sizes.
        regions: ``"grid"`` (default: every node halved at its middle) or ``"content"`` (each node
            cut where its halves are most uniform in colour, :func:`~emoadapt.attribution.partition.content_partition`).
    """

    def __init__(self, forward: Any, *, depth: int = settings.DEPTH, baseline: Any = settings.BASELINE,
                 batch_size: int = settings.BATCH_SIZE, variant: str = settings.VARIANT,
                 context: str = settings.CONTEXT, output: str = "auto", class_names: Sequence[str] | None = None,
                 max_evals: int | None = None, regions: str = settings.REGION):
        super().__init__(forward, batch_size=settings.check_batch_size(batch_size), output=output,
                         class_names=class_names)
        self.variant = settings.check_choice("variant", variant, VARIANTS)
        self.context = settings.check_choice("context", context, CONTEXTS)
        self.depth = settings.check_depth(depth)
        self.max_evals = settings.check_max_evals(max_evals)
        if self.max_evals is not None and variant != "clean":
            raise ValueError(f"max_evals needs variant='clean', got variant={variant!r}")
        self.baseline = baseline
        self.regions = settings.check_choice("regions", regions, settings.REGIONS)

    def attribute(self, inputs: torch.Tensor, target: int | str | None = None) -> Explanation:
        """Explain one input (C, H, W) or (1, C, H, W) for class ``target`` (index or class name;
        default: argmax f(x))."""
        start, before = time.perf_counter(), self.function.evaluations
        x = one_image(inputs)
        target = settings.check_target(target, self.class_names)
        baseline, description = resolve_baseline(self.baseline, x)
        depth = min(self.depth, max_depth(*x.shape[1:]))
        if self.regions == "content":
            part = content_partition(x.detach().cpu().numpy(), depth)
        else:
            part = build_partition(x.shape[1], x.shape[2], depth)
        if self.variant == "clean":
            values, boxes, u, target, reached = self.refine(x, baseline, part, target)
        else:
            boxes, keep = plan_reference(part)
            u, target = self.evaluate_boxes(x, baseline, boxes, keep, target)
            values, boxes, reached = scores_reference(u, depth), part.leaves.copy(), depth
        return Explanation(
            values=values, boxes=boxes, map=paint(values, boxes, *x.shape[1:]), target=target,
            target_name=self.class_name(target), probability=float(u[0]), base_value=float(u[1]),
            full_value=float(u[0]), evaluations=self.function.evaluations - before,
            seconds=time.perf_counter() - start, depth=reached, requested_depth=self.depth,
            variant=self.variant, context=self.context if self.variant == "clean" else "reference",
            baseline=description, max_evals=self.max_evals)

    def refine(self, x: torch.Tensor, baseline: torch.Tensor, part: Partition, target: int | None):
        """Split the tree level by level (whole tree) or largest |score| first (under a budget).
        The one extension point of DnCShap (with :meth:`fill_values` and :meth:`evaluate_boxes`,
        which it builds on): a variant that refines the tree differently overrides it (e.g.
        ``benchmarks/explainers.py``'s exact-Owen top levels).

        Returns the scores (R,) and boxes (R, 4) of the regions it ends with (in the order of the
        full tree's leaves), ``[v(x), v(baseline)]``, the target and the deepest level reached."""
        root = np.stack([part.levels[0][0], np.zeros(4, dtype=np.int64)])
        u, target = self.evaluate_boxes(x, baseline, root, np.array([True, True]), target)  # v(x), v(∅)
        values = GameValues(part, u[0], u[1])
        contexts = ("present", "absent") if self.context == "both" else (self.context,)
        budget = np.inf
        if self.max_evals is not None and self.max_evals < settings.tree_evaluations(part.depth, self.context):
            budget = self.max_evals - 2
        levels, index, alloc = np.array([0]), np.array([0]), u[:1] - u[1:]
        while True:
            if budget == np.inf:
                chosen = np.flatnonzero(levels < part.depth)
            else:
                cost = 2 if levels.max() == 0 else 2 * len(contexts)
                chosen = plan_budgeted_round(levels, alloc, part.depth, int(budget), max(1, self.batch_size // cost),
                                             cost)
            if not len(chosen):
                break
            lv, ix, parent_alloc = levels[chosen], index[chosen], alloc[chosen]
            budget -= self.fill_values(values, values.needed(lv, ix, contexts), x, baseline, target)
            games = [values.game(c, lv, ix) for c in contexts]
            extra = [np.full((4, len(lv)), 0.0)]
            if len(contexts) == 1:  # a split silent in its context: share its residual by the other one
                extra = self._silent_splits(values, games[0], parent_alloc, lv, ix, contexts[0], x, baseline,
                                            target, budget)
                budget -= extra.pop()
            levels, index, alloc = replace_by_children(levels, index, alloc, chosen,
                                                       split_node(games, parent_alloc, extra))
        scores, boxes = in_leaf_order(part, levels, index, alloc)
        return scores, boxes, u, target, int(levels.max())

    def _silent_splits(self, values: "GameValues", game: np.ndarray, alloc: np.ndarray, lv: np.ndarray,
                       ix: np.ndarray, context: str, x, baseline, target, budget) -> list:
        """The other context's games for the splits whose children change no value of their own
        game while a residual is left to share (else zeros); the last item is the evaluations spent."""
        w = np.abs(game[1] - game[0]) + np.abs(game[3] - game[2]) + np.abs(game[2] - game[0]) + np.abs(game[3] - game[1])
        residual = alloc - (game[3] - game[0])
        silent = (w <= 2 * TIE_TOLERANCE) & (np.abs(residual) > TIE_TOLERANCE)
        other = "absent" if context == "present" else "present"
        extra = np.zeros((4, len(lv)))
        spent = 0
        if silent.any():
            needed = values.needed(lv[silent], ix[silent], (other,))
            if len(needed) <= budget:
                spent = self.fill_values(values, needed, x, baseline, target)
                extra[:, silent] = values.game(other, lv[silent], ix[silent])
        return [extra, spent]

    def fill_values(self, values: "GameValues", needed: list[tuple[str, int, int]], x, baseline, target) -> int:
        """Evaluate the ``needed`` (kind, level, index) values and store them; returns the count."""
        if needed:
            boxes = np.stack([values.part.levels[d][i] for _, d, i in needed])
            keep = np.array([kind == "alone" for kind, _, _ in needed])
            u, _ = self.evaluate_boxes(x, baseline, boxes, keep, target)
            values.store(needed, u)
        return len(needed)

    def evaluate_boxes(self, x: torch.Tensor, baseline: torch.Tensor, boxes: np.ndarray, keep: np.ndarray,
                  target: int | None) -> tuple[np.ndarray, int]:
        """Values (M,) of the target class on masked inputs (``keep`` True: the box shows x and the
        rest the baseline; False: the reverse), in batches. When ``target`` is None the first
        input (x itself) fixes it."""
        out = []
        for start in range(0, len(boxes), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            mask = box_masks(boxes[chunk], x.shape[1], x.shape[2], x.device)
            mask = mask == torch.as_tensor(keep[chunk], device=x.device)[:, None, None, None]
            probs = self.function(torch.where(mask, x[None], baseline[None]))
            if target is None:
                target = int(np.argmax(probs[0]))
            settings.check_target(target, outputs=probs.shape[1])
            out.append(probs[:, target])
        return np.concatenate(out), target


class GameValues:
    """The values of the game known so far, per tree node: ``alone[d][i]`` = v(only region (d, i)
    shown), ``without[d][i]`` = v(x with region (d, i) at the baseline); NaN while unknown.

    A node's game in context "absent" is (v(∅), alone[A], alone[B], alone[node]); in "present"
    (without[node], without[B], without[A], v(x)). At level 1, without[i] is alone[i ^ 1]."""

    def __init__(self, part: Partition, v_full: float, v_empty: float):
        self.part = part
        self.v_full, self.v_empty = float(v_full), float(v_empty)
        self.alone = [np.full(2 ** d, np.nan) for d in range(part.depth + 1)]
        self.without = [np.full(2 ** d, np.nan) for d in range(part.depth + 1)]
        self.alone[0][0], self.without[0][0] = v_full, v_empty

    def _canonical(self, kind: str, d: int, i: int) -> tuple[str, int, int]:
        return ("alone", 1, i ^ 1) if kind == "without" and d == 1 else (kind, d, i)

    def needed(self, lv: np.ndarray, ix: np.ndarray, contexts: Sequence[str]) -> list[tuple[str, int, int]]:
        """The unknown values that splitting nodes (lv, ix) in ``contexts`` needs, each once."""
        wanted: dict[tuple[str, int, int], None] = {}
        for d, i in zip(lv.tolist(), ix.tolist()):
            for context in contexts:
                kind = "alone" if context == "absent" or d == 0 else "without"
                for key in ((kind, d + 1, 2 * i), (kind, d + 1, 2 * i + 1), (kind, d, i)):
                    key = self._canonical(*key)
                    if np.isnan(getattr(self, key[0])[key[1]][key[2]]):
                        wanted[key] = None
        return list(wanted)

    def store(self, keys: list[tuple[str, int, int]], u: np.ndarray) -> None:
        for (kind, d, i), value in zip(keys, u):
            getattr(self, kind)[d][i] = value
            if kind == "alone" and d == 1:
                self.without[1][i ^ 1] = value

    def game(self, context: str, lv: np.ndarray, ix: np.ndarray) -> np.ndarray:
        """(4, P) values (u(∅), u(A), u(B), u(A∪B)) of nodes (lv, ix) in ``context``."""
        a = np.array([self.alone[d + 1][2 * i] if context == "absent" else self.without[d + 1][2 * i + 1]
                      for d, i in zip(lv, ix)])
        b = np.array([self.alone[d + 1][2 * i + 1] if context == "absent" else self.without[d + 1][2 * i]
                      for d, i in zip(lv, ix)])
        if context == "absent":
            empty = np.full(len(lv), self.v_empty)
            full = np.array([self.alone[d][i] for d, i in zip(lv, ix)])
        else:
            empty = np.array([self.without[d][i] for d, i in zip(lv, ix)])
            full = np.full(len(lv), self.v_full)
        return np.stack([empty, a, b, full])
