"""Issue #30 lead: does the shipped recipe lose scene accuracy to its gate or to standardising the
scene features over faces and scenes together? Validation folds only.

    python benchmarks/scene_gate_check.py      # after `python benchmarks/recipe_skf.py` (shares its feature cache)

In the issue's StratifiedKFold (seeds 0 and 1, select mode: test fold k untouched, validation fold k+1,
the other three train) the product's head step (:func:`emoadapt.recipe.train_head`, the shipped
recipe) is fitted per fold, and its validation images are read three ways: (a) the product's output
(gate-weighted experts, flip averaging); (b) its scene expert alone (same weights and standardisation,
no gate); (c) a scene expert refitted like (b) but standardised over the labelled images only. The share
of validation images the gate sends mostly (> 0.5) to the face expert is recorded too. Writes
``benchmarks/results/scenes/gate-check.json``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.stats import standard_error  # noqa: E402
from benchmarks.recipe_skf import RECIPE, write_skf_manifest  # noqa: E402
from benchmarks.scene_partial_ft import expert_accuracy, fit_expert  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "gate-check"
OUT = ROOT / "benchmarks" / "results" / "scenes" / "gate-check.json"


@torch.no_grad()
def scene_expert_probs(model, features: np.ndarray) -> np.ndarray:
    """Flip-averaged probabilities (N, K) of the scene expert alone on cached features (V, N, C)."""
    out = 0
    for view in (0, 1):
        z = (torch.from_numpy(features[view]).float() - model.feature_mean) / model.feature_std
        out = out + model.expert_heads["scene"](model.split_features(z)["scene"]).softmax(1)
    return (out / 2).numpy()


@torch.no_grad()
def face_gate_share(model, features: np.ndarray) -> float:
    """Share of images whose gate weight on the face expert exceeds 0.5 (view 0)."""
    from emoadapt.models.fusion import BRANCHES

    z = (torch.from_numpy(features[0]).float() - model.feature_mean) / model.feature_std
    gate = model.gate(z).softmax(1)[:, 1 + BRANCHES.index("face")]
    return float((gate > 0.5).float().mean())


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    from emoadapt.models.registry import DEFAULT_MODEL, get_preset
    from emoadapt.recipe import load_recipe
    from emoadapt.recipe.branches import face_branch, start_model
    from emoadapt.recipe.features import encode_all
    from emoadapt.recipe.heads import head_logits, train_head
    from emoadapt.recipe.inputs import fold_plan, target_dataset

    base = load_recipe(RECIPE)
    rows = {}
    for seed in (0, 1):
        manifest = write_skf_manifest(seed, RUNS / f"skf{seed}-folds.json")
        recipe = replace(base, data=replace(base.data, folds=str(manifest)))
        out = RUNS / f"skf{seed}"
        out.mkdir(parents=True, exist_ok=True)
        dataset, classes = target_dataset(recipe)
        data = encode_all(recipe, start_model(recipe, face_branch(recipe, out), classes), dataset, out)
        plan = fold_plan(recipe, dataset, out)
        assigned = np.array([plan[k] for k in data["keys"]])
        labels = data["target_labels"]
        for k in range(5):
            val = np.flatnonzero(assigned == f"fold{(k + 1) % 5}")
            train = np.flatnonzero((assigned != f"fold{k}") & (assigned != f"fold{(k + 1) % 5}"))
            model = train_head(recipe, start_model(recipe, out / "face.safetensors", classes), data, train, val,
                               out / f"select-fold{k}", classes)
            product = head_logits(model, data["target"][:, val], recipe.output.tta).argmax(1)
            expert = scene_expert_probs(model, data["target"][:, val]).argmax(1)
            # (c): the scene columns alone, standardised over the labelled training views (scene_partial_ft's expert)
            scene = data["target"][..., model.widths["face"]:]
            alone = expert_accuracy(fit_expert(scene, labels, train, recipe.head.l2, recipe.head.train_views),
                                    scene, labels, val)
            rows[f"seed{seed} fold{k}"] = {"product": float((product == labels[val]).mean()),
                                           "scene_expert": float((expert == labels[val]).mean()),
                                           "scene_only_standardised": alone,
                                           "face_gate_share": face_gate_share(model, data["target"][:, val]),
                                           "n_val": int(len(val))}
            print(f"seed {seed} fold {k}: " + ", ".join(f"{key} {value:.4f}" for key, value in rows[f'seed{seed} fold{k}'].items()), flush=True)
    summary = {}
    for key in ("product", "scene_expert", "scene_only_standardised", "face_gate_share"):
        values = np.array([row[key] for row in rows.values()])
        summary[key] = float(values.mean())
    for key in ("scene_expert", "scene_only_standardised"):
        diffs = np.array([row[key] - row["product"] for row in rows.values()])
        summary[f"{key}_minus_product"] = {"mean": float(diffs.mean()), "se": standard_error(diffs)}
    write_json(OUT, {"what": __doc__.split("\n\n")[0], "folds": rows, "summary": summary,
                     **provenance(model=DEFAULT_MODEL, weights_sha256=get_preset(DEFAULT_MODEL).sha256)})
    print(summary)


if __name__ == "__main__":
    main()
