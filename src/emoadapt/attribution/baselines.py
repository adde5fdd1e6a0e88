"""Baselines: what absent pixels are replaced by (a name, a number or a tensor)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from .settings import BASELINES as NAMED_BASELINES


def resolve_baseline(baseline: Any, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The (C, H, W) baseline for input ``x`` (C, H, W) and its description.

    ``"zero"``: zeros (a black image); ``"mean"``: each channel's mean over the input;
    ``"blur"``: the input under a Gaussian blur with σ = max(H, W) / 10 px; a number: that
    constant; a tensor or array broadcastable to (C, H, W): itself.
    """
    if isinstance(baseline, str):
        if baseline == "zero":
            return torch.zeros_like(x), "zero"
        if baseline == "mean":
            return x.mean(dim=(1, 2), keepdim=True).expand_as(x).clone(), "mean"
        if baseline == "blur":
            sigma = max(x.shape[1:]) / 10
            return gaussian_blur(x, sigma), f"blur(sigma={sigma:.3g})"
        raise ValueError(f"baseline must be one of {NAMED_BASELINES}, a number or a tensor, got {baseline!r}")
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline)), f"constant({float(baseline):g})"
    tensor = torch.as_tensor(np.asarray(baseline) if not torch.is_tensor(baseline) else baseline)
    try:
        return tensor.to(x).expand_as(x).clone(), "tensor"
    except RuntimeError:
        raise ValueError(f"baseline of shape {tuple(tensor.shape)} does not broadcast to {tuple(x.shape)}") from None


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(C, H, W) → (C, H, W) separable Gaussian blur, edges replicated; ``sigma`` in pixels."""
    radius = max(1, math.ceil(3 * sigma))
    grid = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    kernel = (kernel / kernel.sum()).expand(x.shape[0], 1, 1, -1)
    h = F.pad(x[None], (radius, radius, 0, 0), mode="replicate")
    h = F.conv2d(h, kernel, groups=x.shape[0])
    h = F.pad(h, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(h, kernel.transpose(2, 3), groups=x.shape[0])[0]

