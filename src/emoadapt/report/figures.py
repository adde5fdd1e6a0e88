"""The report's figures (matplotlib, Agg canvas, no pyplot state; files written atomically): the
confusion matrix as counts and row-normalised, the reliability diagram, and an explanation
overlay with its colour scale."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..fileio import atomic_path


def _save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def save_confusion(counts: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, title: str) -> Path:
    """Two panels: the confusion counts and the row-normalised matrix (rows: true class)."""
    counts = np.asarray(counts)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    k = len(classes)
    fig = Figure(figsize=(2 * (0.75 * k + 1.6), 0.75 * k + 1.6), layout="constrained")
    for col, (values, label, fmt) in enumerate([(counts, "counts", "{:d}"), (rates, "row-normalised", "{:.0%}")]):
        ax = fig.add_subplot(1, 2, col + 1)
        shown = rates  # colour by rate in both panels, so a small class is as visible as a large one
        image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                value = int(values[i, j]) if col == 0 else float(values[i, j])
                ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), classes, rotation=45, ha="right")
        ax.set_yticks(range(k), classes)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(label, fontsize=10)
    fig.colorbar(image, ax=fig.axes, shrink=0.8, label="share of the true class")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def save_reliability(curves: dict[str, dict], path: str | Path, title: str) -> Path:
    """Reliability diagram: accuracy against mean confidence per bin, one line per curve
    (``{"before temperature": calibration(...), ...}``), the diagonal, and the bin counts below."""
    fig = Figure(figsize=(5.2, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    width = None
    for (name, curve), marker in zip(curves.items(), "os^D"):
        bins = [b for b in curve["bins"] if b["count"]]
        top.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker=marker, markersize=4,
                 label=f"{name}: ECE {curve['ece']:.3f}")
        width = width or (curve["bins"][0]["high"] - curve["bins"][0]["low"])
    first = next(iter(curves.values()))
    centres = [(b["low"] + b["high"]) / 2 for b in first["bins"]]
    bottom.bar(centres, [b["count"] for b in first["bins"]], width=0.9 * (width or 0.1), color="tab:blue", alpha=0.6)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy in bin")
    top.set_title(title, fontsize=10)
    top.legend(fontsize=8, loc="upper left")
    bottom.set_xlabel(f"confidence (top probability{', ' + next(iter(curves)) if len(curves) > 1 else ''})")
    bottom.set_ylabel("images")
    return _save(fig, path)


def kept(values: np.ndarray, percentile: float = 70) -> np.ma.MaskedArray:
    """The paper's display rule: positive values at or above the percentile of |values|; the rest masked."""
    threshold = np.percentile(np.abs(values), percentile)
    return np.ma.masked_where(~((values >= threshold) & (values > 0)), values)


def save_overlay_with_scale(picture: np.ndarray, attribution: np.ndarray, path: str | Path, title: str, *,
                            percentile: float = 70, alpha: float = 0.45) -> Path:
    """The image (H, W) grey or (H, W, 3) in [0, 1], its kept DnCShap map over it ('seismic',
    symmetric about 0) and a colour bar in probability units per pixel."""
    fig = Figure(figsize=(2.9, 2.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    scale = float(np.abs(attribution).max()) or 1.0
    image = ax.imshow(kept(attribution, percentile), cmap="seismic", vmin=-scale, vmax=scale, alpha=alpha,
                      interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    bar = fig.colorbar(image, ax=ax, shrink=0.85, format="%.0e")
    bar.set_label("φ per pixel", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return _save(fig, path, dpi=90)


def save_thumbnail(picture: np.ndarray, path: str | Path, title: str) -> Path:
    """A small titled copy of the image (for examples beyond the explanation budget)."""
    fig = Figure(figsize=(2.4, 2.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return _save(fig, path, dpi=90)
