"""Paired fold-by-fold differences between results files already written (no model is run).

    python benchmarks/paired_folds.py

Reads the five test folds of ``benchmarks/results/adaptation/folds.json`` as three results files
report them and writes ``benchmarks/results/scenes/paired-folds.json``:

  recipe_minus_probe     the shipped recipe's final-mode CV (``scenes/emoadapt-ier-cv.json``) minus the
                         issue's probe in the same folds (``scenes/layers-cv.json``, run ``head:cc,ccf``)
  recipe_minus_previous  the same CV minus the previous default's (that file as committed at
                         ``PREVIOUS``, read with ``git show``)

each as the per-fold differences (points) and their mean ± standard error (sample sd / √5).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import REPO, provenance, write_json  # noqa: E402
from benchmarks.lib.stats import standard_error  # noqa: E402

SCENES = Path("benchmarks/results/scenes")
CV = SCENES / "emoadapt-ier-cv.json"
PROBE = SCENES / "layers-cv.json"
PREVIOUS = "e75c5ad"  # the commit whose emoadapt-ier-cv.json is the morning default's of 2026-12-07


def fold_scores(cv: dict) -> list[float]:
    """Test accuracy of folds 0…4 of an ``emoadapt train --cv`` record."""
    return [cv["folds"][f"fold{k}"]["test"] for k in range(len(cv["folds"]))]


def paired(a: list[float], b: list[float]) -> dict:
    """Per-fold a − b in points, with the mean and its standard error."""
    diffs = 100 * (np.asarray(a) - np.asarray(b))
    return {"per_fold": [round(float(d), 2) for d in diffs], "mean": float(diffs.mean()),
            "se": standard_error(diffs)}


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # no options: --help only
    recipe = fold_scores(json.loads((REPO / CV).read_text()))
    probe = json.loads((REPO / PROBE).read_text())["runs"]["head:cc,ccf"]["folds"]
    previous = fold_scores(json.loads(subprocess.run(["git", "show", f"{PREVIOUS}:{CV}"], cwd=REPO, check=True,
                                                     capture_output=True, text=True).stdout))
    out = write_json(REPO / SCENES / "paired-folds.json", {
        "what": "fold-by-fold differences (points) in the five test folds of folds.json; mean ± SE over folds",
        "recipe_minus_probe": paired(recipe, probe),
        "recipe_minus_previous": {**paired(recipe, previous), "previous": f"{CV}@{PREVIOUS}"},
        **provenance(sources=[str(CV), f"{PROBE}#runs.head:cc,ccf.folds"])})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
