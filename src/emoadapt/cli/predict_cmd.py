"""``emoadapt predict``: emotion probabilities for any number of images, streamed to CSV/JSONL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._shared import (add_dncshap_options, add_model_options, add_scale_options, expand_inputs, load_predictor,
                      shard_of, workers_of)

#: exit statuses of ``emoadapt predict`` (and every command; docs/reliability.md)
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

NAME = "predict"
HELP = "predict the emotion of images (files, folders, globs) into CSV/JSONL"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP,
                       description="One row per image: path, emotion, prob_<class>…, uncertain (true/false), "
                                   "uncertain_reason, seconds, error. A file that "
                                   "cannot be decoded gets an error row. Exit status: 0 every image predicted, 1 some "
                                   "images failed (error rows), 2 usage or configuration error, 3 internal failure.")
    p.add_argument("inputs", nargs="+", metavar="PATH|DIR|GLOB",
                   help="image files, folders (searched recursively) or globs")
    p.add_argument("--out", default="results.csv", help="output .csv or .jsonl (default results.csv)")
    add_model_options(p)
    p.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    p.add_argument("--resume", action="store_true", help="skip images that already have a row in --out")
    add_scale_options(p)
    p.add_argument("--draft", action="store_true",
                   help="decode large JPEGs at 1/2-1/8 scale (libjpeg draft mode; short side kept >= 2x the "
                        "model input): faster, probabilities differ slightly from the exact decode "
                        "(docs/scaling.md)")
    p.add_argument("--explain", action="store_true", help="also write a DnCShap overlay PNG per image")
    add_dncshap_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import EmoadaptError
    from ..predict import predict_files

    paths = expand_inputs(args.inputs)
    if not paths:
        raise EmoadaptError("no images found in " + ", ".join(args.inputs))
    out = Path(args.out)
    shard = shard_of(args)
    if shard is not None and out.suffix in (".csv", ".jsonl"):  # predict_files refuses other names
        from ..shards import part_path, shard_block, write_sidecar

        paths, out = shard_block(paths, *shard), part_path(out, *shard)
        write_sidecar(out, *shard, paths)
    predictor = load_predictor(args)
    # overlays of every shard go to one folder beside --out (their names never collide: overlay_name)
    on_row = _explainer(predictor, Path(args.out), args.depth, args.max_evals) if args.explain else None
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=args.no_progress)
    failed_so_far = [0]

    def on_batch(n: int, failed: int) -> None:
        failed_so_far[0] += failed
        bar.update(n)
        bar.set_postfix(failed=failed_so_far[0])

    counts = predict_files(predictor, paths, out, batch_size=args.batch_size, resume=args.resume,
                           on_batch=on_batch, on_row=on_row, workers=workers_of(args), draft=args.draft)
    bar.close()
    print(f"predicted {counts['done']} images, {counts['failed']} failed, {counts['skipped']} already in {out}",
          file=sys.stderr)
    return EXIT_SOME_FAILED if counts["failed"] else EXIT_OK


def overlay_name(path: str | Path) -> str:
    """``<stem>-<12 hex of sha256(absolute path)>_overlay.png``: the same for a path on every run (so
    ``--resume`` rewrites its own file), different for two paths (so it never overwrites another
    image's overlay); the stem is reduced to safe characters and 60 of them."""
    import hashlib
    import os

    digest = hashlib.sha256(os.fsencode(os.path.abspath(os.fspath(path)))).hexdigest()[:12]
    stem = "".join(c if (c.isalnum() and c.isprintable()) or c in "._-" else "_" for c in Path(path).stem)
    return f"{stem[:60].lstrip('.') or 'image'}-{digest}_overlay.png"


def _explainer(predictor, out: Path, depth: int, max_evals: int | None):
    """Per-row hook writing ``<out stem>_explanations/<overlay_name(path)>``."""
    from ..explain import save_overlay

    folder = out.with_name(out.stem + "_explanations")
    explainer = predictor.explainer(depth, max_evals=max_evals)

    def on_row(row: dict, image) -> None:
        from ..api import to_pil

        explanation = explainer.attribute(image)
        png = folder / overlay_name(row["path"])
        save_overlay(image, explanation, png, picture=to_pil(row["path"]), fit=predictor.fit)
        row["overlay"] = str(png)

    return on_row
