"""``emoadapt data summary`` and ``emoadapt data split``: look at a dataset, and make a repeatable
train/val/test split or k folds of it (a JSON manifest)."""

from __future__ import annotations

import argparse
import json
from typing import Any

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


def _table(rows: list[list[Any]], header: list[str]) -> str:
    """Right-aligned text table; the first column is left-aligned."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def _class_split_table(classes: list[str], split_classes: dict[str, dict[str, int]]) -> str:
    splits = list(split_classes)
    rows = [[c] + [split_classes[s].get(c, 0) for s in splits] + [sum(split_classes[s].get(c, 0) for s in splits)]
            for c in classes]
    rows.append(["total"] + [sum(split_classes[s].values()) for s in splits] +
                [sum(sum(v.values()) for v in split_classes.values())])
    return _table(rows, ["class"] + splits + ["total"])


def format_summary(summary: dict[str, Any]) -> str:
    """The readable report printed by ``emoadapt data summary``."""
    out = [f"dataset  {summary['name']}  ({summary['root']})",
           f"samples  {summary['samples']}" + (f" in {summary['files']} files" if summary["files"] != summary["samples"]
                                               else "")]
    if summary.get("subjects"):
        out.append(f"subjects {summary['subjects']}")
    out += ["", _class_split_table(list(summary["classes"]), summary["split_classes"])]
    if "ier" in summary:
        out += ["", "IER classes: " + ", ".join(f"{c} {n}" for c, n in summary["ier"].items())]
    if "vote_agrees" in summary:
        agree = ", ".join(f"{c} {n}/{summary['classes'][c]}" for c, n in summary["vote_agrees"].items())
        out.append(f"folder = unique vote argmax: {agree}")
    sizes = summary.get("sizes")
    if sizes:
        out.append("")
        out.append(f"image sizes (headers of {sizes['sampled']} of {sizes['files']} files):")
        for axis in ("width", "height"):
            if sizes[axis]:
                out.append(f"  {axis:<6} min {sizes[axis]['min']}  median {sizes[axis]['median']:g}  "
                           f"max {sizes[axis]['max']}")
        out.append("  modes  " + ", ".join(f"{m} {n}" for m, n in sizes["modes"].items()))
        out.append("  format " + ", ".join(f"{m} {n}" for m, n in sizes["formats"].items()))
        for bad in sizes["unreadable"][:10]:
            out.append(f"  unreadable: {bad['path']} ({bad['reason']})")
    return "\n".join(out)


def run_summary(args: argparse.Namespace) -> int:
    from ..data import open_dataset, summarize

    dataset = open_dataset(args.path, args.layout)
    summary = summarize(dataset, sizes=args.sizes)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def run_split(args: argparse.Namespace) -> int:
    from ..data import apply_manifest, kfold_dataset, open_dataset, split_dataset, summarize, write_manifest

    dataset = open_dataset(args.path, args.layout)
    if args.folds:
        manifest = kfold_dataset(dataset, folds=args.folds, seed=args.seed, group=args.group)
    else:
        manifest = split_dataset(dataset, val=args.val, test=args.test, seed=args.seed, group=args.group)
    write_manifest(manifest, args.out)
    summary = summarize(apply_manifest(dataset, manifest), sizes=0)
    print(f"{dataset.name}: {len(dataset)} samples, seed {args.seed}, grouped by {manifest.group}")
    print(_class_split_table(list(summary["classes"]), summary["split_classes"]))
    print(f"wrote {args.out}")
    return 0

