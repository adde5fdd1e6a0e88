"""Steps 5–7 of ``emoadapt train``: calibration and OOD threshold from the CV folds, affect heads, the model card and the shipped files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_path, atomic_write_json
from .config import Progress, Recipe, RecipeError, print_progress
from .branches import branches_digest
from .cv import train_final
from .features import FeatureEncoder, encode_paths
from .heads import as_maps, face_scores


def cv_view_logits(recipe: Recipe, out: Path, data: dict[str, Any], classes) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold raw logits of every CV test image in both views (2, N, K) and their labels,
    from the fold heads in ``out/cv-final/<fold>/head.safetensors``."""
    from ..models.registry import load_model

    cv = json.loads((out / "cv.json").read_text())
    views, labels = [], []
    for name, row in sorted(cv["folds"].items()):
        model, _ = load_model(out / "cv-final" / name / "head.safetensors")
        test = np.array(row["test_index"])
        with torch.inference_mode():
            views.append(np.stack([model.forward_head(as_maps(data["target"][v, test])).double().numpy()
                                   for v in (0, 1)]))
        labels.append(data["target_labels"][test])
    return np.concatenate(views, 1), np.concatenate(labels)


def mahalanobis_from_cv(model, data: dict[str, Any], cv: dict[str, Any], quantile: float) -> dict[str, Any]:
    """The Mahalanobis OOD score of ``model``'s ``pre_logits`` features (the standardised fused
    features of a linear head): the threshold at ``quantile`` of the out-of-fold scores (each CV
    fold's Gaussian fitted on its training images, plain and mirrored, scoring its test images,
    the two views averaged as ``predict`` averages them), and the Gaussian of every image."""
    from ..models.calibration import fit_gaussian, mahalanobis_scores

    with torch.inference_mode():
        views = [model.forward_head(as_maps(data["target"][v]), pre_logits=True).double().numpy() for v in (0, 1)]
    scores = []
    for row in cv["folds"].values():
        test = np.array(row["test_index"])
        train = np.setdiff1d(np.arange(len(views[0])), test)
        gaussian = fit_gaussian(np.concatenate([views[0][train], views[1][train]]))
        scores.append((mahalanobis_scores(views[0][test], **gaussian) + mahalanobis_scores(views[1][test], **gaussian)) / 2)
    gaussian = fit_gaussian(np.concatenate(views))
    return {"ood_threshold": float(np.quantile(np.concatenate(scores), quantile)), **gaussian}


