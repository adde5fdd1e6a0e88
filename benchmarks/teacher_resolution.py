"""How much does an IER model lose when it only gets a low-resolution picture?

Each Emotion6 validation image is shrunk to R px and scaled back up to the model's input size
(bilinear both ways), so the model sees what a student at R px could see. Used to tell whether a
64 px student is held back by its input size (docs/benchmarks.md §2, online distillation).

    python benchmarks/teacher_resolution.py [--weights emoadapt-ier] [--sizes 160 96 64 48]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from emotion6 import SPLIT, emotion6_splits
from PIL import Image

from emoadapt.models.registry import resolve_model
from emoadapt.training.metrics import predict_arrays


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="emoadapt-ier")
    parser.add_argument("--manifest", default=str(SPLIT))
    parser.add_argument("--split", default="val")
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 96, 64, 48])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = resolve_model(args.weights)
    size = model.config.input_size
    split = emotion6_splits(size, manifest=args.manifest)[args.split]
    print(f"| seen at | {args.split} accuracy ({len(split.labels)} images) |\n|---|---|")
    for seen in args.sizes:
        low = np.stack([np.asarray(Image.fromarray(image).resize((seen, seen), Image.BILINEAR)
                                   .resize((size, size), Image.BILINEAR)) for image in split.images])
        accuracy = float((predict_arrays(model, low).argmax(1) == split.labels).mean())
        print(f"| {seen} px | {accuracy:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
