"""``emoadapt embed``: embedding plots — one layer's activations for generic images (and FER2013
faces) projected to 2-D, one row per model, coloured by true and by predicted class.

Writes the PNG given by ``--out`` and the points as a CSV beside it (same name, ``.csv``). Faces
come from ``--source`` or, when it exists, the default FER2013 folder; otherwise only images."""

from __future__ import annotations

import argparse

from ._shared import add_label_map_option, add_target_options, user_description

NAME = "embed"
HELP = "plot a layer's activations of images and faces in 2-D (PCA or t-SNE)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP,
                       description=user_description(__doc__))
    p.add_argument("--model", action="append", default=None,
                   help="a .safetensors file or a shipped model name (default: emoadapt-ier); repeat for one row "
                        "per model")
    add_target_options(p, "split manifest JSON that defines the target's splits")
    add_label_map_option(p)
    p.add_argument("--split", default=None, help="target split name(s), comma-separated (default: all images)")
    p.add_argument("--faces", type=int, default=300, help="at most this many FER2013 Training faces (0 = none)")
    p.add_argument("--images", type=int, default=300, help="at most this many target images")
    p.add_argument("--tap", default="pre_logits",
                   help="layer: EmoNet b1…b5, merged, pre_logits, logits; MobileNetV2 s1…s5, pre_logits, logits")
    p.add_argument("--method", default="pca", help="pca (default) or tsne")
    p.add_argument("--out", required=True, help="PNG to write (the CSV goes beside it)")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsampling and of t-SNE (default 0)")
    p.add_argument("--batch-size", type=int, default=64, help="images per model call")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _models(specs: list[str], tap: str) -> tuple[dict, dict]:
    """``({spec: model}, {spec: class names})``, every model checked to have ``tap``."""
    from ..embedding import check_tap
    from ..models.registry import resolve_model

    models, classes = {}, {}
    for spec in specs:
        model, meta = resolve_model(spec)
        check_tap(model, tap, spec)
        models[spec], classes[spec] = model, tuple(meta.get("classes", ()))
    return models, classes


def _target(args: argparse.Namespace, size: int):
    """(images uint8 (N, size, size, 3), IER labels) of at most ``--images`` target images."""
    from dataclasses import replace

    import numpy as np

    from ..data import open_dataset
    from ..data.arrays import load_arrays
    from ..data.splits import select_splits
    from ..errors import EmoadaptError

    splits = [s.strip() for s in args.split.split(",") if s.strip()] if args.split else None
    dataset = select_splits(open_dataset(args.target, args.layout).with_label_map(args.label_map), args.manifest,
                            splits).to_ier_dataset()
    if len(dataset) > args.images:
        keep = np.sort(np.random.default_rng(args.seed).permutation(len(dataset))[:args.images])
        dataset = replace(dataset, samples=[dataset.samples[i] for i in keep])
    arrays = load_arrays(dataset, size, 3, progress=not args.no_progress)
    if len(arrays.labels) == 0:
        raise EmoadaptError(f"{args.target}: no target images to embed")
    return arrays.images, arrays.labels


def _faces(args: argparse.Namespace):
    """(grey faces uint8 (N, 48, 48, 1), IER labels or −1), or ``None`` without a FER2013 folder."""
    from ..adapt.data import source_faces
    from ..data.labels import fer_to_ier_indices
    from ..data.locate import dataset_path

    if args.faces <= 0 or (args.source is None and dataset_path("fer2013", required=False) is None):
        return None
    images, labels = source_faces(48, root=args.source, limit=args.faces, seed=args.seed,
                                  progress=not args.no_progress)
    return images, fer_to_ier_indices(labels)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..data.labels import IER_CLASSES
    from ..embedding import check_method, embed, save_embedding_csv, save_embedding_figure
    from ..models.registry import DEFAULT_MODEL

    if args.threads:
        torch.set_num_threads(args.threads)
    check_method(args.method)
    models, classes = _models(args.model or [DEFAULT_MODEL], args.tap)
    groups = {"images": _target(args, max(m.config.input_size for m in models.values()))}
    faces = _faces(args)
    if faces is not None:
        groups["faces"] = faces
    embeddings = embed(models, groups, IER_CLASSES, args.tap, args.method, seed=args.seed,
                       batch_size=args.batch_size, model_classes=classes)
    out = Path(args.out)
    save_embedding_figure(embeddings, out, title=args.title)
    table = save_embedding_csv(embeddings, out.with_suffix(".csv"))
    counts = ", ".join(f"{len(group[1])} {name}" for name, group in groups.items())
    print(f"embedded {counts} with {len(models)} model(s) at {args.tap} ({args.method}) -> {out}, {table}")
    return 0
