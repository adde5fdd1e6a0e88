"""emoadapt: which emotion (happy, sad, hate, anger) does an image evoke, and why.

A facial-expression network adapted to generic images by feature-based domain adaptation, explained
by DnCShap. Public API (imported lazily, so ``emoadapt --help`` stays instant)::

    emoadapt.analyze(image)      -> {"emotion": {label: prob}, "dominant_emotion": label}
    emoadapt.top_emotion(image)  -> (label, prob)
    emoadapt.explain(image)      -> Explanation (DnCShap); a list/batch -> list of Explanations
                                    (the explainers themselves: the subpackage ``emoadapt.attribution``)
    emoadapt.Predictor(model)    -> batch prediction / explanation with one loaded model
    emoadapt.create_model(name), emoadapt.list_models(), emoadapt.load_model(path)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "analyze": "api", "top_emotion": "api", "explain": "api", "Predictor": "api", "to_pil": "api",
    "create_model": "models.registry", "list_models": "models.registry", "load_model": "models.registry",
    "decode_image": "data.decode", "open_dataset": "data",
    "EmoadaptError": "errors", "ImageDecodeError": "errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'emoadapt' has no attribute {name!r}")
