"""``emoadapt data summary`` and ``emoadapt data split``: look at a dataset, and make a repeatable
train/val/test split or k folds of it (a JSON manifest)."""

from __future__ import annotations

import argparse
import json

NAME = "data"
HELP = "inspect datasets and make repeatable splits"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP,
                       description="Inspect a dataset (counts per class and split, image sizes) or write a "
                                   "stratified, subject-wise split manifest.")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True

    s = data_sub.add_parser("summary", help="counts per class and split, IER mapping, image sizes")
    s.add_argument("path", help="dataset folder, or a CSV / list file")
    s.add_argument("--layout", default="auto", help="dataset layout (default: auto-detect; see docs/data.md)")
    s.add_argument("--sizes", type=int, default=200, metavar="N",
                   help="read the header of at most N images for size statistics (0: skip; default 200)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(run=run_summary)

    t = data_sub.add_parser("split", help="write a stratified (subject-wise where possible) split manifest")
    t.add_argument("path", help="dataset folder, or a CSV / list file")
    t.add_argument("--out", required=True, help="manifest file to write (JSON)")
    t.add_argument("--layout", default="auto", help="dataset layout (default: auto-detect)")
    t.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    t.add_argument("--val", type=float, default=0.15, help="validation fraction (default 0.15)")
    t.add_argument("--test", type=float, default=0.15, help="test fraction (default 0.15)")
    t.add_argument("--folds", type=int, default=0, help="make K folds instead of train/val/test")
    t.add_argument("--group", choices=("auto", "subject", "image", "none"), default="auto",
                   help="keep subjects (or images) together (default: auto)")
    t.set_defaults(run=run_split)


def run_summary(args: argparse.Namespace) -> int:
    from ..data import open_dataset, summarize
    from ..data.summary_text import format_summary

    dataset = open_dataset(args.path, args.layout)
    summary = summarize(dataset, sizes=args.sizes)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def run_split(args: argparse.Namespace) -> int:
    from ..data import apply_manifest, kfold_dataset, open_dataset, split_dataset, summarize, write_manifest
    from ..data.summary_text import class_split_table

    dataset = open_dataset(args.path, args.layout)
    if args.folds:
        manifest = kfold_dataset(dataset, folds=args.folds, seed=args.seed, group=args.group)
    else:
        manifest = split_dataset(dataset, val=args.val, test=args.test, seed=args.seed, group=args.group)
    write_manifest(manifest, args.out)
    summary = summarize(apply_manifest(dataset, manifest), sizes=0)
    print(f"{dataset.name}: {len(dataset)} samples, seed {args.seed}, grouped by {manifest.group}")
    print(class_split_table(list(summary["classes"]), summary["split_classes"]))
    print(f"wrote {args.out}")
    return 0

