"""emoadapt: which emotion (happy, sad, hate, anger) does an image evoke, and why.

A facial-expression network adapted to generic images by feature-based domain adaptation, explained
by DnCShap. Public API (imported lazily, so ``emoadapt --help`` stays instant)::

    emoadapt.analyze(image)      -> {"emotion": {label: prob}, "dominant_emotion": label}
    emoadapt.top_emotion(image)  -> (label, prob)
    emoadapt.explain(image)      -> Explanation (DnCShap); a list/batch -> list of Explanations
    emoadapt.Predictor(model)    -> batch prediction / explanation with one loaded model
    emoadapt.create_model(name), emoadapt.list_models(), emoadapt.load_model(path)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "analyze": "api", "top_emotion": "api", "Predictor": "api", "to_pil": "api",
    "create_model": "models.registry", "list_models": "models.registry", "load_model": "models.registry",
    "decode_image": "data.decode", "open_dataset": "data",
    "EmoadaptError": "errors", "ImageDecodeError": "errors",
}

__all__ = sorted([*_LAZY, "explain"]) + ["__version__"]


class _ExplainEntry:
    """``emoadapt.explain``: the one-call function :func:`emoadapt.api.explain` that also carries the
    names of the subpackage ``emoadapt.explain`` (``emoadapt.explain.DnCShap``, ``.settings``, …).

    Importing a subpackage binds it as an attribute of its parent, which used to replace the
    function by the module (issue #17); :class:`_Package` wraps it in this entry instead, so the
    subpackage itself stays a plain module that never imports the API layer above it."""

    def __init__(self, package: types.ModuleType):
        object.__setattr__(self, "_package", package)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .api import explain

        return explain(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._package, name)

    def __setattr__(self, name: str, value: Any) -> None:  # ``import emoadapt.explain.x`` binds x here
        setattr(self._package, name, value)

    def __dir__(self) -> list[str]:
        return dir(self._package)

    def __repr__(self) -> str:
        return "<function emoadapt.explain (subpackage emoadapt.explain)>"


class _Package(types.ModuleType):
    """The ``emoadapt`` module: binding the subpackage ``explain`` binds :class:`_ExplainEntry`."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "explain" and isinstance(value, types.ModuleType):
            value = _ExplainEntry(value)
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    if name == "explain":  # importing the subpackage binds the entry through _Package.__setattr__
        importlib.import_module(".explain", __name__)
        return globals()["explain"]
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'emoadapt' has no attribute {name!r}")


sys.modules[__name__].__class__ = _Package
