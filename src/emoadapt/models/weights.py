"""Weights files: safetensors tensors plus JSON metadata (the model config, classes, metrics).

A *weights file* holds the model tensors and, in the safetensors metadata, ``model_config`` (what
:func:`emoadapt.models.registry.build_from_config` needs) and ``extra`` (classes, metrics…); that
is what ships. Training checkpoints (:mod:`emoadapt.training.checkpoint`) use the same readers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..fileio import atomic_path


def save_weights(path: str | Path, model: torch.nn.Module, model_config: dict, extra: dict | None = None,
                 dtype: torch.dtype | None = None) -> None:
    """Model tensors only (optionally cast to ``dtype``, e.g. fp16 to halve the file)."""
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
               for k, v in model.state_dict().items()}
    metadata = {"model_config": json.dumps(model_config), "extra": json.dumps(extra or {})}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a safetensors file (``model_config``, ``extra``, ``state``…)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    parsed = {}
    for key, value in raw.items():
        try:
            parsed[key] = json.loads(value)
        except ValueError as exc:  # a user's file with hand-written or cut metadata: one line, not a traceback
            raise CheckpointError(f"cannot read {path}: its metadata field {key!r} is not valid JSON ({exc})") from None
    for key in ("model_config", "extra"):
        if key in parsed and not isinstance(parsed[key], dict):
            raise CheckpointError(f"cannot read {path}: its metadata field {key!r} is not a JSON object")
    return parsed


def load_tensors(path: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (those under ``prefix``, with it removed)."""
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if not prefix:
        return tensors
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise :class:`CheckpointError` unless the file's sha256 is ``expected``."""
    actual = sha256(path)
    if actual != expected:
        raise CheckpointError(f"{path} is not the file the registry ships (sha256 {actual[:12]}…, expected "
                              f"{expected[:12]}…); reinstall emoadapt or pass the file as a path")
