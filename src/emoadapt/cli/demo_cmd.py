"""``emoadapt demo``: the main job of ``make run`` — predict and explain the bundled sample images
with the shipped model, writing a results table, overlay PNGs and one layer-wise grid."""

from __future__ import annotations

import argparse

from ._shared import add_dncshap_options

NAME = "demo"
HELP = "predict + explain the bundled sample images with the shipped model"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    add_dncshap_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import time
    from importlib import resources
    from pathlib import Path

    from ..explaining import at_image_resolution
    from ..predictor import Predictor, to_pil
    from ..attribution import save_layer_grid, save_overlay
    from ..predict import predict_files
    from ..results import overlay_note

    samples = sorted(Path(str(resources.files("emoadapt") / "samples")).glob("*.jpg"))
    out = Path(args.out)
    predictor = Predictor()
    explainer = predictor.explainer(args.depth, max_evals=args.max_evals)
    timings = []

    def on_row(row: dict, image) -> None:
        started = time.perf_counter()
        picture = to_pil(row["path"])
        target = predictor.classes.index(row["emotion"])  # the class the row reports (flip averaging included)
        explanation = at_image_resolution(explainer.attribute(image, target), predictor.fit, *picture.size)
        timings.append(time.perf_counter() - started)
        stem = Path(row["path"]).stem
        explanation.save(out / stem)  # <stem>.npy: the map at the image's own resolution
        save_overlay(image, explanation, out / f"{stem}_overlay.png", picture=picture, fit=predictor.fit,
                     note=overlay_note(row))

    counts = predict_files(predictor, samples, out / "results.csv", on_row=on_row)
    first = samples[0]
    save_layer_grid(predictor.preprocess(first), predictor.explain_layers(first, depth=args.depth),
                    out / f"{first.stem}_layers.png", picture=to_pil(first), fit=predictor.fit)
    print((out / "results.csv").read_text(), end="")
    budget = f", at most {args.max_evals} evaluations" if args.max_evals else ""
    print(f"{counts['done']} images predicted and explained (DnCShap depth {args.depth}{budget}, "
          f"{sum(timings) / max(1, len(timings)):.2f} s per explanation) -> {out}/")
    print(f"overlays: {out}/*_overlay.png; layer-wise grid: {out}/{first.stem}_layers.png")
    return 0 if counts["failed"] == 0 else 1
