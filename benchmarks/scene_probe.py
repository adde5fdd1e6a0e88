"""Issue #30's reference probe, reproduced, and the cheap routes beside it in the same folds.

    python benchmarks/scene_probe.py encode --backbone lite0 [--threads 2]   # feature cache per view
    python benchmarks/scene_probe.py cv --runs lite0:cc,ccf lite0:sq,sqf ...  # 5-fold CV x 2 seeds

The protocol (issue #30): the 1,056 Emotion6 images of the 4 IER classes; resize the short side to
256 (bicubic), centre crop 224, the backbone's own normalisation, globally pooled last features,
averaged with those of the horizontally flipped image; StandardScaler + LogisticRegression
(max_iter 2000) with C from {0.003, 0.01, 0.03, 0.1} chosen by inner 5-fold CV;
StratifiedKFold(5, shuffle, seeds 0 and 1). Reference: Lite0 76.0 ± 2.3 %.

Views encoded per image (name: what the backbone sees, 224 x 224 unless said):
  cc / ccf      short side 256 bicubic, centre crop 224 / mirrored
  sq / sqf      the whole image squashed to 224 x 224 (bicubic) / mirrored
  tl tr bl br   the four corner crops of the short-side-256 image (+ "f" mirrored)
  c288 / c288f  short side 320, centre crop 288 (a larger input, same field of view as cc)

A run ``BACKBONE[+BACKBONE]:VIEW,VIEW`` averages the named views' features per backbone, then
concatenates backbones. Results go to benchmarks/results/scenes/probe-cv.json with provenance.
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

ROOT = Path(__file__).resolve().parent
CACHE = ROOT.parent / ".cache" / "features" / "probe"
OUT = ROOT / "results" / "scenes"
C_GRID = (0.003, 0.01, 0.03, 0.1)


def scene_samples():
    """The 1,056 Emotion6 images of the 4 IER classes: (paths, labels 0..3) in a fixed order."""
    from emoadapt.data import open_dataset
    from emoadapt.data.labels import IER_CLASSES
    from emoadapt.data.locate import dataset_path

    dataset = open_dataset(dataset_path("emotion6"), "emotion6").to_ier_dataset()
    samples = sorted(dataset.samples, key=lambda s: s.path)
    return [s.path for s in samples], np.array([IER_CLASSES.index(s.label) for s in samples])


def short_side(image: Image.Image, side: int) -> Image.Image:
    w, h = image.size
    scale = side / min(w, h)
    return image.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.BICUBIC)


def crop(image: Image.Image, box_side: int, where: str) -> Image.Image:
    w, h = image.size
    x0 = {"l": 0, "c": (w - box_side) // 2, "r": w - box_side}[where[1]]
    y0 = {"t": 0, "c": (h - box_side) // 2, "b": h - box_side}[where[0]]
    return image.crop((x0, y0, x0 + box_side, y0 + box_side))


def views_of(path: str, names: tuple[str, ...] = ("cc", "sq", "tl", "tr", "bl", "br", "c288")) -> dict[str, np.ndarray]:
    """The named views of one image (and their mirror images) as uint8 (S, S, 3)."""
    image = Image.open(path).convert("RGB")
    small = short_side(image, 256)
    base = {"cc": crop(small, 224, "cc"), "sq": image.resize((224, 224), Image.BICUBIC),
            "tl": crop(small, 224, "tl"), "tr": crop(small, 224, "tr"),
            "bl": crop(small, 224, "bl"), "br": crop(small, 224, "br"),
            "c288": crop(short_side(image, 320), 288, "cc")}
    out = {}
    for name, view in base.items():
        if name not in names:
            continue
        array = np.asarray(view)
        out[name] = array
        out[name + "f"] = np.ascontiguousarray(array[:, ::-1])
    return out


def build(backbone: str):
    from emoadapt.models.efficientnet_lite import EfficientNetLite, EfficientNetLiteConfig
    from emoadapt.models.registry import load_imagenet_init

    return load_imagenet_init(EfficientNetLite(EfficientNetLiteConfig(variant=backbone, input_size=224))).eval()


class PooledFeatures(torch.nn.Module):
    """(N, 3, S, S) in [0, 1] -> (N, D) globally pooled last features."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x).mean((2, 3))


def feature_session(backbone: str, threads: int):
    """The backbone's pooled features as an onnxruntime session (2.4x torch eager on this CPU)."""
    return onnx_function(PooledFeatures(build(backbone)), threads)