def calibrate_from_cv(recipe: Recipe, out: Path, data: dict[str, Any], classes, weights_sha256: str, command: str,
                      model=None):
    """Step 5: the temperature minimising the out-of-fold NLL (each view a sample, as ``predict``
    scales every pass) and the OOD threshold at the recipe's quantile of the out-of-fold scores
    (averaged over the two views, as ``predict`` averages them): ``energy`` of the logits, or
    ``mahalanobis`` of ``model``'s ``pre_logits`` features (:func:`mahalanobis_from_cv`)."""
    from ..models.calibration import (Calibration, energy_scores, expected_calibration_error, fit_temperature,
                                      softmax)

    logits, labels = cv_view_logits(recipe, out, data, classes)
    temperature = fit_temperature(logits.reshape(-1, logits.shape[-1]), np.tile(labels, 2))
    probs_before = (softmax(logits[0]) + softmax(logits[1])) / 2
    probs_after = (softmax(logits[0] / temperature) + softmax(logits[1] / temperature)) / 2
    energy = (energy_scores(logits[0]) + energy_scores(logits[1])) / 2
    fitted = {"model": recipe.name, "weights_sha256": weights_sha256, "fit": recipe.output.fit,
              "tta": recipe.output.tta, "data": "out-of-fold outputs of the recipe's 5-fold CV",
              "n_val": int(len(labels)), "ood_quantile": recipe.output.ood_quantile,
              "val_accuracy": round(float((probs_after.argmax(1) == labels).mean()), 4),
              "val_ece_before": round(expected_calibration_error(probs_before, labels), 4),
              "val_ece_after": round(expected_calibration_error(probs_after, labels), 4),
              "command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if recipe.output.ood == "mahalanobis":
        cv = json.loads((out / "cv.json").read_text())
        ood = mahalanobis_from_cv(model, data, cv, recipe.output.ood_quantile)
        fitted["n_train"] = int(len(data["target_labels"]))
    else:
        ood = {"ood_threshold": float(np.quantile(energy, recipe.output.ood_quantile))}
    return Calibration(temperature=round(float(temperature), 6), ood_kind=recipe.output.ood, fitted=fitted, **ood)


def fit_affect(recipe: Recipe, out: Path, model, say: Progress = print_progress):
    """Step 6: affect heads on the final model's features of every Emotion6 image (six folders,
    plain and mirrored), chosen on a seeded 15 % validation share and fitted on the rest; returns
    ``(heads, record)`` or ``(None, reason)`` when the labelled images are not Emotion6."""
    from ..data import open_dataset
    from ..data.locate import KNOWN, dataset_path
    from ..training.affect_fit import choose_and_fit, head_predict, scores, subset, targets

    if recipe.data.target != "emotion6" or not recipe.output.affect:
        return None, "affect heads need Emotion6's valence, arousal and votes ([data] target = \"emotion6\")"
    dataset = open_dataset(dataset_path("emotion6") if "emotion6" in KNOWN else recipe.data.target, "emotion6")
    dataset = dataset.subset(lambda s: "valence" in s.meta, name="emotion6-affect")
    cache_file = out / "affect-features.npz"
    if not cache_file.exists():
        encoder = FeatureEncoder(model)
        from ..data.arrays import DEFAULT_CACHE

        raw = encode_paths(encoder, [s.path for s in dataset.samples],
                           DEFAULT_CACHE / "features" / branches_digest(model) / f"emotion6-all-{recipe.output.fit}",
                           size=recipe.scene.input_size, fit=recipe.output.fit, views=2, say=say,
                           label="Emotion6 (all six folders)")
        cache = {}  # the features models/affect.py's model_features gives, from the encoded pooled features
        with torch.inference_mode():
            for view, suffix in ((0, ""), (1, "_flip")):
                pooled = torch.from_numpy(raw[view])
                fused = model.fuse(model.split_features(pooled))
                cache["fused" + suffix] = fused.numpy().astype(np.float32)
                cache["pre_logits" + suffix] = model.dense(fused).numpy().astype(np.float32)
        with atomic_path(cache_file, suffix=".npz") as tmp:
            np.savez(tmp, **cache)
    with np.load(cache_file) as saved:
        cache = {k: saved[k] for k in saved.files}
    y = targets(dataset)
    rng = np.random.default_rng(0)
    val = np.zeros(len(dataset), bool)
    val[rng.permutation(len(dataset))[:round(0.15 * len(dataset))]] = True
    heads, choice = choose_and_fit(cache, y, {"train": ~val, "val": val})
    val_scores = scores(subset(y, val), head_predict(heads, cache, val))
    # every grid point's validation loss is kept beside the choice (docs quote the points not chosen)
    return heads, {"choice": {k: v for k, v in choice.items() if k != "grid"}, "grid_val_loss": choice["grid"],
                   "validation": {k: round(v, 4) for k, v in val_scores.items()},
                   "n_train": int((~val).sum()), "n_val": int(val.sum())}


def model_card(recipe: Recipe, entry: dict[str, Any], cv: dict[str, Any], affect: dict[str, Any] | None,
               calibration) -> str:
    """The model card (Markdown): data, command, metrics with their sources, sha256."""
    def pct(key: str) -> str:
        return f"{100 * cv[key + '_mean']:.1f} ± {100 * cv[key + '_sd']:.1f} %" if key + "_mean" in cv else "—"

    head = recipe.head
    lines = [f"# Model card: `{recipe.name}`", "",
             "Made by `emoadapt train` from a recipe file; every figure below comes from the run folder's "
             "`cv.json` / `run.json` (the sources are named).", "", "| | |", "|---|---|",
             f"| file | `{entry['weights']}` (float16 safetensors; config, classes and recipe in its metadata) |",
             f"| sha256 | `{entry['sha256']}` |",
             f"| command | `{entry['command']}` |",
             f"| recipe | `{entry['recipe_file']}` |",
             f"| classes | {', '.join(entry['classes'])} |",
             f"| input | the image fitted as `{recipe.output.fit}` to {recipe.scene.input_size} × "
             f"{recipe.scene.input_size} px RGB in [0, 1] (emoadapt.data.transforms.FITS); test-time "
             f"`{recipe.output.tta}` averaging |",
             f"| architecture | FusionNet: face branch (`{recipe.face.source}`) ⊕ ImageNet EfficientNet-"
             f"{recipe.scene.variant.capitalize()} scene branch, both frozen; pooled features (each branch's last "
             f"map{stage_words(recipe.scene.stages)}) concatenated and standardised, then {head_words(head)} |",
             f"| objective | {objective_words(head)} |",
             f"| training data | {entry['training_data']} |",
             f"| calibration | temperature {calibration.temperature:.3f}, {recipe.output.ood} OOD threshold "
             f"{calibration.ood_threshold:.3f} ({recipe.output.ood_quantile:.0%} of out-of-fold scores); fitted on "
             f"the CV folds' out-of-fold outputs (`{Path(entry['weights']).stem}.calibration.json`) |",
             "", "## Metrics (source: `model.json`; faces: the shipped weights on every FER2013 test face of the "
                 "four mapped expressions, scored as `emoadapt predict` scores)", "",
             "```json", json.dumps(entry.get("metrics", {})), "```",
             "", "## Cross-validation of this recipe (source: `cv.json`)", "",
             "| labelled images, test folds | validation folds | FER2013 PublicTest 4-class | FER2013 PrivateTest 4-class |",
             "|---|---|---|---|",
             f"| {pct('test')} | {pct('val')} | {pct('faces_val')} | {pct('faces_test')} |", "",
             "Mean ± sample standard deviation over the folds (`--cv`, final mode): each fold's head is trained "
             "on every other fold with the recipe's fixed settings and scored as `emoadapt predict` scores.",
             "The shipped head is trained on every labelled image with the same recipe."]
    if "test_mean" in cv:
        faces = (f" and about {100 * cv['faces_test_mean']:.0f} % on FER2013-like face crops of the mapped "
                 "expressions" if "faces_test_mean" in cv else "")
        lines += ["", f"**What to expect on unseen images**: about {100 * cv['test_mean']:.0f} % "
                      f"(± {100 * cv['test_sd']:.0f} points from fold to fold) on unseen photos like the labelled "
                      f"ones{faces}; less on paintings, screenshots, drawings or other kinds of image it never saw."]
    if affect:
        lines += ["", "## Affect heads (source: `run.json`)", "",
                  f"`{Path(entry['weights']).stem}.affect.safetensors`: valence, arousal and the 7-way distribution, "
                  f"chosen {affect['choice']}, validation (n = {affect['n_val']}): "
                  + ", ".join(f"{k} {v}" for k, v in affect["validation"].items())]
    lines += ["", "## Intended use and limits", "",
              "Research on image emotion (what a picture is likely to evoke), not a judgement about people. "
              "Inherits the research-only terms of its training data."]
    return "\n".join(lines) + "\n"


def stage_words(stages: tuple[int, ...]) -> str:
    """The scene branch's extra pooled stages, in words (for the card)."""
    if not stages:
        return ""
    return f", and the scene branch's stage{'s' if len(stages) > 1 else ''} {', '.join(map(str, stages))} outputs"


def head_words(head) -> str:
    """The head of a recipe, in words (for the card)."""
    if head.experts:
        return ("domain-gated experts: a scene-only linear head, a face-only linear head and a gate (a logistic "
                "regression telling faces from the labelled images) mixing their probabilities")
    return "a linear classifier" if not head.hidden else f"dense {head.hidden} + ReLU, then a linear classifier"


def objective_words(head) -> str:
    """The loss and optimiser of a recipe, in words (for the card)."""
    loss = (f"CE(labelled images, smoothing {head.label_smoothing}) + {head.alpha}·CE(FER2013 faces, mapped)"
            + (f" + {head.lam}·{head.discrepancy}" if head.discrepancy != "none" and head.lam else ""))
    views = f"{head.train_views or head.views} view(s) per image"
    if head.solver == "lbfgs":
        return f"{loss} + {head.l2}/2·|W|², fitted full batch (L-BFGS; convex), {views}"
    return f"{loss}; AdamW lr {head.lr}, wd {head.weight_decay}, {head.epochs} epochs (fixed), batch {head.batch_size}, {views}"


def ship(recipe: Recipe, out: Path, recipe_file: str, command: str, say: Progress = print_progress) -> dict[str, Any]:
    """Steps 4 (final) to 7: the final head, calibration, affect heads, then ``out/model.*`` and the
    registry entry ``out/model.json``. Needs ``out/cv.json`` (run ``--cv`` first)."""
    from ..models.affect import save_affect, sidecar_path
    from ..models.registry import sha256
    from ..models.weights import save_weights

    if not (out / "cv.json").exists():
        raise RecipeError(f"{out}/cv.json is missing: run emoadapt train --config {recipe_file} --out {out} --cv "
                          "first (the calibration and the card read it)")
    cv = json.loads((out / "cv.json").read_text())
    weights = out / "model.safetensors"
    if (out / "model.json").exists() and weights.exists():
        entry = json.loads((out / "model.json").read_text())
        if entry.get("sha256") == sha256(weights):
            say(f"[ship] {weights} is already made (sha256 {entry['sha256'][:12]}…)")
            return entry
    model, data, classes = train_final(recipe, out, say)
    extra = {"classes": list(classes), "preset": recipe.name, "tta": recipe.output.tta, "fit": recipe.output.fit,
             "recipe": recipe.to_dict(), "command": command,
             "metrics": {k: v for k, v in cv.items() if k.endswith(("_mean", "_sd"))}}
    save_weights(weights, model, model.config.to_dict(), extra, dtype=torch.float16)
    digest = sha256(weights)
    # the fp16 file is what ships: calibrate and fit the affect heads on the model as it loads
    from ..models.registry import load_model

    shipped, _ = load_model(weights)
    faces = face_scores(shipped, data, recipe.output.tta)
    metrics = {f"fer2013_{split}_4class_accuracy": round(faces[key], 4)
               for split, key in (("publictest", "faces_val"), ("privatetest", "faces_test")) if key in faces}
    metrics.update({f"cv_{key}": round(value, 4) for key, value in cv.items() if key.endswith(("_mean", "_sd"))})
    calibration = calibrate_from_cv(recipe, out, data, classes, digest, command, model=shipped)
    calibration.save(out / "model.calibration.json")
    heads, affect = fit_affect(recipe, out, shipped, say)
    entry = {"name": recipe.name, "weights": f"{recipe.name}.safetensors", "sha256": digest,
             "classes": list(classes), "config": shipped.config.to_dict(), "command": command, "source": command,
             "description": f"made by emoadapt train from {recipe_file}: face branch ⊕ ImageNet EfficientNet-"
                            f"{recipe.scene.variant.capitalize()} scene branch ({recipe.output.fit} input, "
                            f"{recipe.scene.input_size} px), {head_words(recipe.head)}",
             "recipe_file": recipe_file, "calibration": f"{recipe.name}.calibration.json",
             "training_data": f"{len(data['target_labels'])} labelled images of {recipe.data.target} (every one: "
                              f"the final fit)" + (f" and {recipe.data.source_limit} FER2013 Training faces of the "
                                                    f"mapped classes" if "faces_train" in data else "")}
    if heads is not None:
        path = save_affect(sidecar_path(weights), heads, digest, {**affect["validation"], "command": command})
        entry["affect_sha256"] = sha256(path)
    entry["metrics"] = metrics
    (out / "model.md").write_text(model_card(recipe, entry, cv, affect if heads is not None else None, calibration))
    atomic_write_json(out / "model.json", entry)
    atomic_write_json(out / "run.json", {"cv": {k: v for k, v in cv.items() if k != "folds"},
                                         "affect": affect, "calibration": calibration.fitted, "entry": entry})
    say(f"[ship] {weights} sha256 {digest[:12]}…; registry entry {out / 'model.json'}")
    return entry


def install(out: Path, entry: dict[str, Any]) -> None:
    """Copy ``out/model.*`` into the package's ``weights/`` under the recipe's name and write the
    registry entry into ``weights/registry.json`` (data, read by :mod:`emoadapt.models.registry`)."""
    import shutil
    from importlib import resources

    from ..models.registry import REGISTRY_FILE

    weights_dir = Path(str(resources.files("emoadapt") / "weights"))
    name = entry["name"]
    for suffix in (".safetensors", ".calibration.json", ".affect.safetensors", ".md"):
        source = out / f"model{suffix}"
        if source.exists():
            with atomic_path(weights_dir / f"{name}{suffix}", suffix=suffix) as tmp:
                shutil.copyfile(source, tmp)
    registry = json.loads(REGISTRY_FILE.read_text()) if REGISTRY_FILE.exists() else {}
    registry[name] = {**registry.get(name, {}), **entry}
    atomic_write_json(REGISTRY_FILE, registry)
    print_progress(f"[install] {name}: weights/{name}.* and {REGISTRY_FILE.name}")
    int8 = registry[name].get("int8")
    if int8 and int8.get("fp32_sha256") != registry[name].get("sha256"):
        print_progress(f"[install] {name}: its int8 copy was made from other weights, so explanations run in fp32 "
                       f"until it is rebuilt: emoadapt quantize --config {int8.get('config', 'CONFIG')} --install")
