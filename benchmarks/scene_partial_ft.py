"""Issue #30 route: fine-tune only the scene branch's last stages (6, 7 and the head conv) on cached
stage-5 maps, then fit the recipe's linear scene expert on the new features.

A full LP-FT of the scene branch cost ~10–20 min per epoch here and did not beat the frozen recipe
(results/scenes/lpft.json). Stages 1–5 hold ~80 % of Lite0's FLOPs; with their outputs cached per
view, an epoch over the last stages costs seconds, so the whole CV fits in a session.

    python benchmarks/scene_partial_ft.py maps                 # cache (V, N, 112, 14, 14) fp16 stage-5 maps
    python benchmarks/scene_partial_ft.py run --lr 1e-4 --epochs 8 --mode select --folds 0 1 2 3 4
    python benchmarks/scene_partial_ft.py run ... --mode final  # test folds, after choosing on validation

Folds: the reference probe's StratifiedKFold(5, shuffle, seed) over the 1,056 Emotion6 images sorted by
path (``--seed`` 0 or 1; what ``recipe_skf.py`` and ``scene_probe.py cv`` use). ``select``: test fold k,
validation fold k+1, train on the other three; ``final``: train on the four others, score test fold k.

Each run scores, on the same split, (a) the frozen branch: the recipe's scene expert (L-BFGS logistic
regression, l2 of the recipe, on standardised stage 5–7 + last-map pooled features, train views 0–3,
flip test-time averaging) and (b) the same expert refitted after fine-tuning stages 6–7 + head conv
(BatchNorm statistics frozen; the linear probe initialises the head, LP-FT; one random view of 8 per
image per epoch and a random mirror of the map). Results: ``benchmarks/results/scenes/partial-ft.json``.
The experts' scene expert is what scores Emotion6 images in the shipped model (the gate sends them to it),
so (a) is the recipe's scene figure and (b − a) the route's gain.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.stats import stratified_folds  # noqa: E402
from benchmarks.lib.stats import standard_error  # noqa: E402
from benchmarks.scene_probe import scene_samples  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "partial-ft"
OUT = ROOT / "benchmarks" / "results" / "scenes" / "partial-ft.json"
VIEWS, SIZE, FIT = 8, 224, "crop"
TRAIN_VIEWS = 4  # the recipe's train_views: the head trains on views 0-3


def default_model():
    from emoadapt.models.registry import DEFAULT_MODEL, get_preset, resolve_model

    model, _ = resolve_model(DEFAULT_MODEL)
    return model.eval(), DEFAULT_MODEL, get_preset(DEFAULT_MODEL).sha256


def stage5_end(model) -> int:
    return model.branches["scene"].block_stages[5][0]


@torch.inference_mode()
def cache_maps(chunk: int = 32) -> Path:
    """(V, N, 112, 14, 14) float16 stage-5 maps of every view of every image, one file per chunk."""
    from emoadapt.adapt.views import crop_boxes
    from emoadapt.recipe.features import view_images

    model, _, _ = default_model()
    scene, end = model.branches["scene"], stage5_end(model)
    paths, _ = scene_samples()
    boxes = crop_boxes(len(paths), VIEWS, 0)[2:]  # views 2-3 equal the recipe's 4-view cache (same seed)
    folder = RUNS / "maps"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for first in range(0, len(paths), chunk):
        part = folder / f"part-{first // chunk:05d}.npy"
        if part.exists():
            continue
        batch = np.stack([view_images(paths[i], SIZE, FIT, VIEWS, boxes[:, i])
                          for i in range(first, min(first + chunk, len(paths)))], 1)  # (V, n, 3, S, S)
        h = model.normalised("scene", torch.from_numpy(batch.reshape(-1, 3, SIZE, SIZE)))
        for index in range(end):
            h = scene.features[index](h)
        tmp = part.with_suffix(".tmp.npy")
        np.save(tmp, h.reshape(VIEWS, -1, *h.shape[1:]).half().numpy())
        tmp.replace(part)
        print(f"[maps] {min(first + chunk, len(paths))}/{len(paths)} ({time.time() - started:.0f} s)", flush=True)
    return folder


def load_maps() -> np.ndarray:
    parts = sorted((RUNS / "maps").glob("part-*.npy"))
    parts = [p for p in parts if not p.name.endswith(".tmp.npy")]
    return np.concatenate([np.load(p) for p in parts], 1)


def tail_features(model, maps: torch.Tensor) -> torch.Tensor:
    """(n, 1904) the scene branch's pooled features (last map, stages 5, 6, 7) from stage-5 maps (n, 112, 14, 14)."""
    scene, end = model.branches["scene"], stage5_end(model)
    h, pooled = maps.float(), {}
    stage_ends = {e: k for k, (e, _) in scene.block_stages.items()}
    pooled[5] = h.mean(dim=(2, 3))
    for index in range(end, len(scene.features)):
        h = scene.features[index](h)
        if index + 1 in stage_ends and stage_ends[index + 1] in (6, 7):
            pooled[stage_ends[index + 1]] = h.mean(dim=(2, 3))
    return torch.cat([h.mean(dim=(2, 3)), pooled[5], pooled[6], pooled[7]], dim=1)


