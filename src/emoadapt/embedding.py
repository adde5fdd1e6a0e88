"""Embedding plots (SPEC §4): activations of one layer for a set of images, projected to 2-D.

Faces (FER) and generic images (IER) go into one projection per model, so the plot shows how far
apart the two domains lie in that layer — before adaptation (a FER model) and after (an adapted
model). Each model gets a row of two panels: points coloured by true class and by predicted class,
one marker per domain. PCA on standardised features is the default; t-SNE on request.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .errors import EmoadaptError
from .fileio import atomic_path, atomic_write_text

METHODS = ("pca", "tsne")
_AXES = {"pca": "PC", "tsne": "t-SNE"}
_MARKERS = {"images": "o", "faces": "^"}
_OTHER_MARKERS = ("s", "D", "v", "P", "X")
_UNLABELLED = "#b0b0b0"


@dataclass
class Embedding:
    """One model's 2-D projection of every image.

    Attributes:
        points: (N, 2) float32 projected features.
        labels: (N,) int64 true class index into ``classes``, −1 when the image has none.
        predicted: (N,) int64 predicted class index into ``predicted_classes``.
        domain: (N,) str, the group each image came from (``"images"``, ``"faces"``…).
        classes: names of the true classes.
        predicted_classes: names of the model's outputs.
        tap: the layer the features came from.
        method: ``"pca"`` or ``"tsne"``.
        model: the model's name (as given on the command line).
    """

    points: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    domain: np.ndarray
    classes: tuple[str, ...]
    predicted_classes: tuple[str, ...]
    tap: str
    method: str
    model: str


def check_tap(model: nn.Module, tap: str, name: str = "the model") -> None:
    """Raise :class:`EmoadaptError` naming the valid taps when ``model`` has no tap ``tap``."""
    taps = tuple(getattr(model, "taps", ()))
    if tap not in taps:
        raise EmoadaptError(f"unknown tap {tap!r} for {name}; choose from {', '.join(taps)}")


def check_method(method: str) -> None:
    if method not in METHODS:
        raise EmoadaptError(f"unknown projection method {method!r}; choose from {', '.join(METHODS)}")


@torch.no_grad()
def collect(model: nn.Module, images: np.ndarray, tap: str, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Activations of ``tap`` for uint8 images (N, S, S, C), fitted to the model's input first.

    Returns ``(features, predicted)``: (N, D) float32 (a 4-D activation is averaged over its
    spatial positions) and (N,) int64 argmax of the logits.
    """
    from .data.transforms import fit_images, uint8_to_tensor

    check_tap(model, tap)
    model.eval()
    images = fit_images(images, model.config.input_size, model.config.in_chans)
    features, predicted = [], []
    for start in range(0, len(images), batch_size):
        out = model.forward_taps(uint8_to_tensor(images[start:start + batch_size]), (tap, "logits"))
        activation = out[tap].mean(dim=(2, 3)) if out[tap].ndim == 4 else out[tap].flatten(1)
        features.append(activation.float().numpy())
        predicted.append(out["logits"].argmax(dim=1).numpy())
    if not features:
        raise EmoadaptError("no images to embed")
    return np.concatenate(features).astype(np.float32), np.concatenate(predicted).astype(np.int64)


