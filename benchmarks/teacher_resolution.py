"""How much does an IER model lose when it only gets a low-resolution picture?

Each Emotion6 validation image is shrunk to R px and scaled back up to the model's input size
(bilinear both ways), so the model sees what a student at R px could see. Used to tell whether a
64 px student is held back by its input size (docs/benchmarks.md §2, online distillation).

    python benchmarks/teacher_resolution.py [--weights emoadapt-ier] [--sizes 160 96 64 48] [--out FILE]

Prints a markdown table and writes it as JSON (``--out``, default
``benchmarks/results/adaptation/teacher_resolution.json``) with the provenance: command, date,
machine, commit, the weights and their sha256.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from emotion6 import SPLIT, emotion6_splits
from PIL import Image

from emoadapt.models.registry import resolve_model
from emoadapt.training.metrics import predict_arrays

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "adaptation" / "teacher_resolution.json"
sys.path.insert(0, str(ROOT))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, weights_identity, write_json  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="emoadapt-ier")
    parser.add_argument("--manifest", default=str(SPLIT))
    parser.add_argument("--split", default="val")
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 96, 64, 48])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(OUT), help=f"results file (default: {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    made = provenance(**weights_identity(args.weights))
    model, _ = resolve_model(args.weights)
    size = model.config.input_size
    split = emotion6_splits(size, manifest=args.manifest)[args.split]
    print(f"| seen at | {args.split} accuracy ({len(split.labels)} images) |\n|---|---|")
    rows = []
    for seen in args.sizes:
        low = np.stack([np.asarray(Image.fromarray(image).resize((seen, seen), Image.BILINEAR)
                                   .resize((size, size), Image.BILINEAR)) for image in split.images])
        accuracy = float((predict_arrays(model, low).argmax(1) == split.labels).mean())
        rows.append({"seen_px": seen, "accuracy": accuracy})
        print(f"| {seen} px | {accuracy:.1%} |", flush=True)
    out = write_json(args.out, {
        "what": "accuracy of the weights when each image is shrunk to seen_px and scaled back up to the model's input "
                "(bilinear both ways)", "weights": args.weights, "input_size": size, "manifest": args.manifest,
        "split": args.split, "n_images": len(split.labels), "rows": rows, **made})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
