"""Classification metrics and the confusion-matrix figure (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..fileio import atomic_path


def _device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s parameters live (CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def predict_arrays(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256, tta_flip: bool = False,
                   progress: bool = False) -> np.ndarray:
    """Class probabilities (N, K) for uint8 images (N, H, W, C); ``tta_flip`` averages with the mirror image."""
    plain, flipped = predict_plain_and_flip(model, images, batch_size, progress, with_flip=tta_flip)
    return flipped if tta_flip else plain


@torch.no_grad()
def predict_plain_and_flip(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256, progress: bool = False,
                           *, with_flip: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """One pass over uint8 images (N, H, W, C): the class probabilities (N, K), and their average
    with the mirror image's (N, K; ``None`` unless ``with_flip``), so flip TTA need not redo the plain pass."""
    from tqdm import tqdm

    from ..data.transforms import uint8_to_tensor

    model.eval()
    plain, flipped = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="predict", disable=not progress, leave=False):
        x = uint8_to_tensor(images[start:start + batch_size]).to(_device(model))
        probs = model(x).softmax(1)
        plain.append(probs)
        if with_flip:
            flipped.append((probs + model(x.flip(3)).softmax(1)) / 2)
    if not plain:
        return np.zeros((0, 0), np.float32), (np.zeros((0, 0), np.float32) if with_flip else None)
    return torch.cat(plain).cpu().numpy(), (torch.cat(flipped).cpu().numpy() if with_flip else None)


def confusion(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 counts: row = true class, column = predicted class (indices outside 0…k-1 are dropped)."""
    labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
    keep = (labels >= 0) & (labels < k) & (preds >= 0) & (preds < k)
    return np.bincount(labels[keep] * k + preds[keep], minlength=k * k).reshape(k, k)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def classification_report(labels: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (the same
    figures as scikit-learn's ``precision_recall_fscore_support`` with ``zero_division=0``, computed
    from the confusion matrix: importing scikit-learn costs every training process ~2 s).

    Args:
        labels: (N,) true class indices.
        probs: (N, K) probabilities (or scores) over ``classes``.
    """
    preds = probs.argmax(1)
    counts = confusion(labels, preds, len(classes))
    hits = np.diag(counts).astype(np.float64)
    support, predicted = counts.sum(1), counts.sum(0)
    precision, recall = _ratio(hits, predicted), _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {
        "n": int(len(labels)),
        "accuracy": float((preds == labels).mean()) if len(labels) else float("nan"),
        "macro_f1": float(f1.mean()),
        "per_class": {c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for c, p, r, f, s in zip(classes, precision, recall, f1, support)},
        "classes": list(classes),
        "confusion": counts.tolist(),
    }


def save_confusion_png(report: dict, path: str | Path, title: str = "") -> None:
    """Row-normalised confusion matrix with counts, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(report["confusion"])
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    classes = report["classes"]
    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2, 1.1 * len(classes) + 1.5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{counts[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {report['accuracy']:.1%}, macro-F1 {report['macro_f1']:.3f}")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
