"""Out-of-fold head outputs of a product CV run folder, shared by the issue #30 scene benchmarks
(``scene_face_evidence.py``, ``scene_tta.py``).

A run folder of :func:`emoadapt.recipe.cross_validate` (``emoadapt train --cv``) holds ``cv.json``
(final mode) or ``cv-select.json`` (select mode) and one head per fold in
``cv-<mode>/<fold>/head.safetensors``. :func:`fold_logits` runs every fold head on the cached branch
features of its test images (and, in select mode, of the next fold's images: its validation fold)
and keeps every view's raw logits; :func:`set_probs` turns them into the calibrated probabilities of
a set of views (``(0, 1)``: the flip average that ``emoadapt predict`` returns with ``tta = "flip"``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def product_cv(recipe, run: Path, mode: str) -> dict:
    """The product's CV (resumes: folds whose heads exist are read back); returns the features."""
    from emoadapt.recipe import cross_validate
    from emoadapt.recipe.branches import face_branch, start_model
    from emoadapt.recipe.features import encode_all
    from emoadapt.recipe.inputs import target_dataset

    name = "cv.json" if mode == "final" else "cv-select.json"
    if not (run / name).exists() or len(json.loads((run / name).read_text())["folds"]) < 5:
        cross_validate(recipe, run, mode=mode)
    dataset, classes = target_dataset(recipe)
    start = start_model(recipe, face_branch(recipe, run), classes)
    return encode_all(recipe, start, dataset, run, say=lambda _: None)


def view_logits(model, features: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(V, len(index), K) raw logits of a fold head on every cached view of the images ``index``."""
    import torch

    from emoadapt.recipe.heads import as_maps

    with torch.inference_mode():
        return np.stack([model.forward_head(as_maps(features[v, index])).double().numpy()
                         for v in range(len(features))])


def set_probs(logits: np.ndarray, views: tuple[int, ...], temperature: float) -> np.ndarray:
    """(N, K): the softmax of each view's logits / temperature, averaged over ``views``
    (:meth:`emoadapt.Predictor.predict_outputs` applies the temperature before averaging)."""
    return np.mean([softmax(logits[v] / temperature) for v in views], axis=0)


def fold_logits(run: Path, mode: str, features: np.ndarray) -> dict[str, dict]:
    """``{fold: {"test", "l_test", "cv_test"[, "val", "l_val"]}}``: the test indices, their (V, n, K)
    logits of every cached view and ``cv.json``'s test accuracy of the fold; in select mode also the
    validation fold (the next fold's images, as the product's select mode assigns them) and its logits."""
    from emoadapt.models.registry import load_model

    cv = json.loads((run / ("cv.json" if mode == "final" else "cv-select.json")).read_text())
    names = sorted(cv["folds"])
    out = {}
    for k, name in enumerate(names):
        model = load_model(run / f"cv-{mode}" / name / "head.safetensors")[0].eval()
        test = np.array(cv["folds"][name]["test_index"])
        out[name] = {"test": test, "l_test": view_logits(model, features, test), "cv_test": cv["folds"][name]["test"]}
        if mode == "select":
            val = np.array(cv["folds"][names[(k + 1) % len(names)]]["test_index"])
            out[name].update(val=val, l_val=view_logits(model, features, val))
    return out