@torch.no_grad()
def all_features(model, maps: np.ndarray, views: int, batch: int = 256) -> np.ndarray:
    """(views, N, C) features of the first ``views`` views."""
    out = []
    for v in range(views):
        out.append(torch.cat([tail_features(model, torch.from_numpy(maps[v, i:i + batch]))
                              for i in range(0, maps.shape[1], batch)]).numpy())
    return np.stack(out)


def fit_expert(features: np.ndarray, labels: np.ndarray, train: np.ndarray, l2: float, views: int = TRAIN_VIEWS):
    """The recipe's scene expert: standardisation over the first ``views`` views of the training
    images, then L-BFGS logistic regression on them."""
    from emoadapt.recipe.heads import lbfgs_fit

    x = features[:views, train].reshape(-1, features.shape[-1])
    mean, std = x.mean(0), x.std(0) + 1e-6
    layer = torch.nn.Linear(x.shape[1], int(labels.max()) + 1)
    z = torch.from_numpy((x - mean) / std).float()
    y = torch.from_numpy(np.tile(labels[train], views)).long()
    lbfgs_fit(layer, lambda lin: F.cross_entropy(lin(z), y), l2)
    return layer, mean, std


@torch.no_grad()
def expert_accuracy(expert, features: np.ndarray, labels: np.ndarray, index: np.ndarray) -> float:
    layer, mean, std = expert
    probs = sum(layer(torch.from_numpy((features[v, index] - mean) / std).float()).softmax(1) for v in (0, 1))
    return float((probs.argmax(1).numpy() == labels[index]).mean())


