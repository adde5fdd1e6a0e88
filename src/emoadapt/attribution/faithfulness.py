"""Faithfulness of an attribution map: deletion and insertion curves (Petsiuk et al., RISE, 2018).

Pixels are ranked by their attribution, highest first. **Deletion** replaces the top fraction of
pixels by the baseline and follows the target's probability as the fraction grows from 0 to 1: a
faithful map makes it fall fast (low area under the curve). **Insertion** starts from the
baseline and reveals the top fraction of the input: a faithful map makes it rise fast (high area).
Both are measured at ``steps + 1`` equally spaced fractions; the areas use the trapezoid rule on
fractions in [0, 1], so they are in probability units.

>>> curves = deletion_insertion(model, image, explanation.map, explanation.target)
>>> curves.deletion_auc, curves.insertion_auc
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._base import BatchFunction
from .baselines import resolve_baseline


@dataclass
class Curves:
    """Deletion and insertion curves of one map.

    Attributes:
        fractions: (S + 1,) fraction of pixels deleted / inserted, 0 … 1.
        deletion: (S + 1,) probability of the target with the top fraction replaced by the baseline.
        insertion: (S + 1,) probability of the target with only the top fraction shown.
        evaluations: model evaluations spent (2 (S + 1)).
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    evaluations: int

    @property
    def deletion_auc(self) -> float:
        """Area under the deletion curve (lower is more faithful)."""
        return float(np.trapezoid(self.deletion, self.fractions))

    @property
    def insertion_auc(self) -> float:
        """Area under the insertion curve (higher is more faithful)."""
        return float(np.trapezoid(self.insertion, self.fractions))


def pixel_order(attribution: np.ndarray, seed: int = 0) -> np.ndarray:
    """(H·W,) flat pixel indices, highest attribution first; ties (a region's pixels share one
    value) are broken by a fixed random permutation, so no corner of a region goes first."""
    flat = np.asarray(attribution, dtype=np.float64).reshape(-1)
    tie_break = np.random.default_rng(seed).permutation(flat.size)
    return np.lexsort((tie_break, -flat))


def deletion_insertion(forward: Any, image: torch.Tensor, attribution: np.ndarray, target: int, *,
                       baseline: Any = "zero", steps: int = 20, batch_size: int = 64,
                       output: str = "auto") -> Curves:
    """Deletion and insertion curves of ``attribution`` (H, W) for ``image`` (C, H, W).

    Args:
        forward: the model (an ``nn.Module``, an onnxruntime session or a callable; see
            :class:`~emoadapt.attribution.BatchFunction`).
        target: class whose probability is followed.
        baseline: what deleted (and not yet inserted) pixels become (see
            :func:`~emoadapt.attribution.resolve_baseline`); use the explanation's own baseline.
        steps: number of equal fractions after 0 (``steps + 1`` points per curve).
    """
    x = torch.as_tensor(image).float()
    if x.ndim != 3 or tuple(np.shape(attribution)) != tuple(x.shape[1:]):
        raise ValueError(f"expected an image (C, H, W) and a map (H, W) of the same size, got "
                         f"{tuple(x.shape)} and {tuple(np.shape(attribution))}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    base, _ = resolve_baseline(baseline, x)
    function = BatchFunction(forward, output=output)
    order = torch.as_tensor(pixel_order(attribution))
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    rank = rank.reshape(x.shape[1:])  # rank of each pixel, 0 = most important
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = torch.as_tensor(np.round(fractions * order.numel()).astype(np.int64))
    probs = []
    for start in range(0, 2 * len(counts), batch_size):
        chunk = torch.arange(start, min(start + batch_size, 2 * len(counts)))
        top = rank[None] < counts[chunk % len(counts), None, None]  # (B, H, W): the top fraction
        deleting = (chunk < len(counts))[:, None, None]
        show_input = torch.where(deleting, ~top, top)[:, None]
        probs.append(function(torch.where(show_input, x[None], base[None]))[:, target])
    values = np.concatenate(probs)
    return Curves(fractions, values[:len(counts)], values[len(counts):], function.evaluations)
