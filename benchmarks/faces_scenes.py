"""One model for faces and scenes (issue #16): backbones, linear probes and the paper's adaptation
loss on cached features, scored on BOTH domains in one table.

    python benchmarks/faces_scenes.py encode --backbone imagenet-lite0 [--size 160]   # feature cache
    python benchmarks/faces_scenes.py encode --backbone fer-lite0 --weights runs/fer-lite0/best.safetensors
    python benchmarks/faces_scenes.py probe  --backbones imagenet-lite0 imagenet-mbv2 ...
    python benchmarks/faces_scenes.py heads  --backbones imagenet-lite0+fer-lite0 --seeds 0 1 2

Domains and splits (fixed before any test score was looked at):
  scenes: Emotion6, the 4 IER classes (1,056 images); the holdout split
          ``benchmarks/results/adaptation/split.json`` (train 740 / val 158 / test 158) and the 5 folds
          of ``benchmarks/results/adaptation/folds.json`` (fold k test, fold k+1 validation).
  faces:  FER2013 faces of angry/disgust/happy/sad mapped to anger/hate/happy/sad; source training
          faces = 6,000 seeded Training faces of those classes; PublicTest (n = 2,071) for selection;
          PrivateTest (n = 2,019) for the report.

Every backbone encodes each image once per view (scenes: as is, mirrored and 6 random resized crops
of 35–100 % of the area; faces: as is and mirrored) at one input size; features are the globally
pooled last feature map (1280-d for EfficientNet-Lite and MobileNetV2). A "head" is
``standardise → dense 256 → ReLU → dropout → 4 classes`` on the concatenated features of one or
more backbones, trained with the paper's loss

    L = CE(scenes) + α·CE(faces, mapped) + λ·D(h_faces, h_scenes)     (h = the 256-d layer)

Epoch selection and configuration choice use validation only: the mean of scene-val and face-val
(PublicTest) accuracy. Test sets (scene test / each CV test fold, FER2013 PrivateTest) are reported
beside them and never used to choose.
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
from torch import nn
from torch.nn import functional as F

from emoadapt.adapt.coral import CORAL
from emoadapt.adapt.mmd import LinearMMD, MultiKernelMMD
from emoadapt.adapt.views import crop_boxes, render_views
from emoadapt.data import open_dataset
from emoadapt.data.arrays import load_arrays
from emoadapt.data.fer2013 import read_fer2013
from emoadapt.data.labels import FER_TO_IER, IER_CLASSES
from emoadapt.data.locate import dataset_path
from emoadapt.data.splits import apply_manifest, read_manifest
from emoadapt.data.transforms import fit_images, uint8_to_tensor
from emoadapt.fileio import atomic_path, atomic_write_json

ROOT = Path(__file__).resolve().parent
SPLIT = ROOT / "results" / "adaptation" / "split.json"
FOLDS = ROOT / "results" / "adaptation" / "folds.json"
OUT = ROOT / "results" / "faces_scenes"
CACHE = ROOT.parent / ".cache" / "features"
SCENE_VIEWS = 8
SOURCE_FACES = 6000


# ----------------------------------------------------------------------------- data
def scene_arrays(size: int):
    """Emotion6 4-class images (N, size, size, 3) uint8, IER labels, and their manifest keys."""
    from emoadapt.data.splits import sample_key

    dataset = open_dataset(dataset_path("emotion6"), "emotion6").to_ier_dataset()
    arrays = load_arrays(dataset, size, 3)
    keys = {s.path: sample_key(s, dataset.root) for s in dataset.samples}
    return arrays.images, arrays.labels, [keys[p] for p in arrays.paths]


def face_arrays(split: str, size: int, limit: int | None = None, seed: int = 0):
    """FER2013 faces of the 4 mapped classes: (N, size, size, 3) uint8 RGB and IER labels."""
    fer = read_fer2013(dataset_path("fer2013")).split(split)
    arrays = load_arrays(fer, 48, 1)
    names = [arrays.classes[i] for i in arrays.labels]
    keep = np.array([n in FER_TO_IER for n in names])
    images, labels = arrays.images[keep], np.array([IER_CLASSES.index(FER_TO_IER[n]) for n, k in zip(names, keep) if k])
    if limit is not None and limit < len(labels):
        pick = np.sort(np.random.default_rng(seed).permutation(len(labels))[:limit])
        images, labels = images[pick], labels[pick]
    return fit_images(images, size, 3), labels


def split_masks(keys: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{"split": {"train","val","test"}, "fold0": {...}, …}`` boolean masks over the scene images."""
    plans = {}
    holdout = read_manifest(SPLIT).assignments
    plans["split"] = {name: np.array([holdout[k] == name for k in keys]) for name in ("train", "val", "test")}
    folds = read_manifest(FOLDS)
    for k in range(folds.folds):
        assigned = np.array([folds.assignments[key] for key in keys])
        test, val = f"fold{k}", f"fold{(k + 1) % folds.folds}"
        plans[f"fold{k}"] = {"test": assigned == test, "val": assigned == val,
                             "train": (assigned != test) & (assigned != val)}
    return plans


