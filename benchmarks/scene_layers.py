"""Issue #30, a route beside the head: which frozen ImageNet Lite0 features read Emotion6 scenes best.

    python benchmarks/scene_layers.py encode [--crops 6] [--threads 2]   # one cache, every block, every view
    python benchmarks/scene_layers.py cv --runs head:cc,ccf head+st7:cc,ccf ...  # probe protocol

Same images, views and probe as ``benchmarks/scene_probe.py`` (the issue's protocol: short side 256
bicubic, centre crop 224, flip-averaged; StandardScaler + LogisticRegression, C by inner 5-fold CV;
StratifiedKFold(5) x seeds 0, 1 — and the product's five folds of ``folds.json``, fold k test,
training on the other four, as ``emoadapt train --cv`` does; and its select mode, fold k+1 the
validation fold of a head trained on the three others — the column that chooses). What changes is *what is pooled*:

  st3 … st7   the mean over positions of each stage's output (40, 80, 112, 192, 320 channels)
  head        the mean of the 1,280-channel head map (the probe's and the product's features)
  hstd        the standard deviation over positions of that map (texture-like statistics)
  hmax        its maximum over positions

A run ``BLOCK[+BLOCK…]:VIEW,VIEW[/train=VIEWS]`` concatenates the blocks, averages the named views
for testing and, with ``/train=``, trains on every listed view as its own sample. ``rc`` in a view
list stands for every random resized crop (scale 0.3–1, aspect 3/4–4/3, seeded per image) and its
mirror image. Results: benchmarks/results/scenes/layers-cv.json with provenance.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.scene_probe import (C_GRID, build, crop, onnx_function, probe_fit, scene_samples,  # noqa: E402
                                    short_side)

ROOT = Path(__file__).resolve().parent
CACHE = ROOT.parent / ".cache" / "features" / "layers"
OUT = ROOT / "results" / "scenes"
FOLDS = ROOT / "results" / "adaptation" / "folds.json"
BLOCKS = ("st3", "st4", "st5", "st6", "st7", "head", "hstd", "hmax")


class LayerFeatures(torch.nn.Module):
    """(N, 3, 224, 224) in [0, 1] -> (N, D): the BLOCKS concatenated in order."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        repeats = [1, 2, 2, 3, 3, 4, 1]  # Lite0's blocks per stage
        ends = np.cumsum([1] + repeats)  # features = [stem, blocks…, head]: index after each stage
        self.stage_ends = {int(ends[k]): f"st{k}" for k in range(3, 8)}  # stage k ends after ends[k] layers

    def forward(self, x):
        x = (x - self.model.mean) / self.model.std
        pooled = []
        for index, layer in enumerate(self.model.features):
            x = layer(x)
            if index + 1 in self.stage_ends:
                pooled.append(x.mean((2, 3)))
        flat = x.flatten(2)
        return torch.cat(pooled + [flat.mean(2), flat.std(2), flat.amax(2)], 1)


def widths() -> dict[str, int]:
    return dict(zip(BLOCKS, (40, 80, 112, 192, 320, 1280, 1280, 1280)))


def session(threads: int):
    return onnx_function(LayerFeatures(build("lite0")), threads)


def random_crops(image: Image.Image, count: int, seed: int) -> list[Image.Image]:
    """``count`` random resized crops (area 30–100 %, aspect 3/4–4/3) at 224 px, bicubic."""
    rng = np.random.default_rng(seed)
    w, h = image.size
    out = []
    for _ in range(count):
        area = rng.uniform(0.3, 1.0) * w * h
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = min(w, round(np.sqrt(area * aspect))), min(h, round(np.sqrt(area / aspect)))
        x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        out.append(image.resize((224, 224), Image.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch)))
    return out


def views_of(path: str, index: int, crops: int) -> dict[str, np.ndarray]:
    image = Image.open(path).convert("RGB")
    base = {"cc": crop(short_side(image, 256), 224, "cc")}
    base.update({f"rc{k}": view for k, view in enumerate(random_crops(image, crops, seed=index))})
    out = {}
    for name, view in base.items():
        array = np.asarray(view)
        out[name] = array
        out[name + "f"] = np.ascontiguousarray(array[:, ::-1])
    return out


def encode(args) -> None:
    run_model = session(args.threads)
    paths, labels = scene_samples()
    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for first in range(0, len(paths), 64):  # one file per chunk: an interrupted encoding resumes
        part = CACHE / f"part-{first // 64:03d}.npz"
        if part.exists():
            continue
        batch: dict[str, list[np.ndarray]] = {}
        for i in range(first, min(first + 64, len(paths))):
            for name, array in views_of(paths[i], i, args.crops).items():
                batch.setdefault(name, []).append(array)
        feats = {name: run_model(np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2), dtype=np.float32) / 255)
                 for name, arrays in batch.items()}
        tmp = part.with_suffix(".tmp.npz")
        np.savez(tmp, **feats)
        tmp.replace(part)
        print(f"{min(first + 64, len(paths))}/{len(paths)} images, {time.time() - t0:.0f} s", flush=True)
    print(f"encoded in {time.time() - t0:.0f} s")


