"""``emoadapt adapt``: adapt a FER network (or ImageNet MobileNetV2) to generic images with
L = CE(target) + α·CE(source faces, mapped) + λ·D(f_S, f_T); see ``emoadapt.adapt.train``."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ._shared import (add_distributed_options, add_label_map_option, add_target_options, distributed_setup,
                      user_description)

NAME = "adapt"
HELP = "adapt a FER model to generic images (classification + discrepancy loss)"


def register(sub: argparse._SubParsersAction) -> None:
    from ..adapt.config import CHOICES, AdaptConfig  # torch-free: the flags below are its fields

    p = sub.add_parser(NAME, help=HELP, description=user_description(__doc__))
    add_target_options(p, "reuse this split manifest (JSON) instead of making one")
    add_label_map_option(p)
    p.add_argument("--out", required=True, help="run folder (checkpoints, log, split manifest)")
    add_distributed_options(p)
    p.add_argument("--split-seed", type=int, default=0, help="seed of a new split (default 0)")
    p.add_argument("--val", type=float, default=0.15, help="validation fraction of a new split (default 0.15)")
    p.add_argument("--test", type=float, default=0.15, help="test fraction of a new split (default 0.15)")
    p.add_argument("--folds", type=int, default=0, help="k-fold mode: number of folds (0 = holdout)")
    p.add_argument("--fold", type=int, default=0, help="k-fold mode: which fold is the test set")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    defaults = AdaptConfig()
    for f in fields(AdaptConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        help_text = f"{f.metadata['help']} (default {value if value != '' else 'none'})"
        if isinstance(value, bool):
            p.add_argument(flag, type=_bool, default=value, metavar="yes|no", help=help_text)
        else:
            p.add_argument(flag, type=type(value), default=value, choices=CHOICES.get(f.name), help=help_text)
    p.set_defaults(run=run)


def _bool(value: str) -> bool:
    if value.lower() in ("yes", "true", "1", "on"):
        return True
    if value.lower() in ("no", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {value!r}")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..adapt.config import AdaptConfig, check
    from ..adapt.data import no_source_faces, source_faces, target_splits
    from ..adapt.start import build_start_model
    from ..adapt.train import adapt

    from ..training.distributed import teardown

    cfg = AdaptConfig(**{f.name: getattr(args, f.name) for f in fields(AdaptConfig)})
    check(cfg)  # a wrong option fails before any image is read
    d, threads = distributed_setup(args)
    if threads != cfg.threads:
        from dataclasses import replace

        cfg = replace(cfg, threads=threads)
    model = build_start_model(cfg)
    size, channels = model.config.input_size, model.config.in_chans
    out = Path(args.out)
    target = target_splits(args.target, size, channels, layout=args.layout, manifest=args.manifest,
                           seed=args.split_seed, val=args.val, test=args.test, folds=args.folds,
                           fold_index=args.fold, write_to=out / "split.json", progress=not args.no_progress,
                           fit=cfg.fit, label_map=args.label_map)
    source = (source_faces(size, root=args.source, limit=cfg.source_limit, seed=cfg.seed,
                           progress=not args.no_progress) if cfg.source_limit > 0 else no_source_faces(size))
    state = adapt((target["train"].images, target["train"].labels), (target["val"].images, target["val"].labels),
                  source, cfg, out, resume=args.resume, progress=not args.no_progress, model=model, dist=d, amp=args.amp)
    teardown(d)
    if not d.is_main:
        return 0
    best = state["best"]
    print(f"best epoch {best['epoch']}: validation accuracy {best['val_acc']:.4f} -> {out}/best.safetensors")
    print(f"score the test split once with: emoadapt evaluate {out}/best.safetensors {args.target} "
          f"--manifest {out}/split.json --split test")
    return 0