def onnx_function(module: torch.nn.Module, threads: int):
    """``module`` (images (N, 3, S, S) in [0, 1] -> (N, D)) exported to onnxruntime, as a function."""
    import io
    import warnings

    import onnxruntime as ort

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.rand(2, 3, 224, 224), buffer, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def encode(args) -> None:
    run_model = feature_session(args.backbone, args.threads)
    paths, labels = scene_samples()
    t0 = time.time()
    feats: dict[str, list[np.ndarray]] = {}
    batch: dict[str, list[np.ndarray]] = {}

    def flush():
        for name, arrays in batch.items():
            x = np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
            feats.setdefault(name, []).append(run_model(x))
        batch.clear()

    for i, path in enumerate(paths):
        for name, array in views_of(path, tuple(args.views)).items():
            batch.setdefault(name, []).append(array)
        if (i + 1) % 32 == 0:
            flush()
            print(f"{args.backbone}: {i + 1}/{len(paths)} images, {time.time() - t0:.0f} s", flush=True)
    flush()
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{args.backbone}.npz"
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, labels=labels, paths=np.asarray(paths), seconds=time.time() - t0,
             **{name: np.concatenate(parts).astype(np.float32) for name, parts in feats.items()})
    tmp.replace(path)
    print(f"wrote {path} in {time.time() - t0:.0f} s")


def features(run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``lite0+lite2:cc,ccf[/train=VIEWS]`` -> test features (N, D) (the views averaged, backbones
    concatenated), labels, and with ``/train=`` the training features per view (V, N, D): the
    classifier then trains on every listed view as its own sample (augmentation)."""
    spec, _, train_spec = run.partition("/train=")
    backbones, views = spec.split(":")
    parts, train_parts, labels = [], [], None
    for backbone in backbones.split("+"):
        data = np.load(CACHE / f"{backbone}.npz")
        parts.append(np.mean([data[v] for v in views.split(",")], axis=0))
        if train_spec:
            train_parts.append(np.stack([data[v] for v in train_spec.split(",")]))
        labels = data["labels"]
    return np.concatenate(parts, 1), labels, (np.concatenate(train_parts, -1) if train_spec else None)


def probe_fit(x: np.ndarray, y: np.ndarray, seed: int, groups: np.ndarray | None = None):
    """StandardScaler + LogisticRegression, C by inner 5-fold CV (the issue's protocol); with
    ``groups`` (several views of one image) the inner folds keep an image's views together."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    inner = (StratifiedKFold(5, shuffle=True, random_state=seed) if groups is None
             else StratifiedGroupKFold(5, shuffle=True, random_state=seed))
    search = GridSearchCV(pipe, {"logisticregression__C": C_GRID}, cv=inner, n_jobs=1)
    return search.fit(x, y, groups=groups)


def cv(args) -> None:
    from sklearn.model_selection import StratifiedKFold

    OUT.mkdir(parents=True, exist_ok=True)
    out_path = OUT / "probe-cv.json"
    results = json.loads(out_path.read_text())["runs"] if out_path.exists() else {}
    for run in args.runs:
        x, y, per_view = features(run)
        scores, chosen = [], []
        for seed in (0, 1):
            for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
                if per_view is None:
                    search = probe_fit(x[train], y[train], seed)
                else:  # every training view a sample; inner folds grouped by image
                    views = per_view[:, train]
                    search = probe_fit(views.reshape(-1, views.shape[-1]), np.tile(y[train], len(views)), seed,
                                       groups=np.tile(train, len(views)))
                scores.append(float(search.score(x[test], y[test])))
                chosen.append(search.best_params_["logisticregression__C"])
        results[run] = {"mean": float(np.mean(scores)), "sd": float(np.std(scores, ddof=1)), "folds": scores,
                        "C": chosen, "dim": int(x.shape[1])}
        print(f"{run:40s} {100 * np.mean(scores):.1f} ± {100 * np.std(scores, ddof=1):.1f}", flush=True)
        write_json(out_path, {"what": "issue #30 reference probe protocol, 5-fold CV x seeds 0,1 on the 1,056 "
                                      "Emotion6 images", "sd": "sample sd over the 10 fold scores",
                              "runs": results, **provenance()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("encode", help="cache every view's pooled features for one backbone")
    p.add_argument("--backbone", default="lite0", choices=("lite0", "lite1", "lite2"), help="ImageNet EfficientNet-Lite variant")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    p.add_argument("--views", nargs="+", default=["cc", "sq", "tl", "tr", "bl", "br", "c288"],
                   help="views to encode (each also mirrored); see the module doc")
    p.set_defaults(func=encode)
    p = sub.add_parser("cv", help="5-fold CV x 2 seeds of the reference probe on cached features")
    p.add_argument("--runs", nargs="+", required=True, help="BACKBONE[+BACKBONE]:VIEW[,VIEW] (see the module doc)")
    p.set_defaults(func=cv)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