# ----------------------------------------------------------------------------- backbones
def build_backbone(name: str, size: int, weights: str | None):
    from emoadapt.models.efficientnet_lite import EfficientNetLite, EfficientNetLiteConfig
    from emoadapt.models.mobilenetv2 import MobileNetV2, MobileNetV2Config
    from emoadapt.models.registry import load_imagenet_init, load_model

    if weights:
        model, _ = load_model(weights)
    elif name.startswith("imagenet-lite"):
        model = load_imagenet_init(EfficientNetLite(EfficientNetLiteConfig(variant=name.split("-")[1], input_size=size)))
    elif name == "imagenet-mbv2":
        model = load_imagenet_init(MobileNetV2(MobileNetV2Config(input_size=size)))
    else:
        raise SystemExit(f"unknown backbone {name!r} (give --weights for a trained one)")
    return model.eval()


@torch.inference_mode()
def pooled(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """(N, D) float32: the globally pooled last feature map of uint8 images (N, S, S, 3)."""
    from emoadapt.models.fusion import resize_to

    out = []
    for start in range(0, len(images), batch):
        x = resize_to(uint8_to_tensor(images[start:start + batch]), model.config.input_size)  # as FusionNet does
        out.append(model.forward_features(x).mean((2, 3)))
    return torch.cat(out).numpy().astype(np.float32)


def cache_file(backbone: str, size: int) -> Path:
    return CACHE / f"{backbone}-{size}.npz"


def encode(args) -> None:
    torch.set_num_threads(args.threads)
    model = build_backbone(args.backbone, args.size, args.weights)
    t0 = time.time()
    images, labels, keys = scene_arrays(args.size * 3 // 2)  # crops are cut from a 1.5× larger decode
    views = render_views(images, crop_boxes(len(images), SCENE_VIEWS, seed=0), args.size)  # view 0 whole, 1 mirrored
    scene = np.stack([pooled(model, v) for v in views], 1)  # (N, V, D)
    print(f"scenes {scene.shape} {time.time() - t0:.0f} s", flush=True)
    faces = {}
    for split, limit in (("Training", SOURCE_FACES), ("PublicTest", None), ("PrivateTest", None)):
        x, y = face_arrays(split, args.size, limit)
        faces[split] = (np.stack([pooled(model, x), pooled(model, np.ascontiguousarray(x[:, :, ::-1]))], 1), y)
        print(f"faces {split} {faces[split][0].shape} {time.time() - t0:.0f} s", flush=True)
    path = cache_file(args.backbone, args.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, scene=scene, scene_labels=labels, scene_keys=np.asarray(keys),
                 **{f"face_{k}": v[0] for k, v in faces.items()}, **{f"face_{k}_labels": v[1] for k, v in faces.items()},
                 seconds=time.time() - t0)
    print(f"wrote {path} in {time.time() - t0:.0f} s")


def load_features(backbones: list[str], size: int) -> dict:
    """Concatenated cached features of ``backbones`` (each encoded by ``encode``)."""
    parts = [np.load(cache_file(b, size)) for b in backbones]
    first = parts[0]
    data = {"scene_labels": first["scene_labels"], "scene_keys": list(first["scene_keys"])}
    data["scene"] = np.concatenate([p["scene"] for p in parts], -1)
    for split in ("Training", "PublicTest", "PrivateTest"):
        data[f"face_{split}"] = np.concatenate([p[f"face_{split}"] for p in parts], -1)
        data[f"face_{split}_labels"] = first[f"face_{split}_labels"]
    return data


# ----------------------------------------------------------------------------- linear probe
def probe(args) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    results = {}
    for backbone in args.backbones:
        data = load_features(backbone.split("+"), args.size)
        x, y = data["scene"][:, 0], data["scene_labels"]  # the plain view (no test-time augmentation)
        masks = split_masks(data["scene_keys"])
        row = {}
        for plan, m in masks.items():
            best = None
            for c in (0.003, 0.01, 0.03, 0.1, 0.3):
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
                clf.fit(x[m["train"]], y[m["train"]])
                val = clf.score(x[m["val"]], y[m["val"]])
                if best is None or val > best[0]:
                    best = (val, c, clf)
            val, c, clf = best
            face_val = clf.score(data["face_PublicTest"][:, 0], data["face_PublicTest_labels"])
            row[plan] = {"C": c, "val": val, "test": clf.score(x[m["test"]], y[m["test"]]), "face_val": face_val}
        # the same protocol as SPEC §6's reference: 5-fold CV (fold k test, the other 4 train, C = 0.03)
        # repeated with two seeds of the fold assignment
        from sklearn.model_selection import StratifiedKFold

        cv = []
        for seed in (0, 1):
            for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.03, max_iter=3000)).fit(x[train], y[train])
                cv.append(clf.score(x[test], y[test]))
        row["cv5x2_C0.03"] = {"mean": float(np.mean(cv)), "std": float(np.std(cv, ddof=1)), "values": cv}
        folds = [row[f"fold{k}"]["test"] for k in range(5)]
        row["cv_folds"] = {"mean": float(np.mean(folds)), "std": float(np.std(folds, ddof=1))}
        results[backbone] = row
        print(f"{backbone:32s} split val {row['split']['val']:.3f} test {row['split']['test']:.3f} | folds "
              f"{row['cv_folds']['mean']:.3f} ± {row['cv_folds']['std']:.3f} | 5×2 CV {row['cv5x2_C0.03']['mean']:.3f} "
              f"± {row['cv5x2_C0.03']['std']:.3f} | faces zero-shot (PublicTest) {row['split']['face_val']:.3f}",
              flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / f"probe-{args.size}{args.tag}.json", {"size": args.size, "command": " ".join(sys.argv),
                                                                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                                   "results": results})


