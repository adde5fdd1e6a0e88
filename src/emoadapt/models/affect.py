"""Affect heads (issue #23): valence, arousal and the 7-way emotion distribution of an image, read
from the features of the same forward pass that gives the four classes.

The heads live in a *sidecar* file next to a model's weights, ``<stem>.affect.safetensors``
(tensors + metadata: the head config, the sha256 of the weights file they were fitted on, their
validation metrics), so the four-class weights never change and a model without a sidecar works
as before (its outputs simply lack ``valence``, ``arousal`` and the distribution). A sidecar
fitted on other weights is ignored with a warning.

Features a head may read (:func:`model_features`, FusionNet only):
    ``fused``       (N, 2560) the standardised concatenation of both branches' pooled features
    ``pre_logits``  (N, 256)  the hidden layer before the four-class classifier

Outputs of :class:`AffectHeads` for features (N, D):
    ``valence``, ``arousal``  (N,) on Emotion6's 1–9 scale (1 unpleasant / calm, 9 pleasant / excited)
    ``dist``                  (N, 7) probabilities over :data:`DIST_NAMES` (the crowd vote classes)
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..fileio import atomic_path

#: Emotion6's vote classes, the order of ``dist`` (:data:`emoadapt.data.emotion6.VOTE_NAMES`).
DIST_NAMES: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")
SOURCES = ("fused", "pre_logits")
SUFFIX = ".affect.safetensors"
FORMAT = "emoadapt-affect-heads"


@dataclass(frozen=True)
class AffectConfig:
    """Rebuild information for :class:`AffectHeads`.

    Attributes:
        source: which features the heads read (``fused`` or ``pre_logits``).
        in_features: their width D.
        hidden: 0 for linear heads, else the width of one ReLU layer shared by the three outputs.
        names: the distribution's class names.
    """

    source: str = "pre_logits"
    in_features: int = 256
    hidden: int = 0
    names: tuple[str, ...] = field(default=DIST_NAMES)

    def to_dict(self) -> dict:
        return asdict(self)


class AffectHeads(nn.Module):
    """Features (N, D) → valence, arousal (N,) on 1–9 and a distribution (N, len(names))."""

    def __init__(self, config: AffectConfig):
        super().__init__()
        if config.source not in SOURCES:
            raise CheckpointError(f"affect heads read {', '.join(SOURCES)}, not {config.source!r}")
        self.config = config
        width = config.in_features
        self.trunk = nn.Sequential(nn.Linear(width, config.hidden), nn.ReLU()) if config.hidden else nn.Identity()
        out = config.hidden or width
        self.va = nn.Linear(out, 2)  # standardised valence, arousal
        self.dist = nn.Linear(out, len(config.names))
        self.register_buffer("input_mean", torch.zeros(width))
        self.register_buffer("input_std", torch.ones(width))
        self.register_buffer("va_mean", torch.full((2,), 5.0))
        self.register_buffer("va_std", torch.ones(2))

    def raw(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(standardised valence/arousal (N, 2), distribution logits (N, K)) — what training fits."""
        h = self.trunk((features - self.input_mean) / self.input_std)
        return self.va(h), self.dist(h)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        va, logits = self.raw(features)
        va = va * self.va_std + self.va_mean
        return {"valence": va[:, 0], "arousal": va[:, 1], "dist": logits.softmax(1)}


@torch.no_grad()
def model_features(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """One forward pass of a FusionNet on images ``x`` (N, 3, S, S) in [0, 1]:
    ``{"fused": (N, 2560), "pre_logits": (N, 256), "logits": (N, K)}`` (its ``forward_taps``)."""
    names = ("fused", "pre_logits", "logits")
    if not hasattr(model, "forward_taps") or not hasattr(model, "fuse"):
        raise CheckpointError(f"affect heads need a FusionNet, got {type(model).__name__}")
    out = model.forward_taps(x, names)
    return {name: out[name] for name in names}


# ----------------------------------------------------------------------------- sidecar files
def sidecar_path(weights: str | Path) -> Path:
    """``model.safetensors`` → ``model.affect.safetensors`` (same folder)."""
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".safetensors") + SUFFIX)


def save_affect(path: str | Path, heads: AffectHeads, base_sha256: str, extra: dict[str, Any] | None = None) -> Path:
    """Write the heads (float32) with their config, the sha256 of the weights they read and ``extra``."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().float().contiguous() for k, v in heads.state_dict().items()}
    # one metadata key: safetensors may write several in any order, and the same heads should give
    # the same bytes (and sha256) on every run
    metadata = {"emoadapt_affect": json.dumps({"format": FORMAT, "affect_config": heads.config.to_dict(),
                                               "base_sha256": base_sha256, "extra": extra or {}}, sort_keys=True)}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def load_affect(path: str | Path) -> tuple[AffectHeads, dict[str, Any]]:
    """Heads (eval mode) and the file's metadata (``base_sha256``, ``extra``)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = dict(handle.metadata() or {})
        tensors = load_file(str(path))
        meta = json.loads(raw.get("emoadapt_affect", "{}"))
    except (OSError, SafetensorError, ValueError) as exc:
        raise CheckpointError(f"cannot read affect heads {path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("affect_config"), dict):
        raise CheckpointError(f"{path} is not an emoadapt affect-heads file (format {FORMAT!r})")
    config = dict(meta["affect_config"])
    config["names"] = tuple(config.get("names", DIST_NAMES))
    try:
        heads = AffectHeads(AffectConfig(**config))
        heads.load_state_dict(tensors)
    except (TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the heads do not match their config ({exc})") from None
    heads.eval()
    return heads, {"base_sha256": meta.get("base_sha256", ""), "extra": meta.get("extra") or {}}


def find_affect(weights: str | Path, expected_sha256: str | None = None) -> AffectHeads | None:
    """The heads of the sidecar next to ``weights``, or ``None`` when there is none, or (with a
    warning) when it was fitted on other weights. ``expected_sha256``: the sidecar's own sha256
    (shipped presets), checked before loading."""
    from .weights import sha256, verify_sha256

    path = sidecar_path(weights)
    if not path.is_file():
        return None
    if expected_sha256:
        verify_sha256(path, expected_sha256)
    heads, meta = load_affect(path)
    if meta["base_sha256"] and meta["base_sha256"] != sha256(weights):
        warnings.warn(f"{path.name} was fitted on other weights than {Path(weights).name}; valence, arousal and "
                      "the emotion distribution are left out (re-fit: python benchmarks/affect_heads.py ship)",
                      stacklevel=2)
        return None
    return heads
