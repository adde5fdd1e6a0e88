"""Layer-wise DnCShap (SPEC §4): DnCShap on an intermediate activation of an EmoNet.

The rest of the network after the tap is the model: the tap's (C, h, w) feature map is
partitioned spatially exactly as an image would be, an absent region is set to the layer
baseline in every channel, and ``model.forward_from(tap, …)`` gives the logits. Efficiency holds
in the tap's value function: the region scores add up to v_tap(a) − v_tap(baseline), where ``a``
is the unedited activation. The region boxes are then scaled to image pixels (nearest: each
cell covers ``H/h × W/w`` image pixels, boundaries rounded down), which gives the map.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ._base import Explanation, eval_mode, one_image, paint
from . import settings
from .dncshap import DnCShap

#: EmoNet's taps with a spatial feature map (the ones layer-wise DnCShap can partition).
LAYER_TAPS = ("b1", "b2", "b3", "b4", "b5", "merged")


def layer_taps(model: torch.nn.Module) -> tuple[str, ...]:
    """The spatial taps of ``model`` (EmoNet: b1…b5, merged; MobileNetV2: s1…s5)."""
    return tuple(t for t in getattr(model, "taps", LAYER_TAPS) if t not in ("pre_logits", "logits"))


class _RestOfNetwork:
    """Callable activations (N, C, h, w) → logits (N, K): the model after ``tap``, given the
    earlier taps of the image being explained in ``earlier_taps`` (set before each explanation)."""

    def __init__(self, model: torch.nn.Module, tap: str):
        self.model, self.tap = model, tap
        self.earlier_taps: dict[str, torch.Tensor] = {}

    def __call__(self, activation: torch.Tensor) -> torch.Tensor:
        return self.model.forward_from(self.tap, activation, self.earlier_taps)


class LayerDnCShap(DnCShap):
    """DnCShap of the regions of one tap's feature map.

    Args:
        model: an EmoNet (anything with ``forward_taps`` and ``forward_from``).
        tap: one of :func:`layer_taps` of the model.
        depth: requested depth; capped so that every region keeps at least one cell of the tap
            (the effective depth is ``Explanation.depth``).
        baseline: ``"zero"`` (activation 0, what a ReLU outputs for "nothing"),
            ``"mean-activation"`` (each channel's spatial mean of the image's own activation), a
            number or a tensor broadcastable to the tap's (C, h, w).
        batch_size, variant, context, class_names: as for :class:`DnCShap`.

    ``Explanation.evaluations`` counts the DnCShap evaluations of the rest of the network plus
    the one forward pass that computes the activation.
    """

    def __init__(self, model: torch.nn.Module, tap: str, *, depth: int = settings.DEPTH, baseline: Any = "zero",
                 batch_size: int = settings.BATCH_SIZE, variant: str = settings.VARIANT,
                 context: str = settings.CONTEXT,
                 class_names: Sequence[str] | None = None):
        if tap not in layer_taps(model):
            raise ValueError(f"tap must be one of {layer_taps(model)}, got {tap!r}")
        if isinstance(baseline, str) and baseline not in settings.LAYER_BASELINES:
            raise ValueError(f"layer baseline must be 'zero', 'mean-activation', a number or a tensor, "
                             f"got {baseline!r}")
        super().__init__(_RestOfNetwork(model, tap), depth=depth,
                         baseline="mean" if baseline == "mean-activation" else baseline, batch_size=batch_size,
                         variant=variant, context=context, output="logits", class_names=class_names)
        self.model, self.tap, self.layer_baseline = model, tap, baseline

    def attribute(self, inputs: torch.Tensor, target: int | None = None) -> Explanation:
        """Explain one image (C, H, W) or (1, C, H, W) at the tap; the map is at image size."""
        start, before = time.perf_counter(), self.function.evaluations
        x = one_image(inputs)
        with eval_mode(self.model), torch.inference_mode():
            taps = self.model.forward_taps(x[None].to(_device(self.model)))
            self.function.evaluations += 1
            probs = torch.softmax(taps["logits"][0].double(), dim=0).cpu().numpy()
            target = int(np.argmax(probs)) if target is None else target
            self.function.forward.earlier_taps = taps
            result = super().attribute(taps[self.tap][0], target)
        height, width = x.shape[1:]
        cells = np.array([*result.map.shape, *result.map.shape])
        boxes = result.boxes * np.array([height, width, height, width]) // cells
        return dataclasses.replace(
            result, boxes=boxes, map=paint(result.values, boxes, height, width), probability=float(probs[target]),
            evaluations=self.function.evaluations - before, seconds=time.perf_counter() - start,
            baseline=self.layer_baseline if isinstance(self.layer_baseline, str) else result.baseline, tap=self.tap,
            grid=(int(result.map.shape[0]), int(result.map.shape[1])))


def _device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def explain_layers(model: torch.nn.Module, image: torch.Tensor, taps: Sequence[str] | None = None, *,
                   depth: int = settings.DEPTH, target: int | None = None,
                   on_tap: Callable[[str, int, int], None] | None = None, **options: Any) -> dict[str, Explanation]:
    """Layer-wise DnCShap of ``image`` (C, H, W) at each tap, all for the same target class.

    ``options`` go to :class:`LayerDnCShap` (baseline, batch_size, variant, context, class_names);
    ``on_tap(tap, done, total)`` is called after each tap (progress).
    Returns ``{tap: Explanation}`` in the order of ``taps`` (default: every :func:`layer_taps`).
    """
    results: dict[str, Explanation] = {}
    taps = layer_taps(model) if taps is None else taps
    for index, tap in enumerate(taps, start=1):
        results[tap] = LayerDnCShap(model, tap, depth=depth, **options).attribute(image, target)
        target = results[tap].target
        if on_tap is not None:
            on_tap(tap, index, len(taps))
    return results