# ----------------------------------------------------------------------------- heads (the paper's loss)
CONFIGS = {  # name -> (alpha, discrepancy, lambda)
    "target-only": (0.0, "none", 0.0),
    "+mmd": (0.0, "mmd", 1.0),
    "+source-CE": (0.5, "none", 0.0),
    "+source-CE +mmd": (0.5, "mmd", 1.0),
    "+source-CE +linear-mmd": (0.5, "linear-mmd", 1.0),
    "+source-CE +coral": (0.5, "coral", 1.0),
    "+source-CE(α=1)": (1.0, "none", 0.0),
    "+source-CE(α=1) +mmd": (1.0, "mmd", 1.0),
}
# D acts on the 256-d layer only: with frozen backbones the pooled features carry no gradient, so a
# discrepancy on them is a constant (a "two-layer" run was bit-identical to the one-layer run and was dropped).
DISCREPANCY = {"none": None, "mmd": MultiKernelMMD, "linear-mmd": LinearMMD, "coral": CORAL}


class Head(nn.Module):
    """standardise → dense 256 → ReLU → dropout → classes; ``forward`` returns (logits, hidden)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, hidden: int = 256, classes: int = 4, dropout: float = 0.3):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.dense = nn.Sequential(nn.Dropout(0.1), nn.Linear(len(mean), hidden), nn.ReLU())
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor):
        h = self.dense((x - self.mean) / self.std)
        return self.out(h), h


def accuracy(head: Head, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy with flip test-time augmentation (views 0 and 1 averaged)."""
    head.eval()
    with torch.no_grad():
        probs = sum(F.softmax(head(torch.from_numpy(x[:, v]))[0], -1) for v in (0, 1))
    return float((probs.argmax(1).numpy() == y).mean())


