"""``emoadapt report``: one command for an evaluation report — accuracy, macro-F1 and per-class
precision/recall with 95 % bootstrap intervals, confusion matrices, calibration (ECE, reliability
diagram), embedding plots and DnCShap-explained examples per class — written as a self-contained
``report.html``, its PNGs and ``report.json`` (every number on the page). See docs/report.md."""

from __future__ import annotations

import argparse
import shlex


from ..attribution import settings
from ._shared import add_label_map_option, user_description

NAME = "report"
HELP = "evaluation report: metrics, confusion, calibration, embeddings, explained examples in one offline HTML page"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=user_description(__doc__))
    p.add_argument("--model", action="append", default=None,
                   help="a .safetensors file or a shipped model name (default: emoadapt-ier); repeat to compare "
                        "models side by side")
    p.add_argument("--data", required=True, help="dataset folder (Emotion6, FER2013, a folder per class, CSV…)")
    p.add_argument("--layout", default="auto", help="dataset layout (default: auto-detect)")
    add_label_map_option(p)
    p.add_argument("--split", default=None, help="split name(s), comma-separated (e.g. test, PrivateTest)")
    p.add_argument("--manifest", default=None, help="split manifest JSON that defines the splits")
    p.add_argument("--map", choices=("auto", "fer", "ier"), default="auto",
                   help="score in the model's classes (fer) or in the 4 IER classes (ier); as in evaluate")
    p.add_argument("--source", default=None, help="FER2013 folder: its Training faces join the embedding plots")
    p.add_argument("--limit", type=_at_least(1), default=None,
                   help="report on a seeded random subset of at most N images of the split (--seed; default: all)")
    p.add_argument("--out", required=True, help="output folder (report.html, report.json, PNGs)")
    p.add_argument("--explain-budget", type=_at_least(0), default=24,
                   help="images explained with DnCShap per model (default 24); the rest of the examples are "
                        "shown as thumbnails")
    p.add_argument("--per-class", type=_at_least(1), default=3,
                   help="examples per class and kind (confident correct, confident errors, least confident)")
    p.add_argument("--layer-grids", type=_at_least(0), default=1,
                   help="explained examples that also get a layer-wise grid, one explanation per spatial layer "
                        "(default 1)")
    p.add_argument("--depth", type=_at_least(0), default=settings.DEPTH,
                   help=f"DnCShap partition depth (default {settings.DEPTH}, as everywhere)")
    p.add_argument("--max-evals", type=_at_least(2), default=None, help="DnCShap evaluation budget per image")
    p.add_argument("--tap", action="append", default=None,
                   help="embedding layer; repeat for several (default: pre_logits and the last spatial tap)")
    p.add_argument("--method", choices=("pca", "tsne"), default="pca", help="2-D projection (default pca)")
    p.add_argument("--embed-images", type=_at_least(3), default=500, help="at most this many images per "
                                                                          "embedding plot (default 500)")
    p.add_argument("--faces", type=_at_least(0), default=300, help="FER2013 faces from --source (default 300)")
    p.add_argument("--bootstrap", type=_at_least(0), default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap, the subsamples and t-SNE")
    p.add_argument("--batch-size", type=_at_least(1), default=32, help="images per model call")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _at_least(minimum: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number
    return parse


def command_line(args: argparse.Namespace) -> str:
    """The command with every option spelled out (defaults included), so it repeats the run exactly."""
    parts = ["emoadapt", "report"]
    for model in args.model:
        parts += ["--model", model]
    for name in ("data", "layout", "split", "manifest", "map", "source", "out", "explain_budget", "per_class",
                 "layer_grids", "depth", "max_evals", "method", "embed_images", "faces", "bootstrap", "seed"):
        value = getattr(args, name)
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    for tap in args.tap or ():
        parts += ["--tap", tap]
    if args.label_map:
        parts += ["--label-map", ",".join(f"{label}={target}" for label, target in args.label_map.items())]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..models.registry import DEFAULT_MODEL
    from ..report import ReportOptions, build_report

    args.model = args.model or [DEFAULT_MODEL]  # spelled out in the recorded command line
    if args.threads:
        torch.set_num_threads(args.threads)
    report = build_report(ReportOptions(
        models=args.model, data=args.data, out=args.out, layout=args.layout, label_map=args.label_map,
        splits=[s.strip() for s in args.split.split(",") if s.strip()] if args.split else None,
        manifest=args.manifest, source=args.source, mapping=args.map, limit=args.limit, explain_budget=args.explain_budget,
        per_class=args.per_class, layer_grids=args.layer_grids, depth=args.depth, max_evals=args.max_evals,
        taps=args.tap or [], method=args.method, embed_images=args.embed_images, faces=args.faces,
        bootstrap=args.bootstrap, seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress,
        command=command_line(args)))
    for m in report["models"]:
        metrics = m["metrics"]
        low, high = metrics["accuracy_ci"]
        print(f"{m['name']}: accuracy {metrics['accuracy']:.1%} [{low:.1%}, {high:.1%}], macro-F1 "
              f"{metrics['macro_f1']:.3f}, ECE {next(iter(m['calibration'].values()))['ece']:.3f}, "
              f"{metrics['n']} images, {len(m['errors'])} unreadable")
    print(f"report -> {args.out}/report.html")
    return 1 if any(m["errors"] for m in report["models"]) else 0
