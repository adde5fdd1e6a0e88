"""``emoadapt evaluate``: score a model on any supported dataset and split.

Two ways to score, chosen by ``mapping``:

* ``fer``: in the model's own classes (a FER model on FER2013, JAFFE or CK+48; CK+ spellings
  ``anger``/``sadness`` are read as ``angry``/``sad``; labels the model lacks, e.g. contempt, are left out);
* ``ier``: in the 4 IER classes. The dataset is relabelled with its IER map; a FER model's
  probabilities are restricted to its 4 mapped classes (angry, disgust, happy, sad) and
  renormalised (the "zero-shot 7→4" protocol).

``auto`` picks ``fer`` when the model has FER classes and the dataset's labels are FER classes,
else ``ier``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .data import open_dataset
from .data.labels import FACE_ALIASES, FER_CLASSES, IER_CLASSES, fer_classes_in_ier_order
from .data.records import ImageDataset
from .data.splits import sample_key, select_splits
from .errors import EmoadaptError
from .fileio import atomic_write_json
from .provenance import run_record
from .training.metrics import classification_report, save_confusion_png


def ier_probs_from_fer(probs: np.ndarray) -> np.ndarray:
    """(N, 7) FER probabilities → (N, 4) IER probabilities over the mapped classes, renormalised."""
    columns = [FER_CLASSES.index(fer) for fer in fer_classes_in_ier_order()]
    mapped = probs[:, columns]
    return mapped / np.clip(mapped.sum(1, keepdims=True), 1e-12, None)


def as_fer_dataset(dataset: ImageDataset) -> ImageDataset:
    from dataclasses import replace

    samples = [replace(s, label=FACE_ALIASES.get(s.label, s.label)) for s in dataset.samples]
    samples = [s for s in samples if s.label in FER_CLASSES]
    return replace(dataset, classes=FER_CLASSES, samples=samples)


def choose_mapping(model_classes: Sequence[str], dataset: ImageDataset) -> str:
    labels = {FACE_ALIASES.get(label, label) for label in dataset.label_counts() if label is not None}
    fer_model = tuple(model_classes) == FER_CLASSES
    return "fer" if fer_model and len(labels & set(FER_CLASSES)) >= 2 else "ier"


def evaluate_model(weights: Any, data: str | Path, *, layout: str = "auto",
                   splits: Sequence[str] | None = None, manifest: str | Path | None = None,
                   mapping: str = "auto", tta: str | None = None, out_dir: str | Path | None = None,
                   progress: bool = True, fit: str | None = None, label_map: dict[str, str] | None = None,
                   batch_size: int = 32, limit: int | None = None, with_probs: bool = False) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall and confusion matrix of a model on a dataset,
    scored exactly as ``emoadapt predict`` scores (the one prediction path,
    :class:`~emoadapt.predictor.Predictor`: the model's own input fit, test-time augmentation and
    calibration, unless ``fit`` / ``tta`` override them).

    ``manifest`` (a split manifest written by ``data split`` or ``adapt``) assigns the splits that
    ``splits`` selects. ``label_map`` (dataset label → IER class) maps a dataset whose labels have
    no IER map of their own. ``limit``: score a seeded random subset of at most that many images
    (seed 0: the same images on every run, in dataset order). The report holds every scored image's
    ``keys`` (path relative to the dataset folder), true ``labels`` and ``predicted`` class indices,
    so that a later run on a subset can be compared image by image. Writes ``metrics.json`` and
    ``confusion.png`` to ``out_dir`` when given (with ``run``: the command, date, versions and
    cores). ``weights``: a weights file, a shipped model name,
    None (the default model) or an already loaded :class:`~emoadapt.predictor.Predictor` (e.g. one
    whose onnxruntime session is an int8 copy; ``fit`` is then its own); ``with_probs``: the returned
    report also holds ``probs``, the (N, K) scored probabilities (not written to ``metrics.json``)."""
    from tqdm import tqdm

    from .errors import ImageDecodeError
    from .predictor import Predictor

    loaded = hasattr(weights, "predict_outputs")  # a Predictor given instead of a weights file
    predictor = weights if loaded else Predictor(weights, fit=fit)
    if tta is not None:
        predictor.tta = tta
    model_classes = predictor.classes
    dataset = select_splits(open_dataset(data, layout).with_label_map(label_map), manifest, splits)
    mapping = choose_mapping(model_classes, dataset) if mapping == "auto" else mapping
    if mapping == "fer":
        dataset = as_fer_dataset(dataset)
        classes = model_classes
    else:
        dataset = dataset.to_ier_dataset()
        classes = IER_CLASSES
    index = {c: i for i, c in enumerate(dataset.classes)}
    probs, labels, failed, keys = [], [], [], []
    samples = dataset.sample(limit).samples
    for start in tqdm(range(0, len(samples), batch_size), desc=f"scoring {dataset.name}", unit="batch",
                      disable=not progress):
        tensors = []
        for sample in samples[start:start + batch_size]:
            try:
                tensors.append(predictor.preprocess(sample.path))
                labels.append(index[sample.label])
                keys.append(sample_key(sample, dataset.root))
            except ImageDecodeError as exc:
                failed.append((sample.path, exc.reason))
        if tensors:
            probs.append(predictor.predict_tensors(torch.stack(tensors)))
    probs = np.concatenate(probs) if probs else np.zeros((0, len(model_classes)))
    if mapping == "ier" and tuple(model_classes) == FER_CLASSES:
        probs = ier_probs_from_fer(probs)
    elif tuple(model_classes) != tuple(classes):
        raise EmoadaptError(f"model classes {model_classes} do not match {classes}; use --map")
    report = classification_report(np.array(labels, dtype=np.int64), probs, classes)
    report.update({"dataset": str(data), "layout": dataset.name, "split": ",".join(splits) if splits else "all",
                   "mapping": mapping, "tta": predictor.tta, "fit": predictor.fit,
                   "weights": str(weights if weights is not None and not loaded else predictor.meta.get("name", "")),
                   "model": predictor.meta.get("name"), "weights_sha256": predictor.meta.get("weights_sha256"),
                   "calibrated": predictor.calibration.calibrated, "failed": failed, "limit": limit,
                   "keys": keys, "labels": labels, "predicted": probs.argmax(1).tolist(), "run": run_record()})
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_json(out / "metrics.json", report)
        save_confusion_png(report, out / "confusion.png", title=f"{Path(data).name} {report['split']}: "
                           f"accuracy {report['accuracy']:.1%}, macro-F1 {report['macro_f1']:.3f}")
    return dict(report, probs=probs) if with_probs else report
