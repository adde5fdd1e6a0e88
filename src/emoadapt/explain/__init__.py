"""Explanations of emotion predictions: DnCShap at pixel level and layer by layer (SPEC §4).

>>> explainer = DnCShap(model, depth=6, baseline="zero", class_names=classes)
>>> explanation = explainer.attribute(image)          # image (C, H, W) in [0, 1]
>>> explanation.values.sum()                          # == v(x) - v(baseline)
>>> save_overlay(image, explanation, "overlay.png")
"""

from ._base import BatchFunction, Explainer, Explanation
from .dncshap import DnCShap, Partition, build_partition, max_depth, resolve_baseline
from .figures import save_layer_grid, save_overlay
from .layerwise import LAYER_TAPS, LayerDnCShap, explain_layers, layer_taps

__all__ = [
    "BatchFunction",
    "DnCShap",
    "Explainer",
    "Explanation",
    "LAYER_TAPS",
    "LayerDnCShap",
    "Partition",
    "build_partition",
    "explain_layers",
    "layer_taps",
    "max_depth",
    "resolve_baseline",
    "save_layer_grid",
    "save_overlay",
]
