"""The adaptation loss for one joint batch, and the registry of discrepancies D.

    L = CE(target, 4 IER classes) + α · CE(source faces, mapped classes) + λ(p) · Σ_layers D(f_S, f_T)

Each discrepancy is a small module ``forward(f_s (n_s, D), f_t (n_t, D)) -> scalar`` in its own file
(:mod:`emoadapt.adapt.mmd`, :mod:`emoadapt.adapt.coral`); :data:`DISCREPANCIES` names them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import AdaptConfig, ConfigError, lam_at
from .coral import CORAL
from .mmd import LinearMMD, MultiKernelMMD


class NoDiscrepancy(nn.Module):
    """The ablation baseline: always 0."""

    def forward(self, f_s, f_t):
        return f_s.new_zeros(())


DISCREPANCIES = {"mmd": MultiKernelMMD, "linear-mmd": LinearMMD, "coral": CORAL, "none": NoDiscrepancy}


def make_discrepancy(name: str) -> nn.Module:
    """``mmd`` (multi-kernel Gaussian, default), ``linear-mmd``, ``coral`` or ``none``."""
    try:
        return DISCREPANCIES[name]()
    except KeyError:
        raise ConfigError(f"unknown discrepancy {name!r}; choose from {', '.join(DISCREPANCIES)}") from None


def pooled(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) maps → (N, C) spatial means; (N, D) vectors as they are."""
    return features.mean(dim=(2, 3)) if features.ndim == 4 else features


def adaptation_loss(logits: torch.Tensor, features: list[torch.Tensor], y_t: torch.Tensor, y_s: torch.Tensor,
                    progress: float, cfg: AdaptConfig, discrepancy: nn.Module) -> tuple[torch.Tensor, int, int]:
    """L = CE(target) + α·CE(mapped source) + λ(progress)·Σ_layers D(f_S, f_T) for one joint batch.

    Args:
        logits: (n_t + n_s, 4), target rows first.
        features: per compared layer, (n_t + n_s, D) features in the same order.
        y_t: (n_t,) IER labels; y_s: (n_s,) IER labels, −1 for faces without an IER class.
    Returns:
        (loss, n_t, number of correct target predictions).
    """
    n = len(y_t)
    loss = F.cross_entropy(logits[:n], y_t, label_smoothing=cfg.label_smoothing)
    mapped = y_s >= 0
    if cfg.alpha > 0 and bool(mapped.any()):
        loss = loss + cfg.alpha * F.cross_entropy(logits[n:][mapped], y_s[mapped], label_smoothing=cfg.label_smoothing)
    if cfg.discrepancy != "none" and cfg.lam > 0:
        loss = loss + lam_at(progress, cfg) * sum(discrepancy(f[n:], f[:n]) for f in features)
    return loss, n, int((logits[:n].argmax(1) == y_t).sum())

