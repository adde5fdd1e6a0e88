"""``emoadapt explain``: DnCShap explanations of images, pixel level and (optionally) layer by layer.

For each image writes ``OUT/<stem>.json`` (scores, boxes, target, values, cost), ``OUT/<stem>.npy``
(the map), ``OUT/<stem>_overlay.png`` and, with ``--layers``, ``OUT/<stem>_layers.png``. A file
that cannot be decoded is reported on stderr and skipped; the exit status is 1 if any failed."""

from __future__ import annotations

import argparse
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="explain predictions with DnCShap (overlay PNG, scores JSON, map NPY)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIRS",
                   help="image files, folders (searched recursively for image files) or glob patterns")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--weights", required=True, help="a .safetensors weights file written by emoadapt")
    p.add_argument("--layers", default=None,
                   help="also explain these taps, comma-separated (b1,b2,b3,b4,b5,merged) or 'all'")
    p.add_argument("--depth", type=_depth, default=6, help="partition depth T: 2^T regions (default 6)")
    p.add_argument("--baseline", default="zero", type=_baseline, help="absent pixels: zero, mean, blur or a number")
    p.add_argument("--layer-baseline", choices=("zero", "mean-activation"), default="zero",
                   help="absent cells of a layer (default zero)")
    p.add_argument("--batch-size", type=int, default=64, help="images per model call")
    p.add_argument("--variant", choices=("clean", "reference"), default="clean")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _load_model(args: argparse.Namespace):
    """The model to explain and its class names (the one place to change the default model)."""
    from ..models.registry import load_model

    model, extra = load_model(args.weights)
    return model, extra.get("classes")


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given, folders expanded to their image files (recursive, sorted), globs expanded.
    A name that matches nothing is kept so that it is reported as missing."""
    import glob

    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif not path.exists() and glob.has_magic(item):
            paths += [Path(p) for p in sorted(glob.glob(item, recursive=True))]
        else:
            paths.append(path)
    return paths


def _layers(value: str | None) -> tuple[str, ...]:
    from ..explain import LAYER_TAPS
    from ..errors import EmoadaptError

    if not value:
        return ()
    taps = LAYER_TAPS if value == "all" else tuple(t.strip() for t in value.split(",") if t.strip())
    unknown = [t for t in taps if t not in LAYER_TAPS]
    if unknown:
        raise EmoadaptError(f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(LAYER_TAPS)} or 'all'")
    return taps


def _baseline(value: str) -> str | float:
    if value in ("zero", "mean", "blur"):
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected zero, mean, blur or a number, got {value!r}") from None


def _depth(value: str) -> int:
    depth = int(value)
    if depth < 0:
        raise argparse.ArgumentTypeError(f"depth must be at least 0, got {depth}")
    return depth


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, index = path.stem, 2
    while stem in used:
        stem, index = f"{path.stem}-{index}", index + 1
    used.add(stem)
    return stem


def run(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from ..data.decode import decode_image
    from ..data.transforms import image_to_tensor
    from ..errors import EmoadaptError, ImageDecodeError
    from ..explain import DnCShap, explain_layers, save_layer_grid, save_overlay

    taps = _layers(args.layers)
    paths = expand_inputs(args.inputs)
    if not paths:
        raise EmoadaptError("no images found in " + ", ".join(args.inputs))
    model, classes = _load_model(args)
    size, channels = model.config.input_size, model.config.in_chans
    explainer = DnCShap(model, depth=args.depth, baseline=args.baseline, batch_size=args.batch_size,
                        variant=args.variant, class_names=classes)
    out, used, failed = Path(args.out), set(), 0
    for path in tqdm(paths, desc="explain", unit="img", disable=args.no_progress):
        try:
            image = image_to_tensor(decode_image(path, mode="L" if channels == 1 else "RGB"), size, channels)
        except ImageDecodeError as exc:
            failed += 1
            tqdm.write(f"emoadapt explain: skipped: {exc}", file=sys.stderr)
            continue
        prefix = out / _unique_stem(path, used)
        explanation = explainer.attribute(image)
        explanation.save(prefix)
        save_overlay(image, explanation, prefix.with_name(prefix.name + "_overlay.png"))
        if taps:
            layers = explain_layers(model, image, taps, depth=args.depth, target=explanation.target,
                                    baseline=args.layer_baseline, batch_size=args.batch_size, variant=args.variant,
                                    class_names=classes)
            save_layer_grid(image, layers, prefix.with_name(prefix.name + "_layers.png"))
    print(f"explained {len(paths) - failed} of {len(paths)} images ({failed} failed) -> {out}")
    return 1 if failed else 0
