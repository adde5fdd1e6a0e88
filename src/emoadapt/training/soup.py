"""Weight averaging across runs ("model soups", Wortsman et al. 2022).

Several networks fine-tuned from the *same* start weights (here: one FER checkpoint, different
seeds) often lie in one basin of the loss, so the average of their weights is itself a good network
— one network, with the cost of one at inference — and often better than each of them. A
*greedy* soup adds the runs one by one, best validation accuracy first, and keeps a run only if the
soup's validation accuracy does not drop; the test split is never looked at.

Averaged batch-norm running statistics are not the statistics of the averaged network, so
:func:`refresh_batch_norm` re-estimates them from training images before the soup is scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.transforms import uint8_to_tensor


def average_state_dicts(state_dicts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors of same-shaped state dicts (integer
    buffers, e.g. batch-norm step counts, are taken from the first)."""
    if not state_dicts:
        raise ValueError("nothing to average")
    keys = state_dicts[0].keys()
    for other in state_dicts[1:]:
        if other.keys() != keys or any(other[k].shape != state_dicts[0][k].shape for k in keys):
            raise ValueError("the networks to average differ in their tensors: same architecture needed")
    return {k: (torch.stack([sd[k].float() for sd in state_dicts]).mean(0).to(state_dicts[0][k].dtype)
                if state_dicts[0][k].is_floating_point() else state_dicts[0][k].clone()) for k in keys}


@torch.no_grad()
def refresh_batch_norm(model: nn.Module, images: np.ndarray, batch_size: int = 64, flip: bool = True) -> nn.Module:
    """Re-estimate every batch-norm layer's running mean and variance as the exact average over
    ``images`` (N, H, W, C) uint8 (and their mirror images when ``flip``); weights are unchanged.
    Returns ``model`` in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    model.train()
    for start in range(0, len(images), batch_size):
        x = uint8_to_tensor(images[start:start + batch_size])
        model(x)
        if flip:
            model(x.flip(3))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


def greedy_soup(state_dicts: Sequence[dict[str, torch.Tensor]], val_scores: Sequence[float],
                score: Callable[[list[dict[str, torch.Tensor]]], float]) -> tuple[list[int], float]:
    """Greedy soup: visit the runs by decreasing ``val_scores``; keep a run when ``score`` of the
    candidate members (the validation accuracy of their averaged weights, e.g. after a batch-norm
    refresh: the caller decides) does not drop.

    Returns (indices of the kept runs in the order added, the soup's validation score)."""
    order = sorted(range(len(state_dicts)), key=lambda i: -val_scores[i])
    kept = [order[0]]
    best = score([state_dicts[order[0]]])
    for i in order[1:]:
        trial = score([state_dicts[j] for j in kept + [i]])
        if trial >= best:
            kept, best = kept + [i], trial
    return kept, best
