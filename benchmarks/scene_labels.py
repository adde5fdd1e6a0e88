"""Emotion6 labels and training data for the scene head (issue #16): the vote distributions as soft
labels, the fear/surprise images, and training on 4 folds instead of 3 — on the whole-image
(``squash``) features the product analyses.

    python benchmarks/scene_labels.py [--modes hard soft hard+extra hard@4folds hard+extra@4folds] [--epochs 30]

Features: the shipped ``emoadapt-ier`` FusionNet's standardised fused features (FER Lite0 ⊕ ImageNet
Lite0, 2,560-d) of every Emotion6 image, plain and mirrored, at the default input fit — the cache of
``benchmarks/affect_heads.py`` (1,716 images: the 1,056 of the 4 IER classes and 660 fear/surprise).
Faces: the cached FER2013 features of ``benchmarks/faces_scenes.py encode`` (160 px), standardised
by the same model's feature mean and std. The head and the loss are ``faces_scenes.py``'s shipped
recipe (dense 256, source CE α 0.5, no discrepancy); only the scene targets and images change:

* ``hard``: the folder label (one-hot), the 4-class images of the training folds;
* ``soft``: the 7-way vote fractions restricted to the 4 IER emotions and renormalised;
* ``hard+extra``: ``hard`` plus the fear/surprise images with their soft 4-class votes, weighted by
  the fraction of votes that went to the 4 emotions;
* ``…@4folds``: trained on the training AND validation folds for a fixed ``--epochs`` (no epoch
  selection), i.e. the usual 5-fold CV (4 folds train, 1 test) instead of 3 + 1 + 1.

Scores: accuracy on the folder labels of the 4-class images (flip-averaged), the holdout split
(``split``) and the 5 folds of ``benchmarks/results/adaptation/folds.json``, 3 seeds; faces on
FER2013 PublicTest (validation) and PrivateTest (report). Writes
``benchmarks/results/faces_scenes/scene-labels.json`` (resumable: finished runs are kept).
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
from torch.nn import functional as F

import affect_heads
import faces_scenes
from emoadapt.data.emotion6 import EMOTION6_TO_IER, VOTE_NAMES
from emoadapt.data.labels import IER_CLASSES
from emoadapt.fileio import atomic_write_json

OUT = faces_scenes.OUT / "scene-labels.json"
MODES = ("hard", "soft", "hard+extra", "hard@4folds", "hard+extra@4folds")
PLANS = ("split",) + tuple(f"fold{k}" for k in range(5))


def load_inputs(scene_size: int | None = None) -> dict:
    """Scene features (N, 2, 2560), IER labels (N,) (−1 for fear/surprise), soft 4-class votes
    (N, 4), their vote mass (N,), split masks; face features and labels.

    ``scene_size``: replace the ImageNet branch's half of the features by that branch at this input
    size (whole image, ``benchmarks/scene_backbones.py encode --size S``; faces from
    ``faces_scenes.py encode --size S``); the fear/surprise images then get zeros there (4-class
    modes only)."""
    from safetensors.torch import load_file

    dataset, keys = affect_heads.emotion6()
    cache = affect_heads.load_cache("emoadapt-ier")
    if list(cache["keys"]) != keys:
        raise SystemExit("the affect feature cache does not match the dataset; delete runs/affect and rerun")
    targets = affect_heads.targets(dataset)
    emotion6_name = {ier: e6 for e6, ier in EMOTION6_TO_IER.items()}
    votes = targets["votes"][:, [VOTE_NAMES.index(emotion6_name[c]) for c in IER_CLASSES]]
    mass = votes.sum(1)
    weights = load_file(str(affect_heads.weights_file("emoadapt-ier")))
    mean, std = weights["feature_mean"].float().numpy(), weights["feature_std"].float().numpy()
    faces = faces_scenes.load_features(["fer-lite0", "imagenet-lite0"], 160)  # FusionNet: face branch first
    for split in ("Training", "PublicTest", "PrivateTest"):
        faces[f"face_{split}"] = ((faces[f"face_{split}"] - mean) / std).astype(np.float32)
    x = np.stack([cache["fused"], cache["fused_flip"]], 1).astype(np.float32)
    if scene_size is not None:
        import scene_backbones

        half = x.shape[-1] // 2
        branch = scene_backbones.load(f"imagenet-lite0-{scene_size}-squash")
        where = {k: i for i, k in enumerate(keys)}
        x[:, :, half:] = 0.0
        x[[where[k] for k in branch["keys"]], :, half:] = branch["x"]
        imagenet = faces_scenes.load_features(["imagenet-lite0"], scene_size)
        for split in ("Training", "PublicTest", "PrivateTest"):
            faces[f"face_{split}"][..., half:] = imagenet[f"face_{split}"]
    return {"x": x, "ier": targets["ier"],
            "soft": votes / np.maximum(mass, 1e-9)[:, None], "mass": mass,
            "plans": affect_heads.split_masks(dataset, keys), "faces": faces}


def scene_targets(data: dict, plan: str, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Training rows (indices), their target distributions (n, 4) and weights (n,), and whether the
    run trains on 4 folds for a fixed number of epochs."""
    fixed = mode.endswith("@4folds")
    base = mode.removesuffix("@4folds")
    masks, four = data["plans"][plan], data["ier"] >= 0
    train = masks["train"] | masks["val"] if fixed else masks["train"]
    rows = np.flatnonzero(train & (four | (base == "hard+extra")))
    labelled = data["ier"][rows] >= 0
    onehot = np.eye(4)[np.maximum(data["ier"][rows], 0)]
    soft = data["soft"][rows]
    target = soft if base == "soft" else np.where(labelled[:, None], onehot, soft)
    weight = np.where(labelled, 1.0, data["mass"][rows])
    return rows, target.astype(np.float32), weight.astype(np.float32), fixed


