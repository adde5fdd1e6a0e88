"""Which frozen ImageNet features read Emotion6 scenes best, with the input the product uses
(issue #16): backbone × input size × fit (``squash``: the whole image, the product's default;
``centre``: short side resized, centre crop), linear probe, plain + mirrored features averaged.

    python benchmarks/scene_backbones.py encode --backbone imagenet-lite0 --size 288 --fit squash
    python benchmarks/scene_backbones.py probe --features imagenet-lite0-288-squash imagenet-lite0-160-squash+...

Features are cached in ``.cache/features/scene-{backbone}-{size}-{fit}.npz`` ((N, 2, D): plain,
mirrored). The probe: standardise, logistic regression; the 5 folds of
``benchmarks/results/adaptation/folds.json`` (fold k test, fold k+1 validation chooses C, the other 3
train) and the 5-fold × 2-seed CV of SPEC §6 (4 folds train, C = 0.03). Writes
``benchmarks/results/faces_scenes/scene-backbones.json`` (one entry per feature set, kept across runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

import faces_scenes
from emoadapt.data import open_dataset
from emoadapt.data.locate import dataset_path
from emoadapt.data.arrays import load_arrays
from emoadapt.data.splits import sample_key
from emoadapt.fileio import atomic_path, atomic_write_json

OUT = faces_scenes.OUT / "scene-backbones.json"


def cache_file(backbone: str, size: int, fit: str):
    return faces_scenes.CACHE / f"scene-{backbone}-{size}-{fit}.npz"


def encode(args) -> None:
    torch.set_num_threads(args.threads)
    dataset = open_dataset(dataset_path("emotion6"), "emotion6").to_ier_dataset()
    arrays = load_arrays(dataset, args.size, 3, fit=args.fit)
    keys = {s.path: sample_key(s, dataset.root) for s in dataset.samples}
    model = faces_scenes.build_backbone(args.backbone, args.size, None)
    t0 = time.time()
    feats = [faces_scenes.pooled(model, images, batch=32)
             for images in (arrays.images, np.ascontiguousarray(arrays.images[:, :, ::-1]))]  # plain, mirrored
    seconds = time.time() - t0
    path = cache_file(args.backbone, args.size, args.fit)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, scene=np.stack(feats, 1), scene_labels=arrays.labels,
                 scene_keys=np.asarray([keys[p] for p in arrays.paths]), seconds=seconds)
    print(f"wrote {path} ({len(arrays.labels)} images × 2, {seconds:.0f} s, {1000 * seconds / len(arrays.labels) / 2:.1f} ms/img)")


def load(name: str) -> dict:
    parts = [np.load(cache_file(*_parse(p))) for p in name.split("+")]
    keys = list(parts[0]["scene_keys"])
    for p in parts[1:]:
        if list(p["scene_keys"]) != keys:
            raise SystemExit("feature sets list the images in different orders")
    return {"x": np.concatenate([p["scene"] for p in parts], -1), "y": parts[0]["scene_labels"], "keys": keys}


def _parse(part: str):
    backbone, size, fit = part.rsplit("-", 2)
    return backbone, int(size), fit


def fit_probe(x, y, c):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # train on both views (plain + mirrored) of every training image
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(
        x.reshape(-1, x.shape[-1]), np.repeat(y, x.shape[1]))


def score(clf, x, y) -> float:
    """Accuracy with the views' probabilities averaged."""
    p = clf.predict_proba(x.reshape(-1, x.shape[-1])).reshape(x.shape[0], x.shape[1], -1).mean(1)
    return float((p.argmax(1) == y).mean())


def probe(args) -> None:
    from sklearn.model_selection import StratifiedKFold

    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for name in args.features:
        data = load(name)
        x, y = data["x"], data["y"]
        masks = faces_scenes.split_masks(data["keys"])
        row = {}
        for plan, m in masks.items():
            vals = {c: score(fit_probe(x[m["train"]], y[m["train"]], c), x[m["val"]], y[m["val"]]) for c in args.cs}
            c = max(vals, key=vals.get)
            row[plan] = {"C": c, "val": vals[c], "test": score(fit_probe(x[m["train"]], y[m["train"]], c), x[m["test"]], y[m["test"]])}
        folds_val = [row[f"fold{k}"]["val"] for k in range(5)]
        folds_test = [row[f"fold{k}"]["test"] for k in range(5)]
        cv = []
        for seed in (0, 1):
            for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(x[:, 0], y):
                cv.append(score(fit_probe(x[train], y[train], 0.03), x[test], y[test]))
        row["folds_val"] = float(np.mean(folds_val))
        row["folds_test"] = {"mean": float(np.mean(folds_test)), "std": float(np.std(folds_test, ddof=1))}
        row["cv5x2_C0.03"] = {"mean": float(np.mean(cv)), "std": float(np.std(cv, ddof=1))}
        row["dim"] = int(x.shape[-1])
        results[name] = row
        print(f"{name:60s} d={x.shape[-1]:5d} split val {row['split']['val']:.3f} | folds val {row['folds_val']:.3f} "
              f"test {row['folds_test']['mean']:.3f} ± {row['folds_test']['std']:.3f} | 5×2 CV {row['cv5x2_C0.03']['mean']:.3f} "
              f"± {row['cv5x2_C0.03']['std']:.3f}", flush=True)
        atomic_write_json(OUT, results)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("encode", help="cache pooled features of the 4-class Emotion6 images")
    e.add_argument("--backbone", default="imagenet-lite0", help="imagenet-lite0|1|2 or imagenet-mbv2")
    e.add_argument("--size", type=int, default=224, help="input side in pixels")
    e.add_argument("--fit", default="squash", choices=("squash", "centre", "pad"), help="how the image becomes square")
    e.add_argument("--threads", type=int, default=2, help="torch threads")
    p = sub.add_parser("probe", help="linear probe on cached features ('+' concatenates)")
    p.add_argument("--features", nargs="+", required=True, help="e.g. imagenet-lite0-288-squash")
    p.add_argument("--cs", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1, 0.3], help="C values tried on validation")
    args = parser.parse_args(argv)
    {"encode": encode, "probe": probe}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
