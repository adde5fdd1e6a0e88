"""Feature-based domain adaptation from faces (FER) to generic images (IER), SPEC §3.

The public names are imported lazily (so that :mod:`emoadapt.adapt.config`, which the CLI reads to
build its flags, does not pull in torch)::

    AdaptConfig, adapt, build_start_model       the method (config, entry point, start model)
    make_discrepancy, DISCREPANCIES, MultiKernelMMD, LinearMMD, CORAL, NoDiscrepancy
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AdaptConfig": "config", "ConfigError": "config", "Protocol": "config",
    "adapt": "train", "build_start_model": "start",
    "CORAL": "coral", "LinearMMD": "mmd", "MultiKernelMMD": "mmd",
    "DISCREPANCIES": "losses", "NoDiscrepancy": "losses", "make_discrepancy": "losses",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
