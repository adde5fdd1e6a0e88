"""Valence, arousal and the 7-way emotion distribution on the shipped model's features (issue #23).

    python benchmarks/affect_heads.py encode --model emoadapt-ier      # every Emotion6 image once → runs/affect/
    python benchmarks/affect_heads.py cv     --model emoadapt-ier      # choose + 5-fold CV table → results/affect/
    python benchmarks/affect_heads.py ship   --model emoadapt-ier      # encode (if needed), choose, fit, attach

``ship`` is the one command to run after the default model's weights change: it re-encodes (the
cache is keyed by the weights' sha256), re-chooses the head on validation, fits it on train + val
of the holdout split, writes the sidecar ``<weights>.affect.safetensors`` next to the weights and
its sha256 into ``src/emoadapt/models/registry.py`` (for a preset), and records the CV table.

Data: all 1,716 Emotion6 images of the shared copy (six folders), each with valence and arousal
(1–9) and the 7 crowd vote fractions (anger, disgust, fear, joy, sadness, surprise, neutral).
Splits: the 1,056 four-class images keep ``results/adaptation/split.json`` / ``folds.json``; the
others (fear, surprise) get their own seeded split with the same proportions and 5 folds,
``results/affect/split_extra.json`` / ``folds_extra.json``. Fold k is the test fold, fold k+1 the
validation fold, the rest training (as in ``faces_scenes.py``).

Features (one forward pass of the shipped model, plain image and its mirror image): the
standardised concatenation of both branches' pooled features (``fused``, 2560-d) and the 256-d
hidden layer (``pre_logits``). The heads never change the four-class weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from emoadapt.data import open_dataset
from emoadapt.data.emotion6 import EMOTION6_TO_IER
from emoadapt.data.locate import dataset_path
from emoadapt.data.splits import kfold_dataset, read_manifest, sample_key, split_dataset, write_manifest
from emoadapt.fileio import atomic_path, atomic_write_json
from emoadapt.models import affect as affect_mod
from emoadapt.training.affect_fit import choose_and_fit, head_predict, scores, subset, targets
from emoadapt.models.registry import get_preset, sha256, shipped_weights

ROOT = Path(__file__).resolve().parent
ADAPT = ROOT / "results" / "adaptation"
OUT = ROOT / "results" / "affect"
CACHE = ROOT.parent / "runs" / "affect"
FOLDS = 5


# ----------------------------------------------------------------------------- data and splits
def emotion6():
    """All Emotion6 images with ground truth (the dataset), and their manifest keys."""
    dataset = open_dataset(dataset_path("emotion6"), "emotion6")
    dataset = dataset.subset(lambda s: "valence" in s.meta, name="emotion6-affect")
    return dataset, [sample_key(s, dataset.root) for s in dataset.samples]


def extra_manifests(dataset) -> tuple[dict[str, str], dict[str, str]]:
    """Holdout and fold assignments of the images without an IER class (written once, then read)."""
    holdout_path, folds_path = OUT / "split_extra.json", OUT / "folds_extra.json"
    if not holdout_path.exists() or not folds_path.exists():
        extra = dataset.subset(lambda s: s.label not in EMOTION6_TO_IER, name="emotion6-fear-surprise")
        write_manifest(split_dataset(extra, val=0.15, test=0.15, seed=0, group="none"), holdout_path)
        write_manifest(kfold_dataset(extra, folds=FOLDS, seed=0, group="none"), folds_path)
    return read_manifest(holdout_path).assignments, read_manifest(folds_path).assignments


def split_masks(dataset, keys: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{"split": {"train","val","test"}, "fold0": {...}, …}`` boolean masks over all images."""
    holdout = {**read_manifest(ADAPT / "split.json").assignments}
    folds = {**read_manifest(ADAPT / "folds.json").assignments}
    extra_holdout, extra_folds = extra_manifests(dataset)
    holdout.update(extra_holdout)
    folds.update(extra_folds)
    missing = [k for k in keys if k not in holdout or k not in folds]
    if missing:
        raise SystemExit(f"{len(missing)} Emotion6 images are in no split (e.g. {missing[:3]}); "
                         f"delete {OUT}/split_extra.json and folds_extra.json to re-split the extra images")
    plans = {"split": {name: np.array([holdout[k] == name for k in keys]) for name in ("train", "val", "test")}}
    assigned = np.array([folds[k] for k in keys])
    for k in range(FOLDS):
        test, val = f"fold{k}", f"fold{(k + 1) % FOLDS}"
        plans[f"fold{k}"] = {"test": assigned == test, "val": assigned == val,
                             "train": (assigned != test) & (assigned != val)}
    return plans


