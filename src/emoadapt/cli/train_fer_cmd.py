"""``emoadapt train-fer``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-fer", help="train a facial-expression network on FER2013 (official splits)",
                       description="Train on FER2013 Training, select the best epoch on PublicTest. Writes "
                                   "OUT/best.safetensors, OUT/last.safetensors (resumable), OUT/log.jsonl.")
    p.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    p.add_argument("--model", default="fer-cpu", help="preset name (see `emoadapt models`), default fer-cpu")
    p.add_argument("--data", default=None, help="FER2013 folder (default: $EMOADAPT_DATA/fer2013)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--class-weight", choices=("none", "sqrt", "balanced"), default="sqrt")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--ema", type=float, default=0.0,
                   help="keep an exponential moving average of the weights with this decay (e.g. 0.999); it "
                        "picks and ships the best epoch, best_raw.safetensors keeps the trained weights (0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--limit", type=int, default=None, help="use at most N images per split (quick runs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..training.fer import train_fer
    from ..training.loop import TrainConfig

    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                      label_smoothing=args.label_smoothing, class_weight=args.class_weight,
                      augment=not args.no_augment, seed=args.seed, threads=args.threads, ema=args.ema)
    state = train_fer(args.out, preset=args.model, data_root=args.data, cfg=cfg, resume=args.resume,
                      limit=args.limit, progress=not args.no_progress)
    best = state["best"]
    print(f"best epoch {best['epoch']}: PublicTest accuracy {best['val_acc']:.4f} -> {args.out}/best.safetensors")
    return 0
