"""Explanations of emotion predictions: DnCShap at pixel level and layer by layer (SPEC §4).

>>> explainer = DnCShap(model, depth=6, baseline="zero", class_names=classes)
>>> explanation = explainer.attribute(image)          # image (C, H, W) in [0, 1]
>>> explanation.values.sum()                          # == v(x) - v(baseline)
>>> save_overlay(image, explanation, "overlay.png")

The one-call API is the function :func:`emoadapt.explain` (:func:`emoadapt.api.explain`, a layer
above); this subpackage holds the explainers it runs and never imports that layer.
"""

import importlib
from typing import Any

#: public name -> submodule; imported on first use, so ``emoadapt.attribution.settings`` (and the CLI's
#: ``--help``) does not import torch.
_LAZY = {
    "BatchFunction": "_base", "Explainer": "_base", "Explanation": "_base", "paint": "_base",
    "DnCShap": "dncshap", "resolve_baseline": "baselines",
    "Partition": "partition", "build_partition": "partition", "content_partition": "partition",
    "max_depth": "partition",
    "save_layer_grid": "figures", "save_overlay": "figures", "deletion_insertion": "faithfulness",
    "LAYER_TAPS": "layerwise", "LayerDnCShap": "layerwise", "explain_layers": "layerwise", "layer_taps": "layerwise",
}

__all__ = [
    "BatchFunction",
    "DnCShap",
    "Explainer",
    "Explanation",
    "LAYER_TAPS",
    "LayerDnCShap",
    "Partition",
    "build_partition",
    "content_partition",
    "deletion_insertion",
    "explain_layers",
    "layer_taps",
    "max_depth",
    "paint",
    "resolve_baseline",
    "save_layer_grid",
    "save_overlay",
    "settings",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

