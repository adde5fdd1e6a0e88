"""``--part mobilenet``: the adaptation ablation on frozen ImageNet MobileNetV2 features — the dense
head trained on cached features with each discrepancy and the source CE term, 3 seeds, beside a
linear probe (logistic regression, C chosen on val). Writes the split every later part reads."""

from __future__ import annotations

import time
from pathlib import Path

from adapt_common import MOBILENET_CONFIGS, linear_probe, run_configs
from emotion6 import emotion6_splits, vote_agrees

from emoadapt.adapt.cached import encode_views
from emoadapt.adapt.config import AdaptConfig
from emoadapt.adapt.data import source_faces
from emoadapt.adapt.start import build_start_model

def add_arguments(parser) -> None:
    parser.add_argument("--size", type=int, default=160, help="MobileNetV2 input size")


def run(args, out: Path) -> dict:
    base = AdaptConfig(init="imagenet-mobilenetv2", input_size=args.size, freeze="features", epochs=40,
                       lr=1e-3, source_limit=args.source_limit, threads=args.threads)
    start = build_start_model(base)
    splits = emotion6_splits(args.size, manifest=None, seed=0, write_to=out / "split.json")
    source = source_faces(args.size, limit=base.source_limit, seed=0, progress=False)
    started = time.time()
    cached = encode_views(start, splits["train"].images, splits["val"].images, source[0])
    encode_seconds = time.time() - started
    agree = vote_agrees(splits["test"])
    results = {"size": args.size, "split_counts": {k: int(len(v.labels)) for k, v in splits.items()},
               "encode_seconds": encode_seconds, "test_agree_n": int(agree.sum())}
    results["linear_probe"] = linear_probe(start, splits, out)
    print(f"linear probe: test {results['linear_probe']['test']['accuracy']:.3f}", flush=True)
    results["configs"] = run_configs("mobilenetv2 ", base, MOBILENET_CONFIGS, args.seeds, splits, source, out,
                                     cached=cached, agree=agree)
    return results
