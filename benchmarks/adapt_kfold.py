"""``--part kfold``: 5-fold cross-validation of one configuration (``--config``) with a cached
protocol (``--protocol features``: frozen features, head trained; ``s4``: stage s5 fine-tuned on
``--views`` cached views); every image is encoded once, then each fold indexes the cache."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from adapt_common import FINETUNE_CONFIGS, MOBILENET_CONFIGS, slug, summary
from emotion6 import emotion6_splits

from emoadapt.adapt.cached import encode_views, head_from
from emoadapt.adapt.config import AdaptConfig
from emoadapt.adapt.data import source_faces
from emoadapt.adapt.start import build_start_model
from emoadapt.adapt.train import adapt
from emoadapt.data.labels import IER_CLASSES
from emoadapt.models.registry import load_model
from emoadapt.training.metrics import classification_report

def add_arguments(parser) -> None:
    parser.add_argument("--config", default="+source-CE +mmd", help="the configuration to cross-validate")
    parser.add_argument("--protocol", choices=("features", "s4"), default="features",
                        help="frozen features (head trained) or stage s5 fine-tuned on cached s4 views")
    parser.add_argument("--size", type=int, default=160, help="MobileNetV2 input size")
    parser.add_argument("--views", type=int, default=8, help="cached views per training image (--protocol s4)")
    parser.add_argument("--finetune-epochs", type=int, default=20)


def run(args, out: Path) -> dict:
    """5-fold cross-validation of one configuration (``--config``) with a cached protocol
    (``--protocol features``: frozen features, head trained; ``s4``: stage s5 fine-tuned on
    ``--views`` cached views): every Emotion6 image (and source face, when the configuration uses
    them) is encoded once, then each fold indexes the cache."""
    if args.protocol == "features":
        base = replace(AdaptConfig(init="imagenet-mobilenetv2", input_size=args.size, freeze="features", epochs=40,
                                   lr=1e-3, source_limit=args.source_limit, threads=args.threads),
                       **MOBILENET_CONFIGS[args.config])
    else:
        base = replace(AdaptConfig(init="imagenet-mobilenetv2", input_size=args.size, freeze="s4", views=args.views,
                                   epochs=args.finetune_epochs, lr=1e-3, backbone_lr_scale=0.1,
                                   source_limit=args.source_limit, threads=args.threads),
                       **FINETUNE_CONFIGS[args.config])
    start = build_start_model(base)
    folds = {k: emotion6_splits(args.size, manifest=None, folds=5, fold_index=k, seed=0, write_to=out / "folds.json")
             for k in range(5)}
    everything = {p: (img, label) for k in range(5) for a in folds[k].values()
                  for p, img, label in zip(a.paths, a.images, a.labels)}
    paths = sorted(everything)
    images = np.stack([everything[p][0] for p in paths])
    index = {p: i for i, p in enumerate(paths)}
    uses_source = base.alpha > 0 or base.discrepancy != "none" or base.freeze == "features"
    xs, ys = (source_faces(args.size, limit=base.source_limit, seed=0, progress=False) if uses_source
              else (images[:1, :, :, :1], np.zeros(1, dtype=np.int64)))  # one stand-in face, never used
    tap = "features" if base.freeze == "features" else base.freeze
    started = time.time()
    cache = encode_views(start, images, images[:1], xs, tap=tap, views=base.views, seed=0)
    views, source_views = cache["target"], cache["source"]
    encode_seconds = time.time() - started
    rows = []
    for k in range(5):
        pick = {name: np.array([index[p] for p in folds[k][name].paths]) for name in ("train", "val", "test")}
        cached = {"target": views[:, pick["train"]], "source": source_views, "val": views[0, pick["val"]]}
        model = build_start_model(base)
        run_dir = out / "runs" / f"kfold-{args.protocol}-{slug(args.config)}-fold{k}"
        state = adapt((images[pick["train"]], folds[k]["train"].labels), (images[pick["val"]], folds[k]["val"].labels),
                      (xs, ys), base, run_dir, progress=False, model=model, cached=cached)
        best, _ = load_model(run_dir / "best.safetensors")
        with torch.no_grad():
            probs = torch.cat([head_from(best, tap, chunk)[0] for chunk in views[0, pick["test"]].split(128)])
        report = classification_report(folds[k]["test"].labels, probs.softmax(1).numpy(), IER_CLASSES)
        rows.append({"fold": k, "val_acc": state["best"]["val_acc"], "test": report})
        print(f"fold {k}: val {rows[-1]['val_acc']:.3f} test {report['accuracy']:.3f}", flush=True)
    return {"config": args.config, "protocol": args.protocol, "size": args.size, "encode_seconds": encode_seconds,
            "folds": rows, "test_acc": summary([r["test"]["accuracy"] for r in rows]),
            "test_macro_f1": summary([r["test"]["macro_f1"] for r in rows])}
