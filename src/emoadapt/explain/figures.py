"""Figures of explanations (matplotlib, Agg canvas, no pyplot state; files written atomically).

As in the paper: keep the map values above the 70th percentile of |φ|, positive part only, drawn
with the 'seismic' colormap (symmetric about 0, so kept values are red) at alpha 0.4 over the
image. Pixels that are not kept are left transparent so the image shows through unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..fileio import atomic_path
from ._base import Explanation


def _as_picture(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) in [0, 1] → (H, W) grey or (H, W, 3) RGB float array for imshow."""
    array = image.detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
    array = array[0] if array.ndim == 4 else array
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def kept_values(values: np.ndarray, percentile: float = 70) -> np.ma.MaskedArray:
    """``values`` with everything masked except positive entries ≥ the percentile of |values|."""
    threshold = np.percentile(np.abs(values), percentile)
    return np.ma.masked_where(~((values >= threshold) & (values > 0)), values)


def _draw(ax: Axes, picture: np.ndarray, explanation: Explanation, title: str, percentile: float,
          alpha: float, cmap: str) -> None:
    if picture.shape[:2] != explanation.map.shape:
        raise ValueError(f"image is {picture.shape[:2]} but the explanation map is {explanation.map.shape}")
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    scale = float(np.abs(explanation.map).max()) or 1.0
    ax.imshow(kept_values(explanation.map, percentile), cmap=cmap, vmin=-scale, vmax=scale, alpha=alpha,
              interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def _title(explanation: Explanation) -> str:
    name = explanation.target_name if explanation.target_name is not None else f"class {explanation.target}"
    prefix = f"{explanation.tap}: " if explanation.tap else ""
    return f"{prefix}{name} p={explanation.probability:.2f} (T={explanation.depth})"


def _save(fig: Figure, path: str | Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return Path(path)


def save_overlay(image: torch.Tensor | np.ndarray, explanation: Explanation, path: str | Path, *,
                 percentile: float = 70, alpha: float = 0.4, cmap: str = "seismic") -> Path:
    """Write a PNG of ``image`` (C, H, W) in [0, 1] with the kept part of ``explanation.map`` over it."""
    picture = _as_picture(image)
    fig = Figure(figsize=(4, 4 * picture.shape[0] / picture.shape[1]))
    _draw(fig.add_subplot(1, 1, 1), picture, explanation, _title(explanation), percentile, alpha, cmap)
    return _save(fig, path)


def save_layer_grid(image: torch.Tensor | np.ndarray, explanations_by_tap: Mapping[str, Explanation],
                    path: str | Path, *, percentile: float = 70, alpha: float = 0.4, cmap: str = "seismic",
                    columns: int = 4) -> Path:
    """Write a PNG grid: the input, then one overlay panel per tap (in the mapping's order)."""
    picture = _as_picture(image)
    count = len(explanations_by_tap) + 1
    rows, cols = -(-count // columns), min(count, columns)
    fig = Figure(figsize=(2.6 * cols, 2.8 * rows))
    ax = fig.add_subplot(rows, cols, 1)
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title("input", fontsize=9)
    ax.axis("off")
    for index, (tap, explanation) in enumerate(explanations_by_tap.items(), start=2):
        title = f"{tap} (T={explanation.depth})"
        _draw(fig.add_subplot(rows, cols, index), picture, explanation, title, percentile, alpha, cmap)
    return _save(fig, path)
