"""``emoadapt merge``: join the part files of a sharded ``predict`` and check that no image is
missing or duplicated."""

from __future__ import annotations

import argparse

NAME = "merge"
HELP = "join the part files of a sharded predict (--shard, torchrun) and report missing or duplicated images"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP,
                       description="Writes OUT from OUT.part-*-of-N.* (or the PARTS given) in shard order, so it "
                                   "equals a single-process predict row for row. Exit status 0 when every part "
                                   "is there and complete, 1 when a part or an image is missing or an image is "
                                   "duplicated (OUT is still written, first row of a duplicate kept), 2 on usage "
                                   "errors.")
    p.add_argument("parts", nargs="*", metavar="PART", help="part files (default: OUT's parts beside it)")
    p.add_argument("--out", required=True, help="merged .csv or .jsonl (the --out given to predict)")
    p.add_argument("--inputs", nargs="+", default=None, metavar="PATH|DIR|GLOB",
                   help="the inputs given to predict: also name every image that has no row")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ..shards import merge_parts
    from ._shared import expand_inputs

    inputs = expand_inputs(args.inputs) if args.inputs else None
    report = merge_parts(args.out, [Path(p) for p in args.parts] or None, inputs)
    for line in report.lines():
        print(f"emoadapt merge: {line}", file=sys.stderr)
    print(f"merged {report.rows} rows from {report.parts} parts -> {args.out}"
          + ("" if report.ok else f" ({len(report.lines())} problems)"), file=sys.stderr)
    return 0 if report.ok else 1