def project(features: np.ndarray, method: str = "pca", seed: int = 0, threads: int | None = None) -> np.ndarray:
    """(N, D) features → (N, 2) float32: standardised per dimension, then PCA or t-SNE
    (``init="pca"``, perplexity min(30, N − 1), ``random_state=seed``). scikit-learn's BLAS and
    OpenMP pools get ``threads`` (default: torch's thread count, so ``--threads`` holds here too;
    an unlimited t-SNE on a busy machine spins for many times its run time)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    check_method(method)
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    if len(features) < 3:
        raise EmoadaptError(f"an embedding needs at least 3 images, got {len(features)}")
    if features.shape[1] < 2:
        raise EmoadaptError(f"an embedding needs at least 2 feature dimensions, got {features.shape[1]}")
    with threadpool_limits(limits=threads or torch.get_num_threads()):
        scaled = StandardScaler().fit_transform(features)
        if method == "pca":
            points = PCA(n_components=2, random_state=seed).fit_transform(scaled)
        else:
            points = TSNE(n_components=2, init="pca", perplexity=min(30, len(features) - 1),
                          random_state=seed).fit_transform(scaled)
    return points.astype(np.float32)


def embed(models: Mapping[str, nn.Module], groups: Mapping[str, tuple[np.ndarray, np.ndarray]],
          classes: Sequence[str], tap: str, method: str = "pca", *, seed: int = 0, batch_size: int = 64,
          model_classes: Mapping[str, Sequence[str]] | None = None) -> list[Embedding]:
    """One :class:`Embedding` per model; all groups of images are projected together.

    ``groups`` maps a domain name to ``(images uint8 (N, S, S, C), labels (N,) index into
    classes or −1)``. ``model_classes`` names each model's outputs (default: ``classes`` when the
    count matches, else the output indices).
    """
    check_method(method)
    results = []
    for name, model in models.items():
        check_tap(model, tap, name)
        parts = [collect(model, images, tap, batch_size) for images, _ in groups.values()]
        outputs = _output_names(model, classes, (model_classes or {}).get(name))
        results.append(Embedding(
            points=project(np.concatenate([f for f, _ in parts]), method, seed),
            labels=np.concatenate([np.asarray(labels, dtype=np.int64) for _, labels in groups.values()]),
            predicted=np.concatenate([p for _, p in parts]),
            domain=np.concatenate([np.full(len(images), domain, dtype=object)
                                   for domain, (images, _) in groups.items()]).astype(str),
            classes=tuple(classes), predicted_classes=outputs, tap=tap, method=method, model=name))
    return results


def _output_names(model: nn.Module, classes: Sequence[str], names: Sequence[str] | None) -> tuple[str, ...]:
    count = model.config.num_classes
    if names is not None and len(names) == count:
        return tuple(names)
    return tuple(classes) if len(classes) == count else tuple(str(i) for i in range(count))


def _palette(embeddings: Sequence[Embedding]) -> dict[str, tuple]:
    """One colour per class name across every panel (true classes first); a FER class shares
    the colour of its IER class (angry → anger, disgust → hate). Grey is kept for "no class"."""
    from matplotlib import colormaps

    from .data.labels import FER_TO_IER

    names = list(dict.fromkeys(c for e in embeddings for c in (*e.classes, *e.predicted_classes)))
    keys = list(dict.fromkeys(FER_TO_IER.get(name, name) for name in names))
    cmap = colormaps["tab10" if len(keys) <= 9 else "tab20"]
    colours = [cmap(i) for i in range(cmap.N) if cmap.N != 10 or i != 7]  # tab10's 7 is grey
    return {name: colours[keys.index(FER_TO_IER.get(name, name)) % len(colours)] for name in names}


def _markers(embeddings: Sequence[Embedding]) -> dict[str, str]:
    domains = list(dict.fromkeys(d for e in embeddings for d in e.domain))
    others = iter(_OTHER_MARKERS * len(domains))
    return {d: _MARKERS.get(d) or next(others) for d in domains}


def _panel(ax, embedding: Embedding, values: np.ndarray, names: Sequence[str], palette: dict, markers: dict,
           title: str) -> None:
    from matplotlib.lines import Line2D

    handles = []
    for index, name in [(-1, "no class"), *enumerate(names)]:
        colour = _UNLABELLED if index < 0 else palette[name]
        drawn = False
        for domain, marker in markers.items():
            keep = (values == index) & (embedding.domain == domain)
            if keep.any():
                ax.scatter(*embedding.points[keep].T, s=18, marker=marker, color=colour, alpha=0.75, linewidths=0)
                drawn = True
        if drawn:
            handles.append(Line2D([], [], linestyle="", marker="o", color=colour, label=name))
    handles += [Line2D([], [], linestyle="", marker=m, color="black", markerfacecolor="none", label=d)
                for d, m in markers.items() if (embedding.domain == d).any()]
    axis = _AXES[embedding.method]
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.set_title(title, fontsize=10)
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)


def save_embedding_figure(embeddings: Sequence[Embedding], path: str | Path, title: str | None = None) -> Path:
    """Write a PNG: one row per model, panels coloured by true and by predicted class."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not embeddings:
        raise EmoadaptError("no embeddings to draw")
    palette, markers = _palette(embeddings), _markers(embeddings)
    fig = Figure(figsize=(12, 4.6 * len(embeddings)), layout="constrained")
    canvas = FigureCanvasAgg(fig)
    for row, e in enumerate(embeddings):
        head = f"{e.model} · {e.tap}"
        _panel(fig.add_subplot(len(embeddings), 2, 2 * row + 1), e, e.labels, e.classes, palette, markers,
               f"{head}: true class")
        _panel(fig.add_subplot(len(embeddings), 2, 2 * row + 2), e, e.predicted, e.predicted_classes, palette,
               markers, f"{head}: predicted class")
    if title:
        fig.suptitle(title)
    with atomic_path(path, suffix=".png") as tmp:
        canvas.print_png(tmp)
    return Path(path)


def save_embedding_csv(embeddings: Sequence[Embedding], path: str | Path) -> Path:
    """Write every point as a CSV row: model, domain, label, predicted, x, y
    (label and predicted as class names; an image without a class has an empty label)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "domain", "label", "predicted", "x", "y"])
    for e in embeddings:
        for (x, y), label, predicted, domain in zip(e.points, e.labels, e.predicted, e.domain):
            writer.writerow([e.model, domain, e.classes[label] if label >= 0 else "",
                             e.predicted_classes[predicted], f"{x:.6g}", f"{y:.6g}"])
    atomic_write_text(path, buffer.getvalue())
    return Path(path)
