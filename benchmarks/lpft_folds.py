"""LP-FT on Emotion6 (issue #30): the scene probe first (frozen ImageNet EfficientNet-Lite0, flip-
averaged features, logistic regression), then the whole network fine-tuned on the target images
alone — one ``emoadapt adapt`` run per fold of ``benchmarks/results/adaptation/folds.json`` (test
fold k, validation fold k+1, the other three to train: the select split of the scenes table).

    python benchmarks/lpft_folds.py --command 0      # print the product command of fold 0 (run it, resumable)
    python benchmarks/lpft_folds.py --collect        # runs/lpft/fold*/ -> benchmarks/results/scenes/lpft.json

A fold takes about 1.5 h of this 2-core CPU (6 epochs of 634 images at 224 px, busy box), so the
folds run across sessions (``--resume`` continues a killed run at its last epoch). ``--collect``
records, per fold, every epoch's train and validation accuracy (flip-averaged) and the shipped
recipe's validation accuracy on the same split, from benchmarks/results/scenes/table.json; test
accuracies are left to the end (report test once).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.stats import standard_error  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "lpft"
TABLE = REPO / "benchmarks" / "results" / "scenes" / "table.json"
SHIPPED_ROW = "shipped recipe, select mode: domain-gated experts, lbfgs, l2 0.3, 2 views, no smoothing"
EPOCHS = 6


def command(fold: int) -> str:
    """The product command of one fold (flags as measured in session 14)."""
    return (f"emoadapt adapt --target .cache/data/emotion6/Emotion6 --manifest benchmarks/results/adaptation/folds.json "
            f"--folds 5 --fold {fold} --init imagenet-lite0 --head probe --bottleneck 0 --source-limit 0 --alpha 0 "
            f"--discrepancy none --fit crop --input-size 224 --epochs {EPOCHS} --lr 1e-4 --backbone-lr-scale 1.0 "
            f"--weight-decay 0.01 --threads 2 --no-progress --out runs/lpft/fold{fold}")


def collect() -> dict:
    """Every fold run found under runs/lpft/: its epochs and the shipped recipe's val on its split."""
    shipped = json.loads(TABLE.read_text())["rows"][SHIPPED_ROW]["folds"]
    folds = {}
    for log in sorted(RUNS.glob("fold*/log.jsonl")):
        name = log.parent.name
        epochs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        best = max(epochs, key=lambda r: r["val_acc"])
        folds[name] = {"command": command(int(name[4:])), "epochs_run": len(epochs), "epochs_planned": EPOCHS,
                       "epochs": [{k: r[k] for k in ("epoch", "train_loss", "train_acc", "val_acc", "epoch_seconds")}
                                  for r in epochs],
                       "best_val": best["val_acc"], "best_epoch": best["epoch"],
                       "shipped_recipe_val": shipped[name]["val"]}
    return folds


def summary(folds: dict) -> dict:
    """Means over the folds of the best validation epoch (chosen on validation itself: an optimistic
    figure for LP-FT), the last epoch and the shipped recipe, and the paired best − recipe difference."""
    best = np.array([row["best_val"] for row in folds.values()])
    last = np.array([row["epochs"][-1]["val_acc"] for row in folds.values()])
    recipe = np.array([row["shipped_recipe_val"] for row in folds.values()])
    return {"n_folds": len(best), "best_val_mean": float(best.mean()), "last_val_mean": float(last.mean()),
            "shipped_recipe_val_mean": float(recipe.mean()),
            "best_minus_recipe": {"mean": float((best - recipe).mean()),
                                  "se": standard_error(best - recipe) if len(best) > 1 else None}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--command", type=int, metavar="FOLD", help="print the emoadapt adapt command of FOLD")
    parser.add_argument("--collect", action="store_true", help="write benchmarks/results/scenes/lpft.json")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scenes" / "lpft.json"),
                        help="results JSON of --collect")
    args = parser.parse_args()
    if args.command is not None:
        print(command(args.command))
    if args.collect:
        # folds measured on another machine (their runs/ folder is not here) stay as the results file has them
        kept = json.loads(Path(args.out).read_text())["folds"] if Path(args.out).exists() else {}
        folds = dict(sorted({**kept, **collect()}.items()))
        write_json(args.out, {**provenance("lpft"), "what": __doc__.split("\n\n")[0], "folds": folds,
                              "summary": summary(folds)})
        for name, row in folds.items():
            print(f"{name}: best val {row['best_val']:.3f} (epoch {row['best_epoch']}/{row['epochs_run']}), "
                  f"shipped recipe val {row['shipped_recipe_val']:.3f}")


if __name__ == "__main__":
    main()
