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
        [--sizes 64 72 80 96] [--split val] [--out FILE]

Prints a markdown table and writes it as JSON (``--out``, default
``benchmarks/results/adaptation/eval_resolution.json``): per weights file and size the plain and
flip-TTA accuracy (null where the size does not fit), the mean over the weights files, and the
provenance (command, date, machine, commit, each weights file's sha256).
"""

from __future__ import annotations

import argparse
import glob
import statistics
import sys
from pathlib import Path

import torch
from emotion6 import SPLIT, emotion6_splits

from emoadapt.models.registry import load_model
from emoadapt.training.metrics import predict_plain_and_flip

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "adaptation" / "eval_resolution.json"
sys.path.insert(0, str(ROOT))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, weights_identity, write_json  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", nargs="+", required=True, help="safetensors files or glob patterns")
    parser.add_argument("--manifest", default=str(SPLIT))
    parser.add_argument("--split", default="val")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 72, 80, 96])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(OUT), help=f"results file (default: {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    files = sorted({path for pattern in args.weights for path in (glob.glob(pattern) or [pattern])})
    made = provenance(weights_sha256={path: weights_identity(path)["weights_sha256"] for path in files})
    splits = {size: emotion6_splits(size, manifest=args.manifest)[args.split] for size in args.sizes}
    print(f"{args.split} accuracy, plain / flip TTA ({len(splits[args.sizes[0]].labels)} images)\n")
    print("| weights | " + " | ".join(f"{size} px" for size in args.sizes) + " |")
    print("|---|" + "---|" * len(args.sizes))
    rows = []
    for path in files:
        model, _ = load_model(path)
        cells, scores = [], {}
        for size, split in splits.items():
            try:
                both = predict_plain_and_flip(model, split.images)
                plain, flip = (float((probs.argmax(1) == split.labels).mean()) for probs in both)
            except RuntimeError:  # the residual branches do not meet block 5 at this size
                cells.append("—")
                scores[str(size)] = None
                continue
            cells.append(f"{plain:.1%} / {flip:.1%}")
            scores[str(size)] = {"plain": plain, "flip_tta": flip}
        rows.append({"weights": path, "accuracy": scores})
        print(f"| {path} | " + " | ".join(cells) + " |", flush=True)
    mean = {}
    for size in map(str, args.sizes):
        scored = [row["accuracy"][size] for row in rows if row["accuracy"][size] is not None]
        mean[size] = {kind: statistics.mean(s[kind] for s in scored) for kind in ("plain", "flip_tta")} if scored else None
    out = write_json(args.out, {
        "what": "accuracy of each weights file with the whole image at each input size, plain and with flip TTA "
                "(null: the size does not fit the network)", "manifest": args.manifest, "split": args.split,
        "n_images": len(splits[args.sizes[0]].labels), "sizes": args.sizes, "rows": rows,
        "mean_over_weights": mean, **made})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
