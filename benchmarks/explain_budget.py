"""DnCShap under an evaluation budget: faithfulness and time against the full tree.

    python benchmarks/explain_budget.py [--weights emoadapt-ier] [--val-images 40] [--threads 2]

For each image (the bundled samples, plus the first ``--val-images`` of the Emotion6 validation
split when the dataset is present) and each configuration (full tree at depth T, or depth T with
``max_evals`` B), explain the predicted class with the shipped model in onnxruntime and score the
map by its deletion and insertion curves (20 steps, zero baseline; lower deletion AUC and higher
insertion AUC are better; see ``emoadapt.attribution.faithfulness``). A random map is the floor.
Prints a markdown table (means over images, and how often each configuration beats the full tree
at T = 8 — the default before this benchmark — on the same image) and writes ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from emoadapt.api import Predictor
from emoadapt.attribution import DnCShap
from emoadapt.attribution.faithfulness import deletion_insertion
from emoadapt.fileio import atomic_write_json

CONFIGS = {  # name -> (depth, max_evals)
    "T=6 full": (6, None),
    "T=7 full": (7, None),
    "T=8 full": (8, None),
    "T=8 budget 128": (8, 128),
    "T=8 budget 192": (8, 192),
    "T=10 budget 128": (10, 128),
    "T=10 budget 256": (10, 256),
}
REFERENCE = "T=8 full"


def images(val_count: int) -> list[tuple[str, str]]:
    """(name, path) of the bundled samples and the first ``val_count`` Emotion6 val images."""
    samples = Path(__file__).resolve().parents[1] / "src" / "emoadapt" / "samples"
    found = [(p.name, str(p)) for p in sorted(samples.glob("*.jpg"))]
    if val_count:
        from emotion6 import RESULTS, emotion6_splits

        from emoadapt.data.locate import dataset_path

        try:
            dataset_path("emotion6")
        except Exception as exc:  # the dataset is optional
            print(f"Emotion6 not found ({exc}); bundled samples only")
            return found
        val = emotion6_splits(32, manifest=RESULTS / "split.json")["val"]
        found += [(f"emotion6 val {i}", p) for i, p in enumerate(val.paths[:val_count])]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="emoadapt-ier", help="shipped model name or .safetensors file")
    parser.add_argument("--val-images", type=int, default=40)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default="benchmarks/results/explain_budget.json")
    args = parser.parse_args()

    predictor = Predictor(args.weights, runtime="onnx", threads=args.threads)
    rng = np.random.default_rng(0)
    rows: dict[str, list[dict]] = {name: [] for name in [*CONFIGS, "random map"]}
    todo = images(args.val_images)
    for name, path in tqdm(todo, desc="images"):
        x = predictor.preprocess(path)
        target = None
        for config, (depth, budget) in CONFIGS.items():
            explainer = DnCShap(predictor.session, depth=depth, max_evals=budget, batch_size=args.batch_size)
            e = explainer.attribute(x, target)
            target = e.target
            curves = deletion_insertion(predictor.session, x, e.map, target, batch_size=args.batch_size)
            rows[config].append({"image": name, "evaluations": e.evaluations, "seconds": e.seconds,
                                 "regions": len(e.values), "deletion_auc": curves.deletion_auc,
                                 "insertion_auc": curves.insertion_auc})
        noise = rng.normal(size=tuple(x.shape[1:]))
        curves = deletion_insertion(predictor.session, x, noise, target, batch_size=args.batch_size)
        rows["random map"].append({"image": name, "evaluations": 0, "seconds": 0.0, "regions": 0,
                                   "deletion_auc": curves.deletion_auc, "insertion_auc": curves.insertion_auc})

    summary = {}
    reference = rows[REFERENCE]
    for config, runs in rows.items():
        mean = {key: statistics.mean(r[key] for r in runs) for key in ("evaluations", "seconds", "regions",
                                                                         "deletion_auc", "insertion_auc")}
        mean["deletion_better_than_reference"] = float(np.mean(
            [r["deletion_auc"] < ref["deletion_auc"] for r, ref in zip(runs, reference)]))
        mean["insertion_better_than_reference"] = float(np.mean(
            [r["insertion_auc"] > ref["insertion_auc"] for r, ref in zip(runs, reference)]))
        summary[config] = mean
    machine = f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}"
    result = {"weights": args.weights, "images": len(todo), "machine": machine, "date": time.strftime("%Y-%m-%d"),
              "batch_size": args.batch_size, "summary": summary, "rows": rows}
    atomic_write_json(args.out, result)
    print(f"\n{args.weights}, {len(todo)} images, onnxruntime, {machine}\n")
    print("| configuration | evaluations | regions | seconds | deletion AUC ↓ | insertion AUC ↑ "
          f"| deletion better than {REFERENCE} | insertion better |")
    print("|---|---|---|---|---|---|---|---|")
    for config, s in summary.items():
        print(f"| {config} | {s['evaluations']:.0f} | {s['regions']:.0f} | {s['seconds']:.2f} | "
              f"{s['deletion_auc']:.3f} | {s['insertion_auc']:.3f} | {s['deletion_better_than_reference']:.0%} | "
              f"{s['insertion_better_than_reference']:.0%} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