# ----------------------------------------------------------------------------- encoding
def weights_file(model: str) -> Path:
    """The weights file of a preset name or path."""
    path = Path(model)
    if path.suffix == ".safetensors" or path.exists():
        return path
    return shipped_weights(get_preset(model))


def cache_path(model: str) -> Path:
    """The feature cache of ``model``'s weights under the input fit the model reads with (its
    metadata's ``fit``, else the default; a change of either gives a new file)."""
    from emoadapt.data.transforms import DEFAULT_FIT
    from emoadapt.models.weights import read_metadata

    weights = weights_file(model)
    fit = read_metadata(weights).get("extra", {}).get("fit") or DEFAULT_FIT
    return CACHE / f"features-{sha256(weights)[:16]}-{fit}.npz"


@torch.inference_mode()
def encode(model_name: str, threads: int = 2, batch: int = 32) -> Path:
    """Encode every Emotion6 image (plain and mirrored) into the cache; returns its path."""
    from emoadapt.api import Predictor

    path = cache_path(model_name)
    if path.exists():
        return path
    torch.set_num_threads(threads)
    predictor = Predictor(str(weights_file(model_name)), runtime="torch")
    model = predictor.model
    dataset, keys = emotion6()
    out = {"fused": [], "pre_logits": [], "logits": [], "fused_flip": [], "pre_logits_flip": [], "logits_flip": []}
    t0 = time.time()
    for start in range(0, len(dataset), batch):
        x = torch.stack([predictor.preprocess(s.path) for s in dataset.samples[start:start + batch]])
        for suffix, images in (("", x), ("_flip", x.flip(3))):
            feats = affect_mod.model_features(model, images)
            for name in ("fused", "pre_logits", "logits"):
                out[name + suffix].append(feats[name].numpy().astype(np.float32))
        print(f"\rencode {min(start + batch, len(dataset))}/{len(dataset)} {time.time() - t0:.0f} s",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    arrays = {k: np.concatenate(v) for k, v in out.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, keys=np.array(keys), **arrays)
    return path


def load_cache(model_name: str) -> dict[str, np.ndarray]:
    path = encode(model_name)
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


# ----------------------------------------------------------------------------- baselines
def ridge_probe(cache, y, plan: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ridge regression on frozen features (plain + mirrored train images) onto valence, arousal and the
    vote fractions (clipped at 0, renormalised); features and α chosen on validation (summed MSE)."""
    best = None
    for source in affect_mod.SOURCES:
        x_tr = np.concatenate([cache[source][plan["train"]], cache[source + "_flip"][plan["train"]]]).astype(np.float64)
        mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
        x_tr = np.c_[(x_tr - mean) / std, np.ones(len(x_tr))]
        t = np.c_[y["valence"], y["arousal"], y["votes"]]
        t_tr = np.concatenate([t[plan["train"]], t[plan["train"]]])
        gram, rhs = x_tr.T @ x_tr, x_tr.T @ t_tr
        for alpha in 10.0 ** np.arange(0, 6):
            reg = alpha * np.eye(len(gram))
            reg[-1, -1] = 0.0
            w = np.linalg.solve(gram + reg, rhs)

            def apply(mask, w=w, mean=mean, std=std, source=source):
                return np.c_[(cache[source][mask] - mean) / std, np.ones(int(mask.sum()))] @ w

            pv = apply(plan["val"])
            err = float((((pv - t[plan["val"]]) / t[plan["train"]].std(0).clip(1e-6)) ** 2).mean())
            if best is None or err < best[0]:
                best = (err, apply)
    pred = best[1](plan["test"])
    dist = np.clip(pred[:, 2:], 1e-6, None)
    return {"valence": pred[:, 0], "arousal": pred[:, 1], "dist": dist / dist.sum(1, keepdims=True)}


def constant(y, plan, uniform: bool = False) -> dict[str, np.ndarray]:
    n, k = int(plan["test"].sum()), y["votes"].shape[1]
    dist = np.full(k, 1.0 / k) if uniform else y["votes"][plan["train"]].mean(0)
    return {"valence": np.full(n, y["valence"][plan["train"]].mean()),
            "arousal": np.full(n, y["arousal"][plan["train"]].mean()), "dist": np.tile(dist, (n, 1))}


# ----------------------------------------------------------------------------- commands
def four_class(cache, y, mask: np.ndarray) -> float:
    """Accuracy of the unchanged four-class head on the IER images of ``mask``."""
    keep = mask & (y["ier"] >= 0)
    return float((cache["logits"][keep].argmax(1) == y["ier"][keep]).mean())


def cross_validate(model_name: str) -> dict:
    cache = load_cache(model_name)
    dataset, keys = emotion6()
    if list(cache["keys"]) != keys:
        raise SystemExit(f"the feature cache {cache_path(model_name)} lists other images; delete it and re-encode")
    y = targets(dataset)
    plans = split_masks(dataset, keys)
    # the shipped four-class head was trained on the holdout split's train images: test images among
    # them are "seen" (its hidden layer fitted their classes), the others "unseen" — both reported
    unseen = ~plans["split"]["train"]
    folds, chosen = [], []
    for k in [*range(FOLDS), "split"]:
        plan = plans[f"fold{k}" if k != "split" else "split"]
        t0 = time.time()
        heads, choice = choose_and_fit(cache, y, plan)
        preds = {"heads": head_predict(heads, cache, plan["test"]), "ridge": ridge_probe(cache, y, plan),
                 "train_mean": constant(y, plan), "uniform": constant(y, plan, uniform=True)}
        truth, fresh = subset(y, plan["test"]), unseen[plan["test"]]
        row = {m: scores(truth, p) for m, p in preds.items()}
        row.update({f"{m}_unseen": scores(subset(truth, fresh), subset(p, fresh)) for m, p in preds.items()})
        row.update({"four_class_accuracy": four_class(cache, y, plan["test"]),
                    "four_class_accuracy_unseen": four_class(cache, y, plan["test"] & unseen),
                    "n_test": int(plan["test"].sum()), "n_test_unseen": int(fresh.sum()),
                    "n_test_unseen_four_class": int((plan["test"] & unseen & (y["ier"] >= 0)).sum())})
        if k == "split":
            holdout = row
            print(f"holdout split: V r={row['heads']['valence_r']:.3f} ({time.time() - t0:.0f} s)", file=sys.stderr)
            break
        folds.append(row)
        chosen.append({k2: v for k2, v in choice.items() if k2 != "grid"})
        print(f"fold {k}: {choice['source']}/h{choice['hidden']}/wd{choice['weight_decay']} "
              f"V r={row['heads']['valence_r']:.3f} A r={row['heads']['arousal_r']:.3f} "
              f"KL={row['heads']['kl']:.3f} ({time.time() - t0:.0f} s)", file=sys.stderr)
    summary = {}
    for method in [m + suffix for suffix in ("", "_unseen") for m in ("heads", "ridge", "train_mean", "uniform")]:
        summary[method] = {m: {"mean": round(statistics.mean(f[method][m] for f in folds), 4),
                               "sd": round(statistics.stdev(f[method][m] for f in folds), 4)}
                           for m in folds[0][method]}
    for name in ("four_class_accuracy", "four_class_accuracy_unseen"):
        summary[name] = {"mean": round(statistics.mean(f[name] for f in folds), 4),
                         "sd": round(statistics.stdev(f[name] for f in folds), 4)}
    return {"model": model_name, "weights_sha256": sha256(weights_file(model_name)), "n_images": len(keys),
            "chosen_per_fold": chosen, "folds": folds, "summary": summary, "holdout": holdout}


def fit_ship(model_name: str) -> tuple[affect_mod.AffectHeads, dict]:
    """Heads chosen and fitted on the holdout split (train; validation chooses), scored on its test."""
    cache = load_cache(model_name)
    dataset, keys = emotion6()
    y = targets(dataset)
    plan = split_masks(dataset, keys)["split"]
    heads, choice = choose_and_fit(cache, y, plan)
    test = scores(subset(y, plan["test"]), head_predict(heads, cache, plan["test"]))
    return heads, {"choice": choice, "holdout_test": {k: round(v, 4) for k, v in test.items()},
                   "four_class_test_accuracy": round(four_class(cache, y, plan["test"]), 4),
                   "n_train": int(plan["train"].sum()), "n_val": int(plan["val"].sum()), "n_test": int(plan["test"].sum())}


def main_cv(args) -> None:
    torch.set_num_threads(args.threads)
    result = cross_validate(args.model)
    result["command"] = f"python benchmarks/affect_heads.py cv --model {args.model}"
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / "cv.json", result)
    print(json.dumps(result["summary"], indent=1))


def main_ship(args) -> None:
    torch.set_num_threads(args.threads)
    heads, record = fit_ship(args.model)
    weights = weights_file(args.model)
    base = sha256(weights)
    record["weights_sha256"] = base
    path = affect_mod.save_affect(affect_mod.sidecar_path(weights) if args.out is None else Path(args.out), heads, base,
                                  {**record["holdout_test"], "source": record["choice"]["source"],
                                   "hidden": record["choice"]["hidden"],
                                   "weight_decay": record["choice"]["weight_decay"],
                                   "command": f"python benchmarks/affect_heads.py ship --model {args.model}"})
    digest = sha256(path)
    record["sidecar"], record["sidecar_sha256"] = path.name, digest
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / "ship.json", record)
    if args.out is None and not Path(args.model).suffix:
        set_registry_sha(args.model, digest)
    print(json.dumps(record, indent=1))
    if not args.no_cv:
        main_cv(args)


def set_registry_sha(preset: str, digest: str) -> None:
    """Write the sidecar's sha256 into the preset's entry of src/emoadapt/weights/registry.json (data)."""
    from emoadapt.models.registry import REGISTRY_FILE

    registry = json.loads(REGISTRY_FILE.read_text())
    if preset not in registry:
        raise SystemExit(f"preset {preset!r} is not a shipped model in {REGISTRY_FILE}")
    registry[preset]["affect_sha256"] = digest
    atomic_write_json(REGISTRY_FILE, registry)
    print(f"registry: {preset} affect_sha256 = {digest}", file=sys.stderr)


def main_encode(args) -> None:
    print(encode(args.model, args.threads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in (("encode", main_encode), ("cv", main_cv), ("ship", main_ship)):
        p = sub.add_parser(name)
        p.add_argument("--model", default="emoadapt-ier", help="preset name or .safetensors file")
        p.add_argument("--threads", type=int, default=2)
        if name == "ship":
            p.add_argument("--out", help="sidecar path (default: <weights>.affect.safetensors next to the weights)")
            p.add_argument("--no-cv", action="store_true", help="skip the 5-fold CV table")
        p.set_defaults(run=fn)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
