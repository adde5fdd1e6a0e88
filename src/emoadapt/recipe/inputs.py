"""The labelled images of a recipe, their folds, and the source faces (FER2013)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.labels import FER_TO_IER, IER_CLASSES
from .config import Recipe, RecipeError


def target_dataset(recipe: Recipe):
    """The labelled images, relabelled onto their model classes: ``(dataset, classes)``.

    The IER classes when the layout maps onto them (or ``label_map`` says how), else the folder's
    own classes (a user's label set)."""
    from ..data import open_dataset
    from ..data.labels import read_label_pairs
    from ..data.locate import KNOWN, dataset_path

    spec = recipe.data
    path = dataset_path(spec.target) if spec.target in KNOWN else Path(spec.target)
    dataset = open_dataset(path, spec.layout)
    if spec.label_map:
        mapping = read_label_pairs(spec.label_map)
        missing = sorted(set(dataset.classes) - set(mapping))
        if missing:
            raise RecipeError(f"[data] label_map has no entry for class(es) {', '.join(missing)} of {path}")
        labels = set(mapping.values())
        classes = IER_CLASSES if labels == set(IER_CLASSES) else tuple(sorted(labels))
        samples = [replace(s, label=mapping[s.label]) for s in dataset.samples]
        return replace(dataset, samples=samples, classes=classes, to_ier=None), classes
    if dataset.to_ier is not None:
        return dataset.to_ier_dataset(), IER_CLASSES
    return dataset, tuple(dataset.classes)


def sample_keys(dataset) -> list[str]:
    from ..data.splits import sample_key

    return [sample_key(s, dataset.root) for s in dataset.samples]


def fold_plan(recipe: Recipe, dataset, out: Path) -> dict[str, str]:
    """``{sample key: "fold<k>"}`` from the recipe's manifest, or 5 new seeded folds (written to
    ``out/folds.json``)."""
    from ..data.splits import kfold_dataset, read_manifest, write_manifest

    keys = sample_keys(dataset)
    if recipe.data.folds and Path(recipe.data.folds).exists():
        assignments = read_manifest(recipe.data.folds).assignments
    else:
        path = out / "folds.json"
        if not path.exists():
            write_manifest(kfold_dataset(dataset, folds=5, seed=0), path)
        assignments = read_manifest(path).assignments
    missing = [k for k in keys if k not in assignments]
    if missing:
        raise RecipeError(f"{len(missing)} images are in no fold of the manifest (e.g. {missing[0]}); "
                          "set [data] folds = \"\" to make new folds")
    return {k: assignments[k] for k in keys}


def source_face_samples(recipe: Recipe, split: str, limit: int | None) -> tuple[list, np.ndarray]:
    """FER2013 faces of ``split`` whose class maps onto an IER class: samples and IER labels
    (at most ``limit``, a seeded choice)."""
    from ..data.fer2013 import read_fer2013
    from ..data.locate import dataset_path

    fer = read_fer2013(dataset_path("fer2013")).split(split)
    samples = [s for s in fer.samples if s.label in FER_TO_IER]
    if limit is not None and limit < len(samples):
        keep = np.sort(np.random.default_rng(0).permutation(len(samples))[:limit])
        samples = [samples[i] for i in keep]
    return samples, np.array([IER_CLASSES.index(FER_TO_IER[s.label]) for s in samples])


