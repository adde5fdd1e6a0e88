"""Helpers for the speed benchmarks' results files (issue #32): the spread of repeated runs and the
name and weights sha256 of the model measured. No torch import."""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from benchmarks.lib.provenance import REPO

WEIGHTS = REPO / "src" / "emoadapt" / "weights"
DEFAULT_MODEL = "emoadapt-ier"  # emoadapt.models.registry.DEFAULT_MODEL (not imported: that pulls in torch)


def spread(values: Sequence[float]) -> dict[str, Any]:
    """{median, min, max, n, values} of repeated measurements."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": values}


def model_identity(model: str | None) -> tuple[str, str | None]:
    """(name, weights sha256) of a shipped model name, a weights file, or None (the default model)."""
    name = model or DEFAULT_MODEL
    path = Path(name)
    if path.suffix in (".safetensors", ".onnx") and path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return str(path), digest
    registry = WEIGHTS / "registry.json"
    if registry.is_file():
        entry = json.loads(registry.read_text()).get(name)
        if entry:
            return name, entry.get("sha256")
    return name, None