def load_cache() -> dict[str, np.ndarray]:
    parts = [np.load(p) for p in sorted(CACHE.glob("part-*.npz"))]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0].files}


def select(cache: dict[str, np.ndarray], views: list[str], blocks: list[str]) -> np.ndarray:
    """(V, N, D): the named views, the named blocks concatenated."""
    offsets, start = {}, 0
    for name, width in widths().items():
        offsets[name] = (start, start + width)
        start += width
    names = [v for view in views for v in ([k for k in cache if k.startswith("rc")] if view == "rc" else [view])]
    return np.stack([np.concatenate([cache[v][:, slice(*offsets[b])] for b in blocks], 1) for v in names])


def fold_splits(y: np.ndarray, quick: bool = False):
    """(protocol, train, test, seed): StratifiedKFold(5) x seeds 0, 1 (not when ``quick``), then the
    product's 5 folds."""
    from sklearn.model_selection import StratifiedKFold

    from emoadapt.data.locate import dataset_path
    from emoadapt.data.splits import read_manifest

    for seed in () if quick else (0, 1):
        for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
            yield f"skf{seed}", train, test, seed
    paths, _ = scene_samples()
    root = dataset_path("emotion6")
    assignments = read_manifest(FOLDS).assignments
    folds = np.array([assignments[str(Path(p).relative_to(root))] for p in paths])
    for k in range(5):
        yield "folds", np.flatnonzero(folds != f"fold{k}"), np.flatnonzero(folds == f"fold{k}"), 0
    for k in range(5):  # select mode: fold k is the test fold (unused), fold k+1 validation, three train
        held = (folds == f"fold{k}") | (folds == f"fold{(k + 1) % 5}")
        yield "val", np.flatnonzero(~held), np.flatnonzero(folds == f"fold{(k + 1) % 5}"), 0


def cv(args) -> None:
    cache = load_cache()
    _, y = scene_samples()
    out_path = OUT / "layers-cv.json"
    results = json.loads(out_path.read_text())["runs"] if out_path.exists() else {}
    for run in args.runs:
        spec, _, train_spec = run.partition("/train=")
        blocks, views = spec.split(":")
        test_x = select(cache, views.split(","), blocks.split("+")).mean(0)
        train_views = select(cache, train_spec.split(","), blocks.split("+")) if train_spec else None
        scores: dict[str, list[float]] = {}
        for protocol, train, test, seed in fold_splits(y, args.quick):
            if train_views is None:
                search = probe_fit(test_x[train], y[train], seed)
            else:
                views_t = train_views[:, train]
                search = probe_fit(views_t.reshape(-1, views_t.shape[-1]), np.tile(y[train], len(views_t)), seed,
                                   groups=np.tile(train, len(views_t)))
            scores.setdefault(protocol, []).append(float(search.score(test_x[test], y[test])))
        skf = scores.get("skf0", []) + scores.get("skf1", [])
        row = {"skf_mean": float(np.mean(skf)), "skf_sd": float(np.std(skf, ddof=1)), "skf": skf} if skf else {}
        results[run] = {**results.get(run, {}), **row,
                        "folds_mean": float(np.mean(scores["folds"])), "folds_sd": float(np.std(scores["folds"], ddof=1)),
                        "folds": scores["folds"], "val_mean": float(np.mean(scores["val"])),
                        "val_sd": float(np.std(scores["val"], ddof=1)), "val": scores["val"],
                        "dim": int(test_x.shape[1])}
        print(f"{run:48s} skf {100 * np.mean(skf or [np.nan]):.1f} ± {100 * np.std(skf, ddof=1) if skf else np.nan:.1f}   "
              f"folds.json {100 * np.mean(scores['folds']):.1f} ± {100 * np.std(scores['folds'], ddof=1):.1f}   "
              f"val {100 * np.mean(scores['val']):.1f} ± {100 * np.std(scores['val'], ddof=1):.1f}",
              flush=True)
        write_json(out_path, {"what": "issue #30: probe protocol on pooled blocks of frozen ImageNet Lite0",
                              "sd": "sample sd over fold scores", "C_grid": list(C_GRID), "runs": results,
                              **provenance()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("encode", help="cache every block's pooled features of every view (resumes)")
    p.add_argument("--crops", type=int, default=6, help="random resized crops per image (each also mirrored)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    p.set_defaults(func=encode)
    p = sub.add_parser("cv", help="probe CV on cached features (StratifiedKFold x 2 seeds, and folds.json)")
    p.add_argument("--runs", nargs="+", required=True, help="BLOCK[+BLOCK]:VIEW[,VIEW][/train=VIEWS] (module doc)")
    p.add_argument("--quick", action="store_true", help="the product's 5 folds only (a screen; 3x faster)")
    p.set_defaults(func=cv)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