def train_head(data: dict, mask: dict, config: str, seed: int, epochs: int = 60) -> dict:
    alpha, discrepancy, lam = CONFIGS[config]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs, ys = data["scene"][mask["train"]], data["scene_labels"][mask["train"]]
    xf, yf = data["face_Training"], data["face_Training_labels"]
    both = np.concatenate([xs.reshape(-1, xs.shape[-1]), xf.reshape(-1, xf.shape[-1])])
    head = Head(both.mean(0), both.std(0) + 1e-6)
    loss_d = DISCREPANCY[discrepancy]() if DISCREPANCY[discrepancy] else None
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    face_weight = torch.tensor(1 / np.sqrt(np.bincount(yf, minlength=4)), dtype=torch.float32)
    face_weight = face_weight / (face_weight[yf].mean())
    batch, best = 32, None
    val_s = (data["scene"][mask["val"]], data["scene_labels"][mask["val"]])
    val_f = (data["face_PublicTest"], data["face_PublicTest_labels"])
    for epoch in range(epochs):
        head.train()
        order = rng.permutation(len(ys))
        ramp = 2 / (1 + np.exp(-10 * epoch / epochs)) - 1  # DANN-style 0 → 1 ramp of λ
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            view = rng.integers(0, xs.shape[1], len(idx))
            logits_t, h_t = head(torch.from_numpy(xs[idx, view]))
            loss = F.cross_entropy(logits_t, torch.from_numpy(ys[idx]), label_smoothing=0.1)
            if alpha > 0 or loss_d is not None:
                fidx = rng.integers(0, len(yf), batch)
                logits_s, h_s = head(torch.from_numpy(xf[fidx, rng.integers(0, 2, batch)]))
                if alpha > 0:
                    loss = loss + alpha * F.cross_entropy(logits_s, torch.from_numpy(yf[fidx]), weight=face_weight,
                                                          label_smoothing=0.1)
                if loss_d is not None:
                    loss = loss + lam * ramp * loss_d(h_s, h_t)
            opt.zero_grad()
            loss.backward()
            opt.step()
        scores = {"val": accuracy(head, *val_s), "face_val": accuracy(head, *val_f)}
        score = (scores["val"] + scores["face_val"]) / 2
        if best is None or score > best[0]:
            best = (score, epoch, {k: v.clone() for k, v in head.state_dict().items()}, scores)
    _, epoch, state, scores = best
    head.load_state_dict(state)
    scores.update({"epoch": epoch, "test": accuracy(head, data["scene"][mask["test"]], data["scene_labels"][mask["test"]]),
                   "face_test": accuracy(head, data["face_PrivateTest"], data["face_PrivateTest_labels"])})
    scores["head"] = head
    return scores


def heads(args) -> None:
    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"heads-{args.size}{args.tag}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for backbone in args.backbones:
        data = load_features(backbone.split("+"), args.size)
        masks = split_masks(data["scene_keys"])
        plans = ["split"] + ([f"fold{k}" for k in range(5)] if args.cv else [])
        for config in args.configs:
            name = f"{backbone} {config}"
            row = results.setdefault(name, {})
            for plan in plans:
                for seed in args.seeds:
                    key = f"{plan}/s{seed}"
                    if key in row:
                        continue
                    t0 = time.time()
                    r = train_head(data, masks[plan], config, seed, args.epochs)
                    r.pop("head")
                    r["seconds"] = time.time() - t0
                    row[key] = r
                    print(f"{name:40s} {key:10s} val {r['val']:.3f} test {r['test']:.3f} | faces val "
                          f"{r['face_val']:.3f} test {r['face_test']:.3f} (epoch {r['epoch']}, {r['seconds']:.0f} s)",
                          flush=True)
                    atomic_write_json(path, results)
    print_table(results)


