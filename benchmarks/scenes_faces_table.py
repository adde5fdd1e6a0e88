"""Issue #30's table: the shipped recipe, its ablations and the reference probe, in the same folds,
scenes and faces side by side. A thin layer over the product's trainer (``emoadapt train``).

    python benchmarks/scenes_faces_table.py [--rows shipped target-only ...] [--threads 2]

Every row is a variant of ``configs/emoadapt-ier.toml`` run through
:func:`emoadapt.recipe.cross_validate` in ``select`` mode (fold k test, fold k+1
validation, the rest training; ``benchmarks/results/adaptation/folds.json``): rows are chosen on
validation; the runs share one feature cache. The
``probe`` row is issue #30's reference protocol (frozen ImageNet Lite0, short side 256 bicubic,
centre 224, flip-averaged features, StandardScaler + LogisticRegression with C by inner 5-fold CV)
trained on the same training folds (training + validation folds: it needs no validation) and
scored on the same test folds, from ``benchmarks/scene_probe.py``'s cache.

Writes ``benchmarks/results/scenes/table.json`` (every fold) and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent
RECIPE = ROOT.parent / "configs" / "emoadapt-ier.toml"
RUNS = ROOT.parent / "runs" / "table"
OUT = ROOT / "results" / "scenes" / "table.json"

#: row name -> changes to the shipped recipe's [scene] / [head] / [output] tables
ROWS = {
    "shipped recipe (select)": {},
    "AdamW linear head, 4 views, smoothing 0.1, 30 epochs": {"head": {"solver": "adamw", "train_views": 0,
                                                                      "label_smoothing": 0.1}},
    "target-only (alpha 0)": {"head": {"alpha": 0.0}},
    "alpha 1": {"head": {"alpha": 1.0}},
    **{name: {"head": {"hidden": 256, "input_dropout": 0.1, "dropout": 0.3, "experts": False, "solver": "adamw",
                       "train_views": 0, "label_smoothing": 0.1, "discrepancy": d, "lam": 1.0 if d != "none" else 0.0}}
       for name, d in (("AdamW MLP head (256)", "none"), ("AdamW MLP (256) + mmd", "mmd"),
                       ("AdamW MLP (256) + coral", "coral"))},
    "no flip averaging": {"output": {"tta": "none"}},
    "weight decay 0.1": {"head": {"weight_decay": 0.1}},
    "weight decay 1": {"head": {"weight_decay": 1.0}},
    "2 views (no random crops)": {"head": {"views": 2}},
    "60 epochs": {"head": {"epochs": 60}},
    "experts (shared + scene + face, gated)": {"head": {"experts": True}},
    **{f"lbfgs, l2 {l2}": {"head": {"solver": "lbfgs", "l2": l2}} for l2 in (0.01, 0.03, 0.1, 0.3)},
    "lbfgs, l2 0.1, alpha 0": {"head": {"solver": "lbfgs", "l2": 0.1, "alpha": 0.0}},
    **{f"lbfgs, l2 {l2}, 2 views, no smoothing": {"head": {"solver": "lbfgs", "l2": l2, "train_views": 2,
                                                            "label_smoothing": 0.0}} for l2 in (0.03, 0.1, 0.3, 1.0)},
    "domain-gated experts (scene-only and face-only heads, gate)": {"head": {"experts": True}},
    **{f"domain-gated experts, lbfgs, l2 {l2}": {"head": {"solver": "lbfgs", "l2": l2, "experts": True}}
       for l2 in (0.03, 0.1, 0.3)},
    # session 15: mid-level scene statistics (benchmarks/scene_layers.py: stages 5-7 by its validation column)
    **{f"scene stages 5-7, l2 {l2}": {"scene": {"stages": (5, 6, 7)}, "head": {"l2": l2}} for l2 in (0.1, 0.3, 1.0)},
    "scene stages 5-7, l2 0.3, 4 training views": {"scene": {"stages": (5, 6, 7)}, "head": {"train_views": 4}},
    **{f"scene stages 5-7, l2 {l2}, 4 training views": {"scene": {"stages": (5, 6, 7)},
                                                       "head": {"l2": l2, "train_views": 4}} for l2 in (1.0, 3.0)},
    **{f"scene stages 5-7, l2 {l2}, 8 training views": {"scene": {"stages": (5, 6, 7)},
                                                       "head": {"l2": l2, "views": 8, "train_views": 8}}
       for l2 in (0.3, 1.0)},
    "no scene stages, l2 1.0, 4 training views": {"scene": {"stages": ()}, "head": {"l2": 1.0, "train_views": 4}},
}


def variant(base, changes: dict):
    """The recipe with some [scene] / [head] / [output] keys changed."""
    for table, values in changes.items():
        base = replace(base, **{table: replace(getattr(base, table), **values)})
    return base


def probe_in_folds() -> dict:
    """The reference probe trained on folds ≠ k, scored on fold k of folds.json."""
    import scene_probe  # noqa: E402  (sibling script)

    from emoadapt.data import open_dataset
    from emoadapt.data.locate import dataset_path
    from emoadapt.data.splits import read_manifest, sample_key

    x, y, _ = scene_probe.features("lite0:cc,ccf")
    data = np.load(scene_probe.CACHE / "lite0.npz")
    dataset = open_dataset(dataset_path("emotion6"), "emotion6")
    key_of = {s.path: sample_key(s, dataset.root) for s in dataset.samples}
    assigned = read_manifest(ROOT / "results" / "adaptation" / "folds.json").assignments
    folds = np.array([assigned[key_of[p]] for p in data["paths"]])
    rows = {}
    for name in sorted(set(folds)):
        train, test = folds != name, folds == name
        search = scene_probe.probe_fit(x[train], y[train], seed=0)
        rows[name] = {"test": float(search.score(x[test], y[test]))}
    return rows


def summarise(folds: dict) -> dict:
    out = {}
    for key in ("test", "val", "faces_val", "faces_test"):
        values = [row[key] for row in folds.values() if key in row]
        if values:
            out[key] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)), "n_folds": len(values)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="*", default=["probe", *ROWS], help="rows to (re)compute: probe and/or "
                                                                             + ", ".join(ROWS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--final", type=Path, default=None,
                        help="a run folder of `emoadapt train --cv` (final mode): its cv.json becomes the row "
                             "'shipped (final)', and its model.json names the weights in the provenance")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results file (default {OUT.relative_to(ROOT.parent)})")
    args = parser.parse_args()
    import torch

    from emoadapt.recipe import cross_validate
    from emoadapt.recipe import load_recipe

    torch.set_num_threads(args.threads)
    table = json.loads(args.out.read_text())["rows"] if args.out.exists() else {}
    base = load_recipe(RECIPE)
    model = {}
    if args.final is not None:
        cv = json.loads((args.final / "cv.json").read_text())
        folds = {k: {key: v for key, v in row.items() if key in ("test", "faces_val", "faces_test")}
                 for k, row in cv["folds"].items()}
        table["shipped (final)"] = {"changes": "the shipped recipe, each fold's head trained on the 4 other folds "
                                               f"({args.final}/cv.json)", "folds": folds, **summarise(folds)}
        entry = json.loads((args.final / "model.json").read_text()) if (args.final / "model.json").exists() else {}
        model = {"model": entry.get("name"), "weights_sha256": entry.get("sha256")} if entry else {}
        write_json(args.out, {"what": "Emotion6 5-fold CV (folds.json, fold k test) and FER2013 4-class faces, "
                                      "the shipped recipe and its ablations", "sd": "sample sd over folds",
                              "recipe": str(RECIPE.relative_to(ROOT.parent)), "rows": table, **provenance(**model)})
        print(row_markdown("shipped (final)", table["shipped (final)"]))
    for name in args.rows:
        if name == "probe":
            folds = probe_in_folds()
        else:
            run = RUNS / name.replace(" ", "_").replace("(", "").replace(")", "")
            result = cross_validate(variant(base, ROWS[name]), run, mode="select")
            folds = {k: {key: v for key, v in row.items() if key in ("test", "val", "faces_val", "faces_test")}
                     for k, row in result["folds"].items()}
        table[name] = {"changes": ROWS.get(name, "issue #30 reference probe"), "folds": folds, **summarise(folds)}
        write_json(args.out, {"what": "Emotion6 5-fold CV (folds.json, fold k test) and FER2013 4-class faces, "
                                 "the shipped recipe and its ablations", "sd": "sample sd over folds",
                         "recipe": str(RECIPE.relative_to(ROOT.parent)), "rows": table, **provenance(**model)})
        print(row_markdown(name, table[name]), flush=True)


def row_markdown(name: str, row: dict) -> str:
    def cell(key):
        return f"{100 * row[key]['mean']:.1f} ± {100 * row[key]['sd']:.1f}" if key in row else "—"

    return f"| {name} | {cell('test')} | {cell('val')} | {cell('faces_val')} | {cell('faces_test')} |"


if __name__ == "__main__":
    main()
