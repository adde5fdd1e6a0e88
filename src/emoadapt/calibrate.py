"""Fit a model's calibration (``emoadapt calibrate``): the temperature on the validation split, the
OOD score's Gaussian on the training split and its threshold on the validation split.

    emoadapt calibrate --model emoadapt-ier --data .cache/data/emotion6 \\
        --manifest benchmarks/results/adaptation/split.json \\
        --out src/emoadapt/weights/emoadapt-ier.calibration.json

Images go through the predictor's own preprocessing (its ``fit``), so the calibration matches what
``analyze`` and ``predict`` see. The test split is never read. See
:mod:`emoadapt.models.calibration` for what the file holds and how it is applied.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .data import open_dataset
from .data.labels import IER_CLASSES
from .data.splits import select_splits
from .errors import EmoadaptError, ImageDecodeError
from .models.calibration import (OOD_KINDS, Calibration, expected_calibration_error, fit_gaussian,
                                 fit_temperature, mahalanobis_scores, energy_scores, softmax)


def split_images(data: str | Path, manifest: str | Path, split: str, classes: Sequence[str],
                 layout: str = "auto", label_map: dict[str, str] | None = None) -> list[tuple[Path, int]]:
    """(path, class index) of the images the manifest puts in ``split``, relabelled onto the IER
    classes when the model has them (with ``label_map``, dataset label → IER class, when given)."""
    dataset = select_splits(open_dataset(data, layout).with_label_map(label_map), manifest, [split])
    if tuple(classes) == IER_CLASSES and tuple(dataset.classes) != IER_CLASSES:
        dataset = dataset.to_ier_dataset()
    if tuple(dataset.classes) != tuple(classes):
        raise EmoadaptError(f"{data}: classes {tuple(dataset.classes)} are not the model's {tuple(classes)}")
    items = [(Path(s.path), list(classes).index(s.label)) for s in dataset.samples if s.label in classes]
    if not items:
        raise EmoadaptError(f"{data}: no labelled images in split {split!r} of {manifest}")
    return items


@torch.inference_mode()
def model_outputs(predictor, paths: Sequence[Path], batch_size: int = 32,
                  on_batch: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Uncalibrated logits (N, K), ``pre_logits`` features (N, D) and the indices of the images
    that decoded, through ``predictor.preprocess`` and its torch model."""
    if predictor.model is None:
        raise EmoadaptError("calibration needs the torch model: pass a .safetensors file or a shipped model name")
    logits, features, kept = [], [], []
    for start in range(0, len(paths), batch_size):
        tensors = []
        for index in range(start, min(start + batch_size, len(paths))):
            try:
                tensors.append(predictor.preprocess(paths[index]))
                kept.append(index)
            except ImageDecodeError:
                continue
        if tensors:
            taps = predictor.model.forward_taps(torch.stack(tensors), ("pre_logits", "logits"))
            logits.append(taps["logits"].double().numpy())
            features.append(taps["pre_logits"].double().numpy())
        if on_batch is not None:
            on_batch(min(batch_size, len(paths) - start))
    return np.concatenate(logits), np.concatenate(features), kept


def fit_calibration(predictor, train: Sequence[tuple[Path, int]], val: Sequence[tuple[Path, int]], *,
                    ood: str = "energy", ood_quantile: float = 0.95, min_confidence: float = 0.4,
                    components: int = 32, on_batch: Callable[[int], None] | None = None,
                    command: str = "") -> Calibration:
    """The :class:`Calibration` of ``predictor`` from labelled ``train`` and ``val`` images.

    Temperature: minimum NLL on ``val``. OOD: ``energy`` (the default; ``train`` is then not read)
    or ``mahalanobis`` (Gaussian of the ``train`` features, ``components`` principal directions); threshold: the ``ood_quantile`` quantile of
    the ``val`` scores (so that share of validation images counts as familiar)."""
    if ood not in OOD_KINDS:
        raise EmoadaptError(f"ood must be one of {', '.join(OOD_KINDS)}, got {ood!r}")
    started = time.perf_counter()
    val_logits, val_features, kept = model_outputs(predictor, [p for p, _ in val], on_batch=on_batch)
    val_labels = np.array([val[i][1] for i in kept])
    temperature = fit_temperature(val_logits, val_labels)
    gaussian: dict[str, Any] = {}
    if ood == "mahalanobis":
        _, train_features, _ = model_outputs(predictor, [p for p, _ in train], on_batch=on_batch)
        gaussian = fit_gaussian(train_features, k=components)
        val_scores = mahalanobis_scores(val_features, **gaussian)
    else:
        val_scores = energy_scores(val_logits)
    before, after = softmax(val_logits), softmax(val_logits / temperature)
    fitted = {"model": predictor.meta.get("name"), "weights_sha256": predictor.meta.get("weights_sha256"),
              "fit": predictor.fit, "n_train": len(train) if gaussian else 0,
              "n_val": len(val_labels), "ood_quantile": ood_quantile,
              "val_accuracy": round(float((after.argmax(1) == val_labels).mean()), 4),
              "val_ece_before": round(expected_calibration_error(before, val_labels), 4),
              "val_ece_after": round(expected_calibration_error(after, val_labels), 4),
              "seconds": round(time.perf_counter() - started, 1), "command": command,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    return Calibration(temperature=round(temperature, 6), ood_kind=ood,
                       ood_threshold=float(np.quantile(val_scores, ood_quantile)), min_confidence=min_confidence,
                       fitted=fitted, **gaussian)
