"""``emoadapt train-fer``."""

from __future__ import annotations

import argparse

from ._shared import add_distributed_options, distributed_setup

NAME = "train-fer"
HELP = "train a facial-expression network on FER2013 (official splits)"


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.config import TrainConfig  # torch-free: the defaults below are its fields

    d = TrainConfig()
    p = sub.add_parser(NAME, help=HELP,
                       description="Train on FER2013 Training, select the best epoch on PublicTest. Writes "
                                   "OUT/best.safetensors, OUT/last.safetensors (resumable), OUT/log.jsonl.")
    p.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    p.add_argument("--model", default="fer-cpu", help="preset name (see `emoadapt models`), default fer-cpu")
    p.add_argument("--data", default=None, help="FER2013 folder (default: $EMOADAPT_DATA/fer2013)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr,
                   help=f"peak learning rate (AdamW; 1-epoch warm-up, then cosine; default {d.lr})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help=f"AdamW weight decay (default {d.weight_decay})")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing,
                   help=f"label smoothing of the cross-entropy (default {d.label_smoothing})")
    p.add_argument("--class-weight", choices=("none", "sqrt", "balanced"), default=d.class_weight,
                   help=f"class weights ∝ 1/√count (sqrt), 1/count (balanced) or none (default {d.class_weight})")
    p.add_argument("--no-augment", action="store_true", help="no rotation, shift, zoom, flip, colour or erasing")
    p.add_argument("--ema", type=float, default=d.ema,
                   help="keep an exponential moving average of the weights with this decay (e.g. 0.999); it "
                        "picks and ships the best epoch, best_raw.safetensors keeps the trained weights (0 = off)")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of initialisation, order and augmentation "
                                                             f"(default {d.seed})")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0 = all cores)")
    p.add_argument("--limit", type=int, default=None, help="use at most N images per split (quick runs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    add_distributed_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..training.distributed import teardown
    from ..training.fer import train_fer
    from ..training.loop import TrainConfig

    d, threads = distributed_setup(args)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                      label_smoothing=args.label_smoothing, class_weight=args.class_weight,
                      augment=not args.no_augment, seed=args.seed, threads=threads, ema=args.ema)
    state = train_fer(args.out, preset=args.model, data_root=args.data, cfg=cfg, resume=args.resume,
                      limit=args.limit, progress=not args.no_progress, dist=d, amp=args.amp)
    teardown(d)
    if not d.is_main:
        return 0
    best = state["best"]
    print(f"best epoch {best['epoch']}: PublicTest accuracy {best['val_acc']:.4f} -> {args.out}/best.safetensors")
    return 0