# ----------------------------------------------------------------------------- ship
def ship(args) -> None:
    """Train the chosen head on the holdout split and write FusionNet weights (face branch = the FER
    network, scene branch = the ImageNet backbone, the head between them)."""
    from emoadapt.models.fusion import FusionConfig, FusionNet
    from emoadapt.training.checkpoint import save_weights

    torch.set_num_threads(args.threads)
    face_name, scene_name = args.face, args.scene
    data = load_features([face_name, scene_name], args.size)  # FusionNet concatenates face, then scene
    result = train_head(data, split_masks(data["scene_keys"])["split"], args.config, args.seed, args.epochs)
    head = result.pop("head").eval()
    face = build_backbone(face_name, args.size, args.face_weights)
    scene = build_backbone(scene_name, args.size, None)
    config = FusionConfig(face=face.config.to_dict(), scene=scene.config.to_dict(), hidden=head.dense[1].out_features,
                          num_classes=4, input_size=args.size)
    model = FusionNet(config).eval()
    model.branches["face"].load_state_dict(face.state_dict())
    model.branches["scene"].load_state_dict(scene.state_dict())
    install_head(model, head, head.mean, head.std)
    extra = {"classes": list(IER_CLASSES), "preset": "emoadapt-ier", "config": args.config, "seed": args.seed,
             "backbones": {"face": face_name, "scene": scene_name}, "metrics": result,
             "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    save_weights(args.out, model, config.to_dict(), extra, dtype=torch.float16)
    print(json.dumps({k: v for k, v in result.items()}, indent=1))
    print(f"wrote {args.out}")


@torch.no_grad()
def install_head(model, head: Head, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Copy a trained :class:`Head` into a FusionNet: the standardisation of the raw concatenated
    features (``mean``, ``std``), the dense layer and the classifier."""
    model.feature_mean.copy_(mean)
    model.feature_std.copy_(std)
    model.dense[0].load_state_dict(head.dense[1].state_dict())
    model.classifier[1].load_state_dict(head.out[1].state_dict())


def _mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def print_table(results: dict) -> None:
    print("| configuration | scene val | scene test | scene 5-fold CV (test folds) | faces val (PublicTest) | "
          "faces test (PrivateTest) |\n|---|---|---|---|---|---|")
    for name, row in results.items():
        split = [r for k, r in row.items() if k.startswith("split/")]
        folds = {}
        for k, r in row.items():
            if k.startswith("fold"):
                folds.setdefault(k.split("/")[1], []).append(r["test"])
        cv = [statistics.mean(v) for v in zip(*[folds[s] for s in folds])] if folds else []
        cv_by_seed = [statistics.mean(v) for v in folds.values()]
        print(f"| {name} | {_mean_std([r['val'] for r in split])} | {_mean_std([r['test'] for r in split])} | "
              f"{_mean_std(cv_by_seed) if cv_by_seed else '—'} | {_mean_std([r['face_val'] for r in split])} | "
              f"{_mean_std([r['face_test'] for r in split])} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("encode", help="cache pooled features of one backbone")
    p.add_argument("--backbone", required=True, help="imagenet-lite0|lite1|lite2, imagenet-mbv2, or a name for --weights")
    p.add_argument("--weights", default=None, help="a trained .safetensors (e.g. runs/fer-lite0/best.safetensors)")
    for q in (p, sub.add_parser("probe", help="logistic regression on frozen features"),
              sub.add_parser("heads", help="adaptation heads on cached features (the paper's loss)")):
        q.add_argument("--size", type=int, default=160, help="input side in pixels for every image")
        q.add_argument("--threads", type=int, default=1, help="torch threads")
        q.add_argument("--tag", default="", help="suffix of the results file")
    probe_p, heads_p = sub.choices["probe"], sub.choices["heads"]
    for q in (probe_p, heads_p):
        q.add_argument("--backbones", nargs="+", required=True, help="cached backbones; 'a+b' concatenates features")
    heads_p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    heads_p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    heads_p.add_argument("--epochs", type=int, default=60)
    heads_p.add_argument("--cv", action="store_true", help="also the 5 folds of folds.json")
    p = sub.add_parser("ship", help="train the chosen head on the holdout split and write FusionNet weights")
    p.add_argument("--face", default="fer-lite0", help="cached face backbone name")
    p.add_argument("--face-weights", required=True, help="its weights (e.g. runs/fer-lite0/best.safetensors)")
    p.add_argument("--scene", default="imagenet-lite0", help="cached ImageNet scene backbone name")
    p.add_argument("--config", default="+source-CE", choices=list(CONFIGS), help="the loss (chosen on validation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/emoadapt-ier.safetensors")
    args = parser.parse_args(argv)
    {"encode": encode, "probe": probe, "heads": heads, "ship": ship}[args.part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
