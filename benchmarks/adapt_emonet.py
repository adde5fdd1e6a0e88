"""``--part emonet``: the paper-structure EmoNet adapted from its own FER training (``--fer``), full
fine-tune at ``--emonet-size`` RGB, beside the FER model applied zero-shot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from adapt_common import DEFAULT_EMONET_SIZE, DEFAULT_FER, MOBILENET_CONFIGS, fer_label, run_configs
from emotion6 import emotion6_splits, vote_agrees
from PIL import Image

from emoadapt.adapt.config import AdaptConfig
from emoadapt.adapt.data import source_faces
from emoadapt.data.labels import IER_CLASSES
from emoadapt.evaluate import ier_probs_from_fer
from emoadapt.models.registry import load_model
from emoadapt.training.metrics import classification_report, predict_arrays

def add_arguments(parser) -> None:
    add_emonet_arguments(parser)
    parser.add_argument("--head", choices=("new", "mapped"), default="new",
                        help="a fresh 4-class layer or the FER rows happy/sad/disgust/angry")
    parser.add_argument("--emonet-configs", nargs="+", default=["target-only", "+mmd", "+source-CE +mmd"])


def add_emonet_arguments(parser) -> None:
    """The options of the EmoNet parts (emonet, distill)."""
    parser.add_argument("--fer", default=DEFAULT_FER, help="FER checkpoint (default: the shipped fer-cpu)")
    parser.add_argument("--emonet-size", type=int, default=DEFAULT_EMONET_SIZE)
    parser.add_argument("--emonet-epochs", type=int, default=15)


def run(args, out: Path) -> dict:
    base = AdaptConfig(init=args.fer, input_size=args.emonet_size, rgb=True, freeze="none", epochs=args.emonet_epochs,
                       lr=1e-3, backbone_lr_scale=1.0, source_limit=args.source_limit, threads=args.threads,
                       head=args.head)
    fer_model, _ = load_model(args.fer)
    splits = emotion6_splits(args.emonet_size, manifest=out / "split.json")
    agree = vote_agrees(splits["test"])
    zero_shot_x = splits["test"].images.mean(axis=3, keepdims=True).round().astype(np.uint8)  # RGB -> grey
    size = fer_model.config.input_size
    zero_shot_x = np.stack([np.asarray(Image.fromarray(a[:, :, 0]).resize((size, size), Image.Resampling.BILINEAR))
                            for a in zero_shot_x])[:, :, :, None]
    probs = ier_probs_from_fer(predict_arrays(fer_model, zero_shot_x))
    results = {"size": args.emonet_size, "zero_shot": classification_report(splits["test"].labels, probs, IER_CLASSES)}
    print(f"emonet zero-shot: test {results['zero_shot']['accuracy']:.3f}", flush=True)
    source = source_faces(args.emonet_size, limit=base.source_limit, seed=0, progress=False)
    configs = {k: MOBILENET_CONFIGS[k] for k in args.emonet_configs}
    prefix = "emonet " + fer_label(args.fer) + ("mapped-head " if args.head == "mapped" else "")  # OUT/runs
    results["head"] = args.head
    results["configs"] = run_configs(prefix, base, configs, args.seeds, splits, source, out, agree=agree)
    return results
