"""Does a student trained on crops do better when evaluated at a larger input ("FixRes")?

The online-distillation students train on random resized crops (35–100 % of the area) scaled to
their input size, so at training time objects look larger than in a whole image at the same size
(Touvron et al. 2019, "Fixing the train-test resolution discrepancy"). EmoNet ends in a global
pool, so it accepts other input sizes as long as its residual branches (whose max-pool windows
are fixed by the configured input size) still meet block 5's grid; a size that does not fit is
shown as "—". This script scores saved weights on an Emotion6 split with the whole image at
several sizes, plain and with flip TTA. It reads the validation split by default,
so that a size can be chosen without looking at test (docs/benchmarks.md §2).

    python benchmarks/eval_resolution.py --weights 'benchmarks/results/adaptation/runs/*maps-s?/best.safetensors'
        [--sizes 64 72 80 96] [--split val]
"""

from __future__ import annotations

import argparse
import glob
import sys

import torch
from emotion6 import SPLIT, emotion6_splits

from emoadapt.models.registry import load_model
from emoadapt.training.metrics import predict_plain_and_flip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", nargs="+", required=True, help="safetensors files or glob patterns")
    parser.add_argument("--manifest", default=str(SPLIT))
    parser.add_argument("--split", default="val")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 72, 80, 96])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    files = sorted({path for pattern in args.weights for path in (glob.glob(pattern) or [pattern])})
    splits = {size: emotion6_splits(size, manifest=args.manifest)[args.split] for size in args.sizes}
    print(f"{args.split} accuracy, plain / flip TTA ({len(splits[args.sizes[0]].labels)} images)\n")
    print("| weights | " + " | ".join(f"{size} px" for size in args.sizes) + " |")
    print("|---|" + "---|" * len(args.sizes))
    for path in files:
        model, _ = load_model(path)
        cells = []
        for size, split in splits.items():
            try:
                both = predict_plain_and_flip(model, split.images)
                plain, flip = ((probs.argmax(1) == split.labels).mean() for probs in both)
            except RuntimeError:  # the residual branches do not meet block 5 at this size
                cells.append("—")
                continue
            cells.append(f"{plain:.1%} / {flip:.1%}")
        print(f"| {path} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
