"""Batch augmentation on tensors (no torchvision). Every random draw comes from the
``torch.Generator`` passed in, so a run is reproducible and resumable."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def augment_batch(images: torch.Tensor, generator: torch.Generator, *, flip: bool = True,
                  max_rotate_deg: float = 10.0, max_shift: float = 0.1, scale: tuple[float, float] = (0.9, 1.1),
                  erase_prob: float = 0.25, brightness: float = 0.2) -> torch.Tensor:
    """Random affine (rotation, shift, zoom, horizontal flip), brightness/contrast jitter and
    random erasing, applied per image.

    Args:
        images: (N, C, H, W) float in [0, 1].
        generator: source of randomness.
        max_shift: largest translation as a fraction of the image side.
    Returns:
        (N, C, H, W) float in [0, 1].
    """
    n = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (high - low) + low

    angle = uniform(-max_rotate_deg, max_rotate_deg) * math.pi / 180
    zoom = uniform(*scale)
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    tx, ty = uniform(-max_shift, max_shift) * 2, uniform(-max_shift, max_shift) * 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * mirror, -sin, tx], 1), torch.stack([sin * mirror, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    gain = uniform(1 - brightness, 1 + brightness).view(n, 1, 1, 1)
    bias = uniform(-brightness / 2, brightness / 2).view(n, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * gain + mean + bias).clamp_(0, 1)

    if erase_prob > 0:
        h, w = images.shape[2:]
        erase = torch.rand(n, generator=generator) < erase_prob
        eh = (uniform(0.1, 0.4) * h).long()
        ew = (uniform(0.1, 0.4) * w).long()
        y0 = (torch.rand(n, generator=generator) * (h - eh)).long()
        x0 = (torch.rand(n, generator=generator) * (w - ew)).long()
        fill = torch.rand(n, generator=generator)
        rows = torch.arange(h).view(1, h, 1)
        cols = torch.arange(w).view(1, 1, w)
        box = ((rows >= y0.view(n, 1, 1)) & (rows < (y0 + eh).view(n, 1, 1))
               & (cols >= x0.view(n, 1, 1)) & (cols < (x0 + ew).view(n, 1, 1)) & erase.view(n, 1, 1))
        out = torch.where(box.unsqueeze(1), fill.view(n, 1, 1, 1), out)
    return out
