"""``emoadapt evaluate``: accuracy, macro-F1, per-class precision/recall and the confusion matrix
(JSON + PNG) of a model (default: the shipped IER model) on any supported dataset and split."""

from __future__ import annotations

import argparse

from ._shared import FIT_CHOICES, add_label_map_option

NAME = "evaluate"
HELP = "score a model on a dataset split (accuracy, macro-F1, confusion matrix)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, usage="%(prog)s [--model MODEL] DATA [options]")
    p.add_argument("weights", nargs="?", default=None, metavar="WEIGHTS",
                   help="the model as a first positional argument (older form of --model)")
    p.add_argument("data", metavar="DATA", help="dataset folder")
    p.add_argument("--model", "--weights", dest="model", default=None,
                   help="a .safetensors file (e.g. RUN/best.safetensors) or a shipped model name "
                        "(default: emoadapt-ier; see emoadapt models)")
    add_label_map_option(p)
    p.add_argument("--layout", default="auto", help="dataset layout (default: auto-detect)")
    p.add_argument("--split", default=None, help="split name(s), comma-separated (e.g. PrivateTest, test)")
    p.add_argument("--manifest", default=None, help="split manifest JSON that defines the splits")
    p.add_argument("--map", choices=("auto", "fer", "ier"), default="auto",
                   help="score in the model's classes (fer) or mapped to the 4 IER classes (ier)")
    p.add_argument("--tta", choices=("none", "flip"), default=None,
                   help="test-time augmentation (default: the model's own, as emoadapt predict does)")
    p.add_argument("--crop", choices=FIT_CHOICES, default=None,
                   help="how images become the square input (default: the model's own fit, as emoadapt predict "
                        "does)")
    p.add_argument("--limit", type=int, default=None,
                   help="score a seeded random subset of at most N images (the same ones every run; default: all)")
    p.add_argument("--out", default=None, help="folder for metrics.json (with every image's prediction) and "
                                               "confusion.png")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import EmoadaptError
    from ..evaluate import evaluate_model

    if args.weights is not None and args.model is not None:
        raise EmoadaptError("give the model once: --model MODEL or as the first argument, not both")
    report = evaluate_model(args.model or args.weights, args.data, layout=args.layout,
                            splits=args.split.split(",") if args.split else None, manifest=args.manifest,
                            mapping=args.map, tta=args.tta, out_dir=args.out, fit=args.crop,
                            label_map=args.label_map, limit=args.limit)
    summary = {k: report[k] for k in ("dataset", "split", "n", "accuracy", "macro_f1")}
    print(json.dumps(summary, indent=2))
    for name, row in report["per_class"].items():
        print(f"  {name:>10}: precision {row['precision']:.3f} recall {row['recall']:.3f} n={row['support']}")
    return 0