def fine_tune(model, maps: np.ndarray, labels: np.ndarray, train: np.ndarray, expert, args, seed: int):
    """Stages 6–7 + head conv of a copy of the scene branch and the linear head, trained end to end."""
    scene, end = model.branches["scene"], stage5_end(model)
    tail = torch.nn.ModuleList(scene.features[end:])
    tail.eval()  # BatchNorm statistics stay ImageNet's (batches of a few dozen images)
    layer, mean, std = expert
    head = torch.nn.Linear(layer.in_features, layer.out_features)
    head.load_state_dict(layer.state_dict())
    mean_t, std_t = torch.from_numpy(mean).float(), torch.from_numpy(std).float()
    params = [p for name, p in tail.named_parameters() if args.train_bn or "_bn" not in name]
    optimiser = torch.optim.AdamW([{"params": params, "lr": args.lr, "weight_decay": args.wd},
                                   {"params": head.parameters(), "lr": args.lr * args.head_lr_scale,
                                    "weight_decay": 0.0}])
    rng = np.random.default_rng(seed)
    steps = args.epochs * int(np.ceil(len(train) / args.batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=[args.lr, args.lr * args.head_lr_scale],
                                                   total_steps=steps, pct_start=0.1)
    for epoch in range(args.epochs):
        order = rng.permutation(train)
        started, total = time.time(), 0.0
        for first in range(0, len(order), args.batch):
            idx = order[first:first + args.batch]
            views = rng.integers(0, VIEWS, size=len(idx))
            x = torch.from_numpy(maps[views, idx]).float()
            flip = torch.from_numpy(rng.uniform(size=len(idx)) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            z = (tail_features(model, x) - mean_t) / std_t
            loss = F.cross_entropy(head(z), torch.from_numpy(labels[idx]).long(), label_smoothing=args.smoothing)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        print(f"  epoch {epoch + 1}/{args.epochs}: loss {total / len(order):.4f} ({time.time() - started:.1f} s)",
              flush=True)
    return model


def skf_folds(labels: np.ndarray, seed: int) -> np.ndarray:
    """The issue's StratifiedKFold(5, seed) fold of each image (benchmarks.lib.stats.stratified_folds)."""
    return stratified_folds(labels, seed)


def summarise(row: dict) -> dict:
    """A run's means over its folds and the paired tuned − frozen difference (mean ± SE, points as fractions)."""
    frozen = np.array([v["frozen"] for v in row["folds"].values()])
    tuned = np.array([v["tuned"] for v in row["folds"].values()])
    return {**row, "frozen_mean": float(frozen.mean()), "tuned_mean": float(tuned.mean()), "n_folds": len(frozen),
            "tuned_minus_frozen": {"mean": float((tuned - frozen).mean()), "se": standard_error(tuned - frozen)}}


def run(args) -> None:
    import copy

    torch.set_num_threads(args.threads)
    base, name, sha = default_model()
    maps = load_maps()
    _, labels = scene_samples()
    if maps.shape[1] != len(labels):
        raise SystemExit(f"maps hold {maps.shape[1]} images, expected {len(labels)}: run `maps` first")
    fold = skf_folds(labels, args.seed)
    frozen = all_features(base, maps, VIEWS)
    key = (f"{args.mode} seed{args.seed} lr{args.lr:g} ep{args.epochs} wd{args.wd:g} hs{args.head_lr_scale:g} "
           f"ls{args.smoothing:g} l2{args.l2:g}" + (" bn" if args.train_bn else ""))
    results = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}
    row = results["runs"].get(key, {"folds": {}})
    for k in args.folds:
        if str(k) in row["folds"]:
            continue
        test = np.flatnonzero(fold == k)
        val = np.flatnonzero(fold == (k + 1) % 5)
        train = np.flatnonzero((fold != k) & ((fold != (k + 1) % 5) | (args.mode == "final")))
        scored = val if args.mode == "select" else test
        expert = fit_expert(frozen, labels, train, args.l2)
        before = expert_accuracy(expert, frozen, labels, scored)
        started = time.time()
        model = fine_tune(copy.deepcopy(base), maps, labels, train, expert, args, seed=k)
        tuned = all_features(model, maps, TRAIN_VIEWS)
        after = expert_accuracy(fit_expert(tuned, labels, train, args.l2), tuned, labels, scored)
        row["folds"][str(k)] = {"frozen": before, "tuned": after, "n_scored": int(len(scored)),
                                "seconds": round(time.time() - started, 1)}
        print(f"[{key}] fold {k}: frozen {before:.4f} tuned {after:.4f} ({time.time() - started:.0f} s)", flush=True)
        results["runs"][key] = row
        write_results(results, name, sha)
    write_results(results, name, sha)  # a rerun of finished folds refreshes the summaries


def write_results(results: dict, name: str, sha: str) -> None:
    results["runs"] = {key: summarise(row) for key, row in results["runs"].items()}
    results.update(what=__doc__.split("\n\n")[0], scored="validation fold k+1 in select mode, test fold k in final",
                   **provenance(model=name, weights_sha256=sha))
    write_json(OUT, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="job", required=True)
    sub.add_parser("maps", help="cache the stage-5 maps of 8 views of every Emotion6 image (runs/partial-ft/maps)")
    r = sub.add_parser("run", help="fine-tune per fold and score frozen vs tuned scene experts")
    r.add_argument("--mode", choices=("select", "final"), default="select", help="score validation (select) or test (final)")
    r.add_argument("--seed", type=int, default=0, help="StratifiedKFold seed (the probe's: 0, 1)")
    r.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="which folds to run")
    r.add_argument("--lr", type=float, default=1e-4, help="peak AdamW learning rate of the tuned stages")
    r.add_argument("--head-lr-scale", type=float, default=1.0, help="the head's learning rate = lr x this")
    r.add_argument("--wd", type=float, default=0.01, help="AdamW weight decay of the tuned stages")
    r.add_argument("--epochs", type=int, default=8, help="epochs (one random view per image per epoch)")
    r.add_argument("--batch", type=int, default=32, help="images per step")
    r.add_argument("--smoothing", type=float, default=0.0, help="label smoothing of the fine-tuning loss")
    r.add_argument("--l2", type=float, default=1.0, help="l2 of the L-BFGS scene expert (the recipe's head.l2)")
    r.add_argument("--train-bn", action="store_true", help="also train BatchNorm scales and shifts")
    r.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    if args.job == "maps":
        cache_maps()
    else:
        run(args)


if __name__ == "__main__":
    main()
