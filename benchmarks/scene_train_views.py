"""Issue #30: does the recipe's scene expert gain from more training views (random resized crops)?

    python benchmarks/scene_train_views.py      # needs `python benchmarks/scene_partial_ft.py maps` first

The shipped recipe fits its scene expert (L-BFGS logistic regression, ``l2`` 1.0) on 4 views of each
training image (the fit, its mirror image, 2 random resized crops). With the 8-view stage-5 maps of
``scene_partial_ft.py`` (views 2–3 are the recipe's crops, 4–7 new ones) the frozen features of every
view are cheap, so this grid — training views {2, 4, 6, 8} × l2 {0.3, 1, 3} — is scored on the
validation folds (select mode: test fold k, validation fold k+1 of the issue's StratifiedKFold, seed
0 and 1); the best validation mean is then scored once on the test folds (final mode: the four other
folds train) beside the shipped setting, both seeds. Writes ``benchmarks/results/scenes/train-views.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.stats import standard_error  # noqa: E402
from benchmarks.scene_partial_ft import (all_features, default_model, expert_accuracy, fit_expert,  # noqa: E402
                                         load_maps, skf_folds)
from benchmarks.scene_probe import scene_samples  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "scenes" / "train-views.json"
SHIPPED = (4, 1.0)


def scores(features, labels, views: int, l2: float, mode: str, seed: int) -> list[float]:
    """Accuracy per fold k (validation fold k+1 in select mode, test fold k in final mode)."""
    fold = skf_folds(labels, seed)
    out = []
    for k in range(5):
        val = (k + 1) % 5
        train = np.flatnonzero((fold != k) & ((fold != val) | (mode == "final")))
        scored = np.flatnonzero(fold == (val if mode == "select" else k))
        out.append(expert_accuracy(fit_expert(features, labels, train, l2, views), features, labels, scored))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, nargs="+", default=[2, 4, 6, 8], help="training views to try")
    parser.add_argument("--l2", type=float, nargs="+", default=[0.3, 1.0, 3.0], help="l2 values to try")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, name, sha = default_model()
    _, labels = scene_samples()
    features = all_features(model, load_maps(), 8)
    grid = {}
    for views in args.views:
        for l2 in args.l2:
            folds = {f"seed{s}": scores(features, labels, views, l2, "select", s) for s in (0, 1)}
            flat = folds["seed0"] + folds["seed1"]
            grid[f"views{views} l2 {l2:g}"] = {"views": views, "l2": l2, "val_folds": folds, "val_mean": float(np.mean(flat))}
            print(f"views {views} l2 {l2:g}: validation {100 * np.mean(flat):.2f}", flush=True)
    best = max(grid.values(), key=lambda row: row["val_mean"])
    test = {}
    for views, l2 in {(best["views"], best["l2"]), SHIPPED}:
        folds = {f"seed{s}": scores(features, labels, views, l2, "final", s) for s in (0, 1)}
        test[f"views{views} l2 {l2:g}"] = {"test_folds": folds, "test_mean": float(np.mean(folds["seed0"] + folds["seed1"]))}
    chosen = f"views{best['views']} l2 {best['l2']:g}"
    shipped = f"views{SHIPPED[0]} l2 {SHIPPED[1]:g}"
    diffs = (np.array(test[chosen]["test_folds"]["seed0"] + test[chosen]["test_folds"]["seed1"])
             - np.array(test[shipped]["test_folds"]["seed0"] + test[shipped]["test_folds"]["seed1"]))
    write_json(OUT, {"what": __doc__.split("\n\n")[0], "grid": grid, "chosen": chosen, "shipped": shipped,
                     "chosen_minus_shipped_val": grid[chosen]["val_mean"] - grid[shipped]["val_mean"],
                     "test": test, "chosen_minus_shipped_test": {"mean": float(diffs.mean()), "se": standard_error(diffs)},
                     **provenance(model=name, weights_sha256=sha)})
    print(f"chosen on validation: {chosen}; test {100 * test[chosen]['test_mean']:.2f} vs shipped "
          f"{100 * test[shipped]['test_mean']:.2f} ({100 * diffs.mean():+.2f} ± {100 * standard_error(diffs):.2f})")


if __name__ == "__main__":
    main()
