"""Figures of explanations (matplotlib, Agg canvas, no pyplot state; files written atomically).

Each region is painted with its **share of p(class)**, φ_region / p(class): red regions raise the
explained class's probability, blue ones lower it (a diverging colour map symmetric about 0, with a
colour bar in those units). As in the paper, only the regions with the largest |φ| are drawn (above
the 70th percentile of |φ|; now both signs), at alpha 0.5, so the image shows through elsewhere.
With ``picture=`` (the original image) the map is drawn over the whole image at its own aspect
ratio (:func:`emoadapt.data.transforms.square_to_image`); without it, over the model's square input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..data.transforms import square_to_image
from ..fileio import atomic_path
from ._base import Explanation

#: colour-bar label of every overlay
UNITS = "region's share of p(class)  (red: for, blue: against)"


def _as_picture(image: Any) -> np.ndarray:
    """(C, H, W) or (H, W) in [0, 1], a PIL image or a uint8 array (H, W[, 3]) → (H, W) grey or
    (H, W, 3) RGB float array in [0, 1] for imshow."""
    if hasattr(image, "convert"):  # a PIL image
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    array = image.detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array[0] if array.ndim == 4 else array
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def region_shares(explanation: Explanation, height: int, width: int) -> np.ndarray:
    """(height, width) float32 over the model input: each region's φ / p(class) on its pixels."""
    shares = np.zeros((height, width), dtype=np.float32)
    scale = explanation.probability if explanation.probability > 0 else 1.0
    for value, (top, left, bottom, right) in zip(explanation.values, explanation.boxes):
        shares[top:bottom, left:right] = value / scale
    return shares


def kept_values(values: np.ndarray, percentile: float = 70) -> np.ma.MaskedArray:
    """``values`` with everything masked except entries whose |value| is ≥ the percentile of the
    finite |values| (both signs) and non-zero; NaN (not analysed) is masked too."""
    finite = np.abs(values[np.isfinite(values)])
    threshold = np.percentile(finite, percentile) if finite.size else 0.0
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(values) & (np.abs(values) >= threshold) & (values != 0)
    return np.ma.masked_where(~keep, np.nan_to_num(values))


def _shares_over(picture: np.ndarray, explanation: Explanation, fit: str | None) -> np.ndarray:
    """The explanation's shares at the picture's size (``fit``: how the picture became the input)."""
    height, width = explanation.input_shape
    shares = region_shares(explanation, height, width)
    if fit is None:
        if picture.shape[:2] != (height, width):
            raise ValueError(f"image is {picture.shape[:2]} but the explanation's input is {(height, width)}")
        return shares
    return square_to_image(shares, fit, picture.shape[1], picture.shape[0])


def _draw(fig: Figure, ax: Axes, picture: np.ndarray, shares: np.ndarray, title: str, percentile: float,
          alpha: float, cmap: str, colorbar_label: str | None, orientation: str = "vertical") -> None:
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    scale = float(np.nanmax(np.abs(shares))) if np.isfinite(shares).any() else 0.0
    scale = scale or 1.0
    layer = ax.imshow(kept_values(shares, percentile), cmap=cmap, vmin=-scale, vmax=scale, alpha=alpha,
                      interpolation="nearest")
    if orientation == "horizontal":
        bar = fig.colorbar(layer, ax=ax, orientation="horizontal", fraction=0.06, pad=0.03, aspect=40)
    else:
        bar = fig.colorbar(layer, ax=ax, fraction=0.046, pad=0.03)
    bar.solids.set(alpha=1)
    bar.locator = MaxNLocator(5, symmetric=True)
    bar.update_ticks()
    if colorbar_label:
        bar.set_label(colorbar_label, fontsize=7)
    bar.ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def _title(explanation: Explanation) -> str:
    name = explanation.target_name if explanation.target_name is not None else f"class {explanation.target}"
    prefix = f"{explanation.tap}: " if explanation.tap else ""
    return (f"{prefix}{name}, p={explanation.probability:.2f} · depth {explanation.depth} · "
            f"{explanation.evaluations} evaluations")