def run(data: dict, plan: str, mode: str, seed: int, epochs: int, alpha: float = 0.5, keep_head: bool = False) -> dict:
    """Train one head; its scores (and, with ``keep_head``, the head itself under ``"head"``)."""
    rows, target, weight, fixed = scene_targets(data, plan, mode)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs, faces = data["x"][rows], data["faces"]
    xf, yf = faces["face_Training"], faces["face_Training_labels"]
    both = np.concatenate([xs.reshape(-1, xs.shape[-1]), xf.reshape(-1, xf.shape[-1])])
    head = faces_scenes.Head(both.mean(0), both.std(0) + 1e-6)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    face_weight = torch.tensor(1 / np.sqrt(np.bincount(yf, minlength=4)), dtype=torch.float32)
    face_weight = face_weight / face_weight[yf].mean()
    masks, four = data["plans"][plan], data["ier"] >= 0
    val, test = masks["val"] & four, masks["test"] & four
    best = None
    for epoch in range(epochs):
        head.train()
        for idx in np.array_split(rng.permutation(len(rows)), max(1, len(rows) // 32)):
            logits, _ = head(torch.from_numpy(xs[idx, rng.integers(0, 2, len(idx))]))
            smoothed = torch.from_numpy(target[idx]) * 0.9 + 0.1 / 4  # label smoothing 0.1, as the shipped recipe
            w = torch.from_numpy(weight[idx])
            loss = (-(smoothed * F.log_softmax(logits, -1)).sum(1) * w).sum() / w.sum()
            pick = rng.integers(0, len(yf), 32)
            face_logits, _ = head(torch.from_numpy(xf[pick, rng.integers(0, 2, 32)]))
            loss = loss + alpha * F.cross_entropy(face_logits, torch.from_numpy(yf[pick]), weight=face_weight,
                                                  label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        scores = {"val": faces_scenes.accuracy(head, data["x"][val], data["ier"][val]),
                  "face_val": faces_scenes.accuracy(head, faces["face_PublicTest"], faces["face_PublicTest_labels"])}
        score = epoch if fixed else (scores["val"] + scores["face_val"]) / 2  # fixed: the last epoch
        if best is None or score > best[0]:
            best = (score, epoch, {k: v.clone() for k, v in head.state_dict().items()}, scores)
    _, epoch, state, scores = best
    head.load_state_dict(state)
    if fixed:
        scores["val"] = None  # the validation fold was trained on
    return {**scores, "epoch": epoch, "test": faces_scenes.accuracy(head, data["x"][test], data["ier"][test]),
            "face_test": faces_scenes.accuracy(head, faces["face_PrivateTest"], faces["face_PrivateTest_labels"]),
            **({"head": head.eval()} if keep_head else {})}


def ensemble(data: dict, seeds: list[int], epochs: int) -> dict:
    """The ``hard`` heads of ``seeds`` averaged (mean logits, flip-averaged) per plan, against each
    head alone: {plan: {"single_val", "ensemble_val", …}} — does a K-head ensemble (one FusionNet
    with a K × 256 dense layer) read scenes better?"""
    def accuracies(heads, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(mean accuracy of the single heads, accuracy of their mean logits), flip-averaged."""
        x = torch.from_numpy(x)
        with torch.no_grad():
            logits = torch.stack([sum(h(x[:, v])[0] for v in (0, 1)) for h in heads])  # (K, n, 4)
        return float((logits.argmax(-1).numpy() == y).mean()), float((logits.mean(0).argmax(-1).numpy() == y).mean())

    out = {}
    for plan in PLANS:
        heads = [run(data, plan, "hard", seed, epochs, keep_head=True)["head"] for seed in seeds]
        masks, four = data["plans"][plan], data["ier"] >= 0
        row = {}
        for part in ("val", "test"):
            m = masks[part] & four
            row[f"single_{part}"], row[f"ensemble_{part}"] = accuracies(heads, data["x"][m], data["ier"][m])
        faces = data["faces"]
        row["single_face_val"], row["ensemble_face_val"] = accuracies(heads, faces["face_PublicTest"],
                                                                      faces["face_PublicTest_labels"])
        out[plan] = row
        print(plan, " ".join(f"{k} {100 * v:.1f}" for k, v in row.items()), flush=True)
    return out


def ship(data: dict, scene_size: int, seed: int, epochs: int, out: Path) -> None:
    """The ``hard`` head of the holdout split (``seed``) inside the shipped FusionNet, with its scene
    branch at ``scene_size``: written as fp16 safetensors to ``out``."""
    from dataclasses import replace

    from emoadapt.models.fusion import FusionConfig, FusionNet
    from emoadapt.models.registry import resolve_model
    from emoadapt.training.checkpoint import save_weights

    result = run(data, "split", "hard", seed, epochs, keep_head=True)
    head = result.pop("head")
    shipped, _ = resolve_model("emoadapt-ier")
    old = shipped.config
    config = replace(old, scene={**old.scene, "input_size": scene_size}, input_size=scene_size)
    model = FusionNet(config).eval()
    model.load_state_dict(shipped.state_dict())
    # the head standardises its inputs; the FER half arrived already standardised by the shipped model
    old_mean, old_std = shipped.feature_mean.double(), shipped.feature_std.double()
    half = len(old_mean) // 2  # the face branch's features come first
    mean, std = head.mean.clone().double(), head.std.clone().double()
    mean[:half] = old_mean[:half] + old_std[:half] * mean[:half]
    std[:half] = old_std[:half] * std[:half]
    faces_scenes.install_head(model, head, mean.float(), std.float())
    extra = {"classes": list(IER_CLASSES), "preset": "emoadapt-ier", "config": "+source-CE (α 0.5), whole-image features",
             "seed": seed, "backbones": {"face": "fer-lite0 (96 px)", "scene": f"imagenet-lite0 ({scene_size} px)"},
             "metrics": result, "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    save_weights(str(out), model, config.to_dict(), extra, dtype=torch.float16)
    print(json.dumps(result, indent=1))
    print(f"wrote {out}")


def summary(rows: dict) -> dict:
    """Means over seeds: holdout split val/test; folds: the mean over folds of each seed's test."""
    split = [r for k, r in rows.items() if k.startswith("split/")]
    folds = [r for k, r in rows.items() if k.startswith("fold")]
    def mean(key: str, runs: list[dict]) -> float:
        values = [r[key] for r in runs if r[key] is not None]
        return 100 * statistics.mean(values) if values else float("nan")

    by_fold = {}
    for k, r in rows.items():
        if k.startswith("fold"):
            by_fold.setdefault(k.split("/")[0], []).append(r["test"])
    fold_means = [100 * statistics.mean(v) for v in by_fold.values()]
    return {"split_val": mean("val", split), "split_test": mean("test", split), "folds_val": mean("val", folds),
            "cv_test": statistics.mean(fold_means) if fold_means else float("nan"),
            "cv_test_std": statistics.stdev(fold_means) if len(fold_means) > 1 else 0.0,
            "face_val": mean("face_val", folds + split), "face_test": mean("face_test", folds + split)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="scene targets (see above)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds per split or fold")
    parser.add_argument("--epochs", type=int, default=30, help="epochs (selection modes pick the best by validation)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--scene-size", type=int, default=None,
                        help="the ImageNet branch at this whole-image input size instead of the shipped model's "
                             "(needs scene_backbones.py's and faces_scenes.py's caches at that size)")
    parser.add_argument("--ship", type=Path, default=None,
                        help="instead of the table: train the 'hard' head of the holdout split (first --seeds) and "
                             "write the FusionNet with the scene branch at --scene-size to this .safetensors")
    parser.add_argument("--ensemble", action="store_true",
                        help="instead of the table: the 'hard' heads of all --seeds averaged, per plan, against one head")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_inputs(args.scene_size)
    if args.ensemble:
        result = ensemble(data, args.seeds, args.epochs)
        atomic_write_json(OUT.with_name(f"scene-ensemble-{args.scene_size or 160}.json"),
                          {"command": " ".join(sys.argv), "seeds": args.seeds, "plans": result,
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
        return 0
    if args.ship is not None:
        ship(data, args.scene_size or 160, args.seeds[0], args.epochs, args.ship)
        return 0
    out = OUT if args.scene_size is None else OUT.with_name(f"scene-labels-{args.scene_size}.json")
    results = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault("runs", {})
    results.update({"command": " ".join(sys.argv), "epochs": args.epochs})
    for mode in args.modes:
        rows = results["runs"].setdefault(mode, {})
        for plan in PLANS:
            for seed in args.seeds:
                key = f"{plan}/s{seed}"
                if key not in rows:
                    started = time.time()
                    rows[key] = run(data, plan, mode, seed, args.epochs)
                    print(f"{mode:18s} {key:9s} " + " ".join(f"{k} {v:.3f}" for k, v in rows[key].items()
                                                           if k != "epoch" and v is not None) + f" ({time.time() - started:.0f} s)",
                          flush=True)
                    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                    atomic_write_json(out, results)
    print("\n| scene targets | split val | split test | folds val | 5-fold CV test | faces val | faces test |\n"
          "|---|---|---|---|---|---|---|")
    for mode in args.modes:
        s = summary(results["runs"][mode])
        print(f"| {mode} | {s['split_val']:.1f} | {s['split_test']:.1f} | {s['folds_val']:.1f} | "
              f"{s['cv_test']:.1f} ± {s['cv_test_std']:.1f} | {s['face_val']:.1f} | {s['face_test']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
