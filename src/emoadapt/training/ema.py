"""An exponential moving average (EMA) of a model's weights, kept beside the model being trained.

After every optimisation step ``average = d·average + (1 − d)·weights`` for every floating-point
tensor of the state dict (parameters and batch-norm running statistics alike; integer buffers are
copied). The decay ramps up as ``d_t = min(decay, (1 + t) / (10 + t))`` over the first updates
``t``, so the start weights do not linger in the average. Averaged weights generalise better than
the last step's on small data sets and give a less noisy best-epoch choice (Polyak & Juditsky
1992; used by timm's ``ModelEmaV2``).

The average lives as plain tensors; :meth:`WeightAverage.applied` swaps it into the model for
validation or saving and swaps the trained weights back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..errors import EmoadaptError


class WeightAverage:
    """EMA of ``model``'s state dict.

    Args:
        model: the network being trained (its current weights start the average).
        decay: d in (0, 1); 0.998 halves a step's weight after about 350 steps.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise EmoadaptError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay_now(self) -> float:
        """The decay used by the next update (ramped over the first updates)."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current weights into the average."""
        d = self.decay_now()
        for key, value in model.state_dict().items():
            average = self.tensors[key]
            if average.is_floating_point():
                average.mul_(d).add_(value.detach(), alpha=1 - d)
            else:
                average.copy_(value)
        self.updates += 1

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Inside the block ``model`` holds the averaged weights; the trained ones come back after."""
        trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.tensors)
        try:
            yield model
        finally:
            model.load_state_dict(trained)

    def load(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        """Restore an average saved with a training checkpoint."""
        missing = set(self.tensors) - set(tensors)
        if missing:
            raise KeyError(f"the saved EMA lacks {sorted(missing)[:3]}")
        self.tensors = {k: tensors[k].clone() for k in self.tensors}
        self.updates = int(updates)