def _save(fig: Figure, path: str | Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return Path(path)


def save_overlay(image: Any, explanation: Explanation, path: str | Path, *, picture: Any = None,
                 fit: str = "squash", percentile: float = 70, alpha: float = 0.5, cmap: str = "RdBu_r",
                 note: str | None = None, faces: Sequence[tuple[Sequence[int], str]] = ()) -> Path:
    """Write a PNG: the kept regions' shares of p(class) over the image, a colour bar and a title
    (class, probability, depth, evaluations). ``image`` is the model input (C, S, S) in [0, 1];
    ``picture`` (optional) the original image, drawn whole at its aspect ratio, the input having
    been made from it by ``fit`` (:data:`emoadapt.data.transforms.FITS`). ``note`` (optional): a
    line under the title, e.g. that the prediction is uncertain (:func:`emoadapt.results.overlay_note`).
    ``faces``: ``(box [x, y, w, h] in px of the drawn image, label)`` pairs drawn as outlined boxes."""
    shown = _as_picture(image if picture is None else picture)
    shares = _shares_over(shown, explanation, None if picture is None else fit)
    width = 5.0
    fig = Figure(figsize=(width, width * shown.shape[0] / shown.shape[1] + 1.1 + (0.3 if note else 0)))
    title = _title(explanation) + (f"\n{note}" if note else "")
    ax = fig.add_subplot(1, 1, 1)
    _draw(fig, ax, shown, shares, title, percentile, alpha, cmap, UNITS, orientation="horizontal")
    draw_face_boxes(ax, faces)
    return _save(fig, path)


def draw_face_boxes(ax: Any, faces: Sequence[tuple[Sequence[int], str]]) -> None:
    """Outline each face box ``[x, y, w, h]`` (px of the image shown on ``ax``) with its label above."""
    from matplotlib.patches import Rectangle

    for box, label in faces:
        x, y, w, h = box
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="#ffd000", linewidth=1.5))
        ax.text(x - 0.5, y - 1.5, label, color="black", fontsize=6, va="bottom",
                bbox={"facecolor": "#ffd000", "edgecolor": "none", "pad": 1})


def _layer_title(tap: str, explanation: Explanation) -> str:
    grid = f" ({explanation.grid[0]}×{explanation.grid[1]} cells)" if explanation.grid else ""
    return f"{tap}{grid} · depth {explanation.depth}"


def save_layer_grid(image: Any, explanations_by_tap: Mapping[str, Explanation], path: str | Path, *,
                    picture: Any = None, fit: str = "squash", percentile: float = 70, alpha: float = 0.5,
                    cmap: str = "RdBu_r", columns: int = 4) -> Path:
    """Write a PNG grid: the input, then one panel per tap (in the mapping's order), each titled
    with the layer's name and resolution (cells) and with its own colour bar (share of p(class))."""
    shown = _as_picture(image if picture is None else picture)
    count = len(explanations_by_tap) + 1
    rows, cols = -(-count // columns), min(count, columns)
    aspect = shown.shape[0] / shown.shape[1]
    fig = Figure(figsize=(3.2 * cols, (2.6 * aspect + 0.6) * rows))
    ax = fig.add_subplot(rows, cols, 1)
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    first = next(iter(explanations_by_tap.values()), None)
    ax.set_title("input" if first is None else f"input: {first.target_name or first.target}, p={first.probability:.2f}",
                 fontsize=9)
    ax.axis("off")
    for index, (tap, explanation) in enumerate(explanations_by_tap.items(), start=2):
        shares = _shares_over(shown, explanation, None if picture is None else fit)
        _draw(fig, fig.add_subplot(rows, cols, index), shown, shares, _layer_title(tap, explanation), percentile,
              alpha, cmap, "share of p(class)")
    fig.suptitle(f"layer-wise DnCShap; colour: {UNITS}", fontsize=8, y=0.995)
    fig.tight_layout()
    return _save(fig, path)


def share_grid(explanation: Explanation, width: int, height: int, fit: str, cells: int = 64) -> list[list[float | None]]:
    """The explanation's shares of p(class) over a ``width`` × ``height`` picture, sampled on a grid
    of ``cells`` along its longer side (rows top to bottom; ``None`` where the picture was not
    analysed): what the web page draws a layer from, in the units of :func:`save_overlay`."""
    scale = cells / max(width, height)
    columns, rows = max(1, round(width * scale)), max(1, round(height * scale))
    size = explanation.map.shape
    shares = square_to_image(region_shares(explanation, *size), fit, columns, rows)
    return [[None if not np.isfinite(v) else float(f"{v:.4g}") for v in row] for row in shares]
