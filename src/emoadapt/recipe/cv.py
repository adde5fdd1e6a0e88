"""Cross-validation of a recipe (per fold: the head, scored through the product's input fit) and the final fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write_json
from .config import Progress, Recipe, RecipeError, print_progress
from .branches import face_branch, start_model
from .features import encode_all
from .heads import accuracy, face_scores, head_logits, train_head
from .inputs import fold_plan, target_dataset


def cross_validate(recipe: Recipe, out: Path, say: Progress = print_progress, folds: list[int] | None = None,
                   mode: str = "final") -> dict:
    """The recipe's k-fold CV on the labelled images, each fold's head trained for the recipe's fixed
    epochs and scored on test fold k as ``predict`` scores.

    ``mode="final"``: the head trains on every other fold — the estimate of the shipped fit (which
    trains on every image); ``out/cv.json``, whose out-of-fold outputs calibrate the model.
    ``mode="select"``: fold k+1 is held out for validation and the head trains on the rest — for
    choosing between recipes on validation scores; ``out/cv-select.json``.
    Rows hold test (and in ``select`` mode validation) accuracy, FER2013 PublicTest/PrivateTest
    4-class accuracy and the out-of-fold logits."""
    if mode not in ("final", "select"):
        raise RecipeError(f"CV mode must be final or select, got {mode!r}")
    dataset, classes = target_dataset(recipe)
    start = start_model(recipe, face_branch(recipe, out, say), classes)
    data = encode_all(recipe, start, dataset, out, say)
    plan = fold_plan(recipe, dataset, out)
    assigned = np.array([plan[k] for k in data["keys"]])
    names = sorted(set(assigned))
    result_path = out / ("cv.json" if mode == "final" else "cv-select.json")
    result = json.loads(result_path.read_text()) if result_path.exists() else {"folds": {}}
    for k, name in enumerate(names):
        if (folds is not None and k not in folds) or name in result["folds"]:
            continue
        val_name = names[(k + 1) % len(names)]
        test, val = np.flatnonzero(assigned == name), np.flatnonzero(assigned == val_name)
        train = np.flatnonzero((assigned != name) & ((assigned != val_name) | (mode == "final")))
        model = start_model(recipe, out / "face.safetensors", classes)
        model = train_head(recipe, model, data, train, val, out / f"cv-{mode}" / name, classes)
        logits = head_logits(model, data["target"][:, test], recipe.output.tta)
        row = {"test": accuracy(logits, data["target_labels"][test]), **face_scores(model, data, recipe.output.tta),
               "n_train": int(len(train)), "n_test": int(len(test)), "test_index": test.tolist(),
               "test_logits": np.round(logits, 6).tolist()}
        if mode == "select":
            row["val"] = accuracy(head_logits(model, data["target"][:, val], recipe.output.tta),
                                  data["target_labels"][val])
        result["folds"][name] = row
        say(f"[cv {mode}] {name}: " + " ".join(f"{key} {row[key]:.4f}" for key in
                                              ("test", "val", "faces_val", "faces_test") if key in row))
        result.update(summary(result["folds"]), mode=mode, recipe=recipe.to_dict(), classes=list(classes))
        atomic_write_json(result_path, result)
    return result


def summary(folds: dict[str, dict]) -> dict[str, Any]:
    """Mean and sample standard deviation over folds of each score."""
    out = {}
    for key in ("test", "val", "faces_val", "faces_test"):
        values = [row[key] for row in folds.values() if key in row]
        if values:
            out[f"{key}_mean"] = float(np.mean(values))
            out[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def train_final(recipe: Recipe, out: Path, say: Progress = print_progress):
    """The shipped fit: the head on every labelled image for the recipe's fixed epochs (chosen
    beforehand by CV); returns the model (``out/final/head.safetensors``)."""
    dataset, classes = target_dataset(recipe)
    start = start_model(recipe, face_branch(recipe, out, say), classes)
    data = encode_all(recipe, start, dataset, out, say)
    everything = np.arange(len(data["target_labels"]))
    # no held-out images: the head trains on every one for the fixed epochs; every 16th is "validated" for the log
    model = train_head(recipe, start, data, everything, everything[::16], out / "final", classes)
    return model, data, classes


def cv_table(cv: dict[str, Any]) -> str:
    """One Markdown row per fold and the mean ± sd, scenes and faces side by side."""
    keys = [k for k in ("test", "val", "faces_val", "faces_test") if f"{k}_mean" in cv]
    rows = ["| fold | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, row in sorted(cv["folds"].items()):
        rows.append(f"| {name} | " + " | ".join(f"{100 * row[k]:.1f}" for k in keys) + " |")
    rows.append("| mean ± sd | " + " | ".join(f"{100 * cv[k + '_mean']:.1f} ± {100 * cv[k + '_sd']:.1f}"
                                            for k in keys) + " |")
    return "\n".join(rows)


