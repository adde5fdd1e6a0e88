"""The shipped recipe in the issue #30 probe's own folds: StratifiedKFold(5, shuffle) x seeds 0, 1.

    python benchmarks/recipe_skf.py            # writes benchmarks/results/scenes/recipe-skf.json

``emoadapt train --cv`` scores the recipe in the five folds of ``folds.json``; the reference probe
(``benchmarks/scene_probe.py cv``, ``probe-cv.json``) was measured in sklearn's StratifiedKFold over
the 1,056 images sorted by path, seeds 0 and 1. This script writes those ten folds as split
manifests and runs the product's cross-validation (final mode: each fold's head trains on the four
others) of ``configs/emoadapt-ier.toml`` in them, so the two can be compared fold by fold. A thin
layer over :func:`emoadapt.recipe.cross_validate` (the feature cache is shared with the recipe's runs).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.stats import standard_error, stratified_folds  # noqa: E402
from benchmarks.scene_probe import scene_samples  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "emoadapt-ier.toml"
RUNS = ROOT / "runs" / "recipe-skf"
OUT = ROOT / "benchmarks" / "results" / "scenes" / "recipe-skf.json"
PROBE = ROOT / "benchmarks" / "results" / "scenes" / "probe-cv.json"


def write_skf_manifest(seed: int, path: Path) -> Path:
    """folds.json's manifest with its assignments replaced by StratifiedKFold(5, seed)'s test folds."""
    from emoadapt.data.locate import dataset_path

    paths, labels = scene_samples()
    root = dataset_path("emotion6")
    manifest = json.loads((ROOT / "benchmarks" / "results" / "adaptation" / "folds.json").read_text())
    assignments = {Path(path).relative_to(root).as_posix(): f"fold{k}"
                   for path, k in zip(paths, stratified_folds(labels, seed))}
    manifest.update(assignments=assignments, seed=seed, kind="kfold")
    manifest.pop("counts", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # no options: --help only
    from emoadapt.models.registry import DEFAULT_MODEL, get_preset
    from emoadapt.recipe import cross_validate, load_recipe

    base = load_recipe(RECIPE)
    rows = {}
    for seed in (0, 1):
        manifest = write_skf_manifest(seed, RUNS / f"skf{seed}-folds.json")
        recipe = replace(base, data=replace(base.data, folds=str(manifest)))
        result = cross_validate(recipe, RUNS / f"skf{seed}", mode="final")
        rows[f"seed{seed}"] = [result["folds"][f"fold{k}"]["test"] for k in range(5)]
    scores = rows["seed0"] + rows["seed1"]
    probe = json.loads(PROBE.read_text())["runs"]["lite0:cc,ccf"]
    diffs = np.array(scores) - np.array(probe["folds"])
    write_json(OUT, {"what": "the shipped recipe (final mode) in the reference probe's StratifiedKFold(5) x seeds "
                             "0, 1, fold by fold against the probe (probe-cv.json lite0:cc,ccf)",
                     "sd": "sample sd over the 10 fold scores; se of the paired differences",
                     "recipe": str(RECIPE.relative_to(ROOT)), "folds": rows, "mean": float(np.mean(scores)),
                     "sd_folds": float(np.std(scores, ddof=1)), "probe_mean": probe["mean"],
                     "minus_probe_mean": float(diffs.mean()),
                     "minus_probe_se": standard_error(diffs),
                     **provenance(model=DEFAULT_MODEL, weights_sha256=get_preset(DEFAULT_MODEL).sha256)})
    print(f"recipe {100 * np.mean(scores):.1f} ± {100 * np.std(scores, ddof=1):.1f}; probe {100 * probe['mean']:.1f}; "
          f"paired {100 * diffs.mean():+.1f} ± {100 * standard_error(diffs):.1f}")


if __name__ == "__main__":
    main()
