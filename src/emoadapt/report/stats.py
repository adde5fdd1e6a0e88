"""The numbers of a report: bootstrap intervals, calibration (ECE, reliability bins, temperature)
and the choice of the examples shown per class. NumPy only, deterministic for a given seed."""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: The kinds of examples shown per class, in page order.
EXAMPLE_KINDS = ("confident_correct", "confident_errors", "least_confident")


def _rates(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and per-class precision/recall/F1 of confusion matrices (..., K, K)
    (rows: true class); a class with no prediction or no support scores 0, as scikit-learn's
    ``zero_division=0``."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    predicted, support = confusion.sum(-2), confusion.sum(-1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    total = confusion.sum((-2, -1))
    return {"accuracy": tp.sum(-1) / np.maximum(total, 1), "macro_f1": f1.mean(-1),
            "precision": precision, "recall": recall, "f1": f1}


def confusion_matrices(labels: np.ndarray, preds: np.ndarray, k: int,
                       resamples: np.ndarray | None = None) -> np.ndarray:
    """(K, K) confusion counts, or (B, K, K) for each row of index arrays ``resamples`` (B, N)."""
    cells = np.asarray(labels, np.int64) * k + np.asarray(preds, np.int64)
    if resamples is None:
        return np.bincount(cells, minlength=k * k).reshape(k, k)
    b = len(resamples)
    flat = (cells[resamples] + (np.arange(b) * k * k)[:, None]).ravel()
    return np.bincount(flat, minlength=b * k * k).reshape(b, k, k)


def bootstrap_metrics(labels: np.ndarray, probs: np.ndarray, classes: Sequence[str], *, resamples: int = 1000,
                      seed: int = 0, level: float = 0.95) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support with percentile bootstrap
    intervals (``resamples`` draws of the N images with replacement, ``seed``), and the confusion
    matrix as counts and row-normalised. Every interval is ``[low, high]``."""
    labels, preds, k = np.asarray(labels, np.int64), np.asarray(probs).argmax(1), len(classes)
    counts = confusion_matrices(labels, preds, k)
    point = _rates(counts)
    tail = (1 - level) / 2 * 100
    if len(labels) and resamples > 0:
        draws = np.random.default_rng(seed).integers(0, len(labels), (resamples, len(labels)))
        boot = _rates(confusion_matrices(labels, preds, k, draws))
        low = {name: np.percentile(v, tail, axis=0) for name, v in boot.items()}
        high = {name: np.percentile(v, 100 - tail, axis=0) for name, v in boot.items()}
    else:
        low = high = {name: np.full_like(np.asarray(v, np.float64), np.nan) for name, v in point.items()}
    interval = lambda name, i=None: [float(low[name] if i is None else low[name][i]),  # noqa: E731
                                     float(high[name] if i is None else high[name][i])]
    per_class = {c: {"precision": float(point["precision"][i]), "precision_ci": interval("precision", i),
                     "recall": float(point["recall"][i]), "recall_ci": interval("recall", i),
                     "f1": float(point["f1"][i]), "f1_ci": interval("f1", i), "support": int(counts[i].sum())}
                 for i, c in enumerate(classes)}
    normalised = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    return {"n": int(len(labels)), "accuracy": float(point["accuracy"]), "accuracy_ci": interval("accuracy"),
            "macro_f1": float(point["macro_f1"]), "macro_f1_ci": interval("macro_f1"), "per_class": per_class,
            "classes": list(classes), "confusion": counts.tolist(),
            "confusion_normalised": np.round(normalised, 4).tolist(),
            "bootstrap": {"resamples": resamples, "level": level, "seed": seed, "method": "percentile"}}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error over ``bins`` equal-width confidence bins (confidence: the top
    probability) and the reliability diagram's bins (count, mean confidence, accuracy per bin)."""
    confidence, correct = np.asarray(probs).max(1), np.asarray(probs).argmax(1) == np.asarray(labels)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        keep = which == b
        n = int(keep.sum())
        conf = float(confidence[keep].mean()) if n else None
        acc = float(correct[keep].mean()) if n else None
        if n:
            ece += n / len(labels) * abs(acc - conf)
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": n, "confidence": conf,
                     "accuracy": acc})
    return {"ece": float(ece), "bins": rows, "mean_confidence": float(confidence.mean()) if len(labels) else None,
            "accuracy": float(correct.mean()) if len(labels) else None}


def select_examples(labels: np.ndarray, probs: np.ndarray, k: int = 3) -> list[dict]:
    """Per true class, the ``k`` most confident correct predictions, the ``k`` most confident
    errors and the ``k`` least confident images (top probability lowest), as
    ``{"index", "class", "kind", "rank"}`` in round-robin order (every class and kind's first
    example, then every second…), so that a budget cut keeps the examples spread evenly."""
    labels, probs = np.asarray(labels), np.asarray(probs)
    preds, confidence = probs.argmax(1), probs.max(1)
    chosen: dict[tuple[int, str], list[int]] = {}
    for c in range(probs.shape[1]):
        mine = np.flatnonzero(labels == c)
        if not len(mine):
            continue
        by_conf = mine[np.argsort(-confidence[mine], kind="stable")]
        chosen[c, "confident_correct"] = [int(i) for i in by_conf if preds[i] == c][:k]
        chosen[c, "confident_errors"] = [int(i) for i in by_conf if preds[i] != c][:k]
        chosen[c, "least_confident"] = [int(i) for i in by_conf[::-1][:k]]
    order = []
    for rank in range(k):
        for kind in EXAMPLE_KINDS:
            for (c, kd), indices in chosen.items():
                if kd == kind and rank < len(indices):
                    order.append({"index": indices[rank], "class": c, "kind": kind, "rank": rank})
    return order
