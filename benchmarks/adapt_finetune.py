"""``--part finetune``: MobileNetV2 with its last stage s5 and head trained on cached s4 views (the
shipped model's protocol: run ``mobilenetv2-s5 target-only``, seed 1)."""

from __future__ import annotations

import time
from pathlib import Path

from adapt_common import FINETUNE_CONFIGS, run_configs
from emotion6 import emotion6_splits, vote_agrees

from emoadapt.adapt.cached import encode_views
from emoadapt.adapt.config import AdaptConfig
from emoadapt.adapt.data import source_faces
from emoadapt.adapt.start import build_start_model

def add_arguments(parser) -> None:
    parser.add_argument("--size", type=int, default=160, help="MobileNetV2 input size")
    parser.add_argument("--views", type=int, default=8, help="cached views per training image")
    parser.add_argument("--finetune-epochs", type=int, default=20)


def run(args, out: Path) -> dict:
    """MobileNetV2 with its last stage (s5) and head trained: the s4 activations of every image are
    cached in ``--views`` views (as is, mirrored, random resized crops), the same split as
    ``--part mobilenet``."""
    base = AdaptConfig(init="imagenet-mobilenetv2", input_size=args.size, freeze="s4", views=args.views,
                       epochs=args.finetune_epochs, lr=1e-3, backbone_lr_scale=0.1, source_limit=args.source_limit,
                       threads=args.threads)
    start = build_start_model(base)
    splits = emotion6_splits(args.size, manifest=out / "split.json")
    source = source_faces(args.size, limit=base.source_limit, seed=0, progress=False)
    started = time.time()
    cached = encode_views(start, splits["train"].images, splits["val"].images, source[0], tap="s4",
                          views=args.views, seed=0)
    encode_seconds = time.time() - started
    print(f"encoded s4 views in {encode_seconds:.0f} s", flush=True)
    agree = vote_agrees(splits["test"])
    results = {"size": args.size, "views": args.views, "encode_seconds": encode_seconds,
               "test_agree_n": int(agree.sum())}
    results["configs"] = run_configs("mobilenetv2-s5 ", base, FINETUNE_CONFIGS, args.seeds, splits, source, out,
                                     cached=cached, agree=agree)
    return results
