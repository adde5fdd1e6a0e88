"""Checkpoints in safetensors, written atomically, with the full config beside the tensors.

A *training checkpoint* (``last.safetensors``) holds model tensors (``model.*``), optimizer tensors
(``optim.<param index>.<name>``) and, in the safetensors metadata, a JSON ``state`` with the epoch,
the optimizer's non-tensor state, the run config and the metric history. A *weights file* holds
only the model tensors plus its model config in the metadata; that is what ships."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

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
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if not prefix:
        return tensors
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def save_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        state: dict, extra_tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Everything needed to resume: model, optimizer tensors and a JSON ``state``; ``extra_tensors``
    (a weight average ``ema.*``, helper modules ``helper.*``) are stored beside them under their own
    names (not ``model.*`` or ``optim.*``)."""
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors.update({k: v.contiguous() for k, v in (extra_tensors or {}).items()})
    optim = optimizer.state_dict()
    plain_state: dict[str, dict] = {}
    for index, values in optim["state"].items():
        plain_state[str(index)] = {}
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{name}"] = value.contiguous()
            else:
                plain_state[str(index)][name] = value
    metadata = {"state": json.dumps(state), "optim_groups": json.dumps(optim["param_groups"]),
                "optim_plain": json.dumps(plain_state)}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model and optimizer from :func:`save_training_state`; returns the JSON ``state``,
    with the stored ``extra_tensors`` (every tensor not under ``model.`` or ``optim.``, full keys)
    under ``state["extra_tensors"]``."""
    meta = read_metadata(path)
    tensors = load_tensors(path)
    state = meta["state"]
    state["extra_tensors"] = {k: v for k, v in tensors.items() if not k.startswith(("model.", "optim."))}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optim_state: dict[int, dict] = {int(i): dict(v) for i, v in meta["optim_plain"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            optim_state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": optim_state, "param_groups": meta["optim_groups"]})
    return state
