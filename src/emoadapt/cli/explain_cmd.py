"""Explain which regions of each image drive its predicted emotion (DnCShap), over the whole image.

For each image writes ``OUT/<stem>.json`` (scores, boxes in the model input's pixels, target,
values, cost), ``OUT/<stem>.npy`` (the map at the image's own resolution: attribution per original
pixel, NaN where the image was not analysed, i.e. outside the centre square with ``--crop centre``),
``OUT/<stem>_overlay.png`` (red: for the class, blue: against, with a colour bar) and, with
``--layers``, ``OUT/<stem>_layers.png``. A file that cannot be decoded is reported on stderr and
skipped; the exit status is 1 if any failed.

Worker threads decode the next images while DnCShap runs (``--workers``). With ``--shard I/N`` (or
under torchrun) this process explains one contiguous block of the sorted inputs; the file names
come from the whole list, so N processes can write into one OUT without collisions."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..attribution import settings
from ._shared import (add_dncshap_options, add_model_options, add_scale_options, checked, expand_inputs, load_predictor,
                      shard_of, unique_stem, workers_of)

NAME = "explain"
HELP = "explain predictions with DnCShap (overlay PNG, scores JSON, map NPY)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP,
                       description=__doc__.replace("``", ""))
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIRS",
                   help="image files, folders (searched recursively for image files) or glob patterns")
    p.add_argument("--out", required=True, help="output folder")
    add_model_options(p)
    p.add_argument("--layers", default=None,
                   help="also explain these layers, comma-separated, or 'all'. Layers depend on the model: the "
                        "default emoadapt-ier has f1..f5 (face branch) and s1..s5 (scene branch); an unknown "
                        "name lists the model's own")
    add_dncshap_options(p)
    p.add_argument("--baseline", default=settings.BASELINE, type=checked(settings.parse_baseline),
                   help=f"absent pixels: {', '.join(settings.BASELINES)} or a number (default {settings.BASELINE})")
    p.add_argument("--layer-baseline", choices=settings.LAYER_BASELINES, default=settings.LAYER_BASELINES[0],
                   help=f"absent cells of a layer (default {settings.LAYER_BASELINES[0]})")
    p.add_argument("--batch-size", type=checked(lambda value: settings.check_batch_size(value, name="batch-size")),
                   default=settings.BATCH_SIZE, help=f"images per model call (default {settings.BATCH_SIZE})")
    p.add_argument("--variant", choices=settings.VARIANTS, default=settings.VARIANT,
                   help="clean DnCShap (default), or the original recursion with its quirks (reference)")
    p.add_argument("--regions", choices=settings.REGIONS, default=settings.REGION,
                   help="how the image is cut into regions: grid (default: halves at the middle) or content "
                        "(each cut where the two halves are most uniform in colour, i.e. along edges)")
    add_scale_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _layers(value: str | None, model) -> tuple[str, ...]:
    from ..errors import EmoadaptError
    from ..attribution import layer_taps

    if not value:
        return ()
    known = layer_taps(model)
    taps = known if value == "all" else tuple(t.strip() for t in value.split(",") if t.strip())
    unknown = [t for t in taps if t not in known]
    if unknown:
        raise EmoadaptError(f"unknown layer(s) {', '.join(unknown)}; this model has {', '.join(known)} (or 'all')")
    return taps


def run(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from ..errors import EmoadaptError
    from ..explaining import at_image_resolution
    from ..attribution import explain_layers, save_layer_grid, save_overlay
    from ..pipeline import load_one, ordered_map

    paths = expand_inputs(args.inputs)
    if not paths:
        raise EmoadaptError("no images found in " + ", ".join(args.inputs))
    used: set[str] = set()
    stems = [unique_stem(path, used) for path in paths]  # from the whole list: the same in every shard
    shard = shard_of(args)
    if shard is not None:
        from ..shards import shard_block

        paths, stems = shard_block(paths, *shard), shard_block(stems, *shard)
    predictor = load_predictor(args)
    if args.layers and predictor.model is None:
        raise EmoadaptError("--layers needs the torch model: pass the .safetensors file or a shipped model name, "
                            "not an .onnx file")
    taps = _layers(args.layers, predictor.model)
    explainer = predictor.explainer(args.depth, args.baseline, args.batch_size, args.variant, args.max_evals,
                                    regions=args.regions)
    out, failed = Path(args.out), 0
    workers = workers_of(args)
    loaded = ordered_map(lambda path: load_one(predictor.preprocess, path, keep_picture=True), paths, workers,
                         window=2 * max(1, workers))
    for item, stem in tqdm(zip(loaded, stems), total=len(paths), desc="explain", unit="img",
                           disable=args.no_progress):
        if item.error is not None:
            failed += 1
            tqdm.write(f"emoadapt explain: skipped: {item.error}", file=sys.stderr)
            continue
        image, picture = item.tensor, item.picture
        prefix = out / stem
        target = int(predictor.predict_tensors(image[None])[0].argmax())  # the class predict reports (TTA included)
        explanation = explainer.attribute(image, target)
        at_image_resolution(explanation, predictor.fit, *picture.size).save(prefix)
        save_overlay(image, explanation, prefix.with_name(prefix.name + "_overlay.png"), picture=picture,
                     fit=predictor.fit)
        if taps:
            layers = explain_layers(predictor.model, image, taps, depth=args.depth, target=explanation.target,
                                    baseline=args.layer_baseline, batch_size=args.batch_size, variant=args.variant,
                                    class_names=predictor.classes)
            save_layer_grid(image, layers, prefix.with_name(prefix.name + "_layers.png"), picture=picture,
                            fit=predictor.fit)
    print(f"explained {len(paths) - failed} of {len(paths)} images ({failed} failed) -> {out}")
    return 1 if failed else 0
