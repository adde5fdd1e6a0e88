"""``--part distill``: the paper-structure EmoNet adapted from its own FER training, with the
paper's loss plus distillation from an IER ``--teacher`` over a fixed bank of ``--views`` views
(``--kd-mode bank``) or over fresh crops, blended with ``--mixup``, that the teacher labels at
every step (``--kd-mode online``); optional hints on the dense layer and on feature maps."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from adapt_common import DEFAULT_EMONET_SIZE, fer_label, run_configs
from adapt_emonet import add_emonet_arguments
from emotion6 import emotion6_splits, unlabelled_emotion6, vote_agrees

from research.bank import distillation_bank
from research.config import DistillConfig
from research.distill import online_teacher
from research.hints import teacher_taps

from emoadapt.adapt.data import source_faces
from emoadapt.fileio import atomic_path
from emoadapt.models.registry import load_model, sha256
from emoadapt.training.metrics import predict_arrays

def add_arguments(parser) -> None:
    add_emonet_arguments(parser)
    parser.add_argument("--teacher", default=None, help="IER model that teaches the EmoNet")
    parser.add_argument("--views", type=int, default=8, help="views per training image in the teacher's bank")
    parser.add_argument("--kd-weight", type=float, default=1.0)
    parser.add_argument("--kd-temperature", type=float, default=2.0)
    parser.add_argument("--kd-hint-weight", type=float, default=10.0, help="γ of the +hint configurations")
    parser.add_argument("--kd-mode", choices=("bank", "online"), default="bank",
                        help="fixed bank of --views views, or fresh crops labelled online")
    parser.add_argument("--mixup", type=float, default=0.0, help="--kd-mode online: Beta(mixup, mixup) blends")
    parser.add_argument("--unlabelled-faces", type=int, default=0,
                        help="also this many FER2013 Training faces in the unlabelled pool")
    parser.add_argument("--kd-spatial-weight", type=float, default=1.0, help="δ of the +maps configurations")
    parser.add_argument("--kd-spatial", default=DistillConfig().kd_spatial,
                        help="student_tap:teacher_tap pairs of the +maps configurations")
    parser.add_argument("--weight-decay", type=float, default=DistillConfig().weight_decay,
                        help="AdamW weight decay of the student")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="select and keep an EMA of the weights with this decay (0 = off)")
    parser.add_argument("--distill-configs", nargs="+", default=["target-only +kd", "+mmd +kd"])


DISTILL_CONFIGS = {  # the paper's loss plus β·KD from the teacher (β = --kd-weight)
    "target-only +kd": {"discrepancy": "none", "alpha": 0.0},
    "+mmd +kd": {"discrepancy": "mmd", "alpha": 0.0},
    "+source-CE +mmd +kd": {"discrepancy": "mmd", "alpha": 0.5},
    "target-only +kd +hint": {"discrepancy": "none", "alpha": 0.0, "kd_hint_weight": None},
    "+mmd +kd +hint": {"discrepancy": "mmd", "alpha": 0.0, "kd_hint_weight": None},
    # + feature-map hints (online mode): EmoNet b4 ~ MobileNetV2 s4, merged ~ s5 (--kd-spatial-weight)
    "target-only +kd +hint +maps": {"discrepancy": "none", "alpha": 0.0, "kd_hint_weight": None,
                                    "kd_spatial_weight": None},
    # the same with the FER dense layer replaced by a fresh 256-wide one (the wide FER net's dense
    # units all die in the first epochs on scenes: 0.1 % active, the student stays at chance)
    "target-only +kd +hint +maps +new-dense": {"discrepancy": "none", "alpha": 0.0, "kd_hint_weight": None,
                                               "kd_spatial_weight": None, "dense": 256},
    # a new 1280-wide dense layer whose output must match the teacher's 1280 ImageNet features
    "target-only +kd +feature-hint": {"discrepancy": "none", "alpha": 0.0, "kd_hint_weight": None,
                                      "kd_hint_tap": "features", "dense": 1280},
    "+mmd +kd +feature-hint": {"discrepancy": "mmd", "alpha": 0.0, "kd_hint_weight": None,
                               "kd_hint_tap": "features", "dense": 1280},
}  # None = the command-line value of the same name (--kd-hint-weight, --kd-spatial-weight)



def run(args, out: Path) -> dict:
    """The paper-structure EmoNet adapted from its own FER training (``--fer``), full fine-tune at
    ``--emonet-size`` RGB, with the paper's loss plus distillation from an IER ``--teacher`` over a
    fixed bank of ``--views`` augmented views of the training images and of the unlabelled
    fear/surprise images (``--kd-mode bank``), or over fresh crops (blended with ``--mixup``)
    that the teacher labels at every step (``--kd-mode online``). The teacher was trained on the
    same train split only."""
    teacher, _ = load_model(args.teacher)
    base = DistillConfig(init=args.fer, input_size=args.emonet_size, rgb=True, freeze="none",
                       epochs=args.emonet_epochs, lr=1e-3, backbone_lr_scale=1.0, source_limit=args.source_limit,
                       threads=args.threads, teacher=str(args.teacher), kd_weight=args.kd_weight,
                       kd_temperature=args.kd_temperature, views=args.views, kd_mode=args.kd_mode,
                       mixup=args.mixup, ema=args.ema, kd_spatial=args.kd_spatial, weight_decay=args.weight_decay)
    size = teacher.config.input_size
    teacher_splits = emotion6_splits(size, manifest=out / "split.json")
    splits = emotion6_splits(args.emonet_size, manifest=out / "split.json")
    if list(teacher_splits["train"].paths) != list(splits["train"].paths):
        raise RuntimeError("teacher-size and student-size training arrays are not in the same order")
    started = time.time()
    unlabelled = unlabelled_emotion6(size)
    if args.unlabelled_faces:  # FER2013 Training faces as extra unlabelled inputs (grey -> 3 channels)
        faces, _ = source_faces(size, limit=args.unlabelled_faces, seed=1, progress=False)
        unlabelled = np.concatenate([unlabelled, np.repeat(faces, 3, axis=3)])
    if args.kd_mode == "online":  # fresh crops every step, labelled by the teacher as they come
        maps = any("kd_spatial_weight" in DISTILL_CONFIGS[k] for k in args.distill_configs)
        bank = online_teacher(teacher, teacher_splits["train"].images, unlabelled, threads=args.threads or None,
                              spatial_taps=teacher_taps(base.kd_spatial) if maps else ())
    else:
        bank = _teacher_bank(args, teacher, teacher_splits["train"].images, unlabelled, out)
    bank_seconds = time.time() - started
    teacher_says = {name: predict_arrays(teacher, teacher_splits[name].images).argmax(1) for name in ("val", "test")}
    teacher_acc = {name: float((says == teacher_splits[name].labels).mean()) for name, says in teacher_says.items()}
    views = "fresh crops" if args.kd_mode == "online" else f"{args.views} views"
    print(f"teacher ({args.kd_mode}): {len(teacher_splits['train'].labels)} + {len(unlabelled)} unlabelled images x "
          f"{views} in {bank_seconds:.0f} s; teacher val {teacher_acc['val']:.3f}", flush=True)
    agree = vote_agrees(splits["test"])
    source = source_faces(args.emonet_size, limit=base.source_limit, seed=0, progress=False)
    configs = {k: {key: getattr(args, key) if value is None else value for key, value in DISTILL_CONFIGS[k].items()}
               for k in args.distill_configs}
    results = {"size": args.emonet_size, "kd_mode": args.kd_mode, "mixup": args.mixup,
               "views": args.views if args.kd_mode == "bank" else None, "teacher": str(args.teacher),
               "teacher_accuracy": teacher_acc, "unlabelled_n": int(len(unlabelled)),
               "unlabelled_faces": args.unlabelled_faces, "bank_seconds": bank_seconds}
    fer = fer_label(args.fer)
    prefix = (f"emonet {fer}" if args.kd_mode == "bank" else f"emonet {fer}online mixup{args.mixup:g} "
              + (f"beta{args.kd_weight:g} " if args.kd_weight != 1 else "")
              + (f"faces{args.unlabelled_faces} " if args.unlabelled_faces else "")
              + (f"ema{args.ema:g} " if args.ema else "")
              + (f"wd{args.weight_decay:g} " if args.weight_decay != DistillConfig().weight_decay else "")
              + (f"{args.emonet_size}px " if args.emonet_size != DEFAULT_EMONET_SIZE else "")
              + (f"delta{args.kd_spatial_weight:g} " if args.kd_spatial_weight != 1 else "")
              + (f"maps-{args.kd_spatial.replace(':', '_').replace(',', '+')} "
                 if args.kd_spatial != DistillConfig().kd_spatial else ""))  # run folders in OUT/runs
    results["configs"] = run_configs(prefix, base, configs, args.seeds, splits, source, out, agree=agree,
                                     distill=bank, resume=args.resume)
    for config in results["configs"].values():  # how often the student answers what its teacher answers
        for row in config["runs"]:
            student, _ = load_model(row["weights"])
            row["teacher_agreement"] = {name: float((predict_arrays(student, splits[name].images).argmax(1)
                                                     == teacher_says[name]).mean()) for name in ("val", "test")}
            print(f"seed {row['seed']}: agrees with the teacher on {row['teacher_agreement']['val']:.1%} of val, "
                  f"{row['teacher_agreement']['test']:.1%} of test", flush=True)
    return results


def _teacher_bank(args, teacher, train_images: np.ndarray, unlabelled: np.ndarray, out: Path) -> dict:
    """The teacher's fixed bank of views (cached in OUT/runs: the teacher's views take minutes;
    they depend only on the file's name)."""
    bank_file = out / "runs" / f"bank2-{sha256(args.teacher)[:12]}-{args.views}v-{args.emonet_size}px.npz"
    if bank_file.exists():
        with np.load(bank_file) as saved:
            bank = {k: saved[k] for k in saved.files}
    else:
        bank = distillation_bank(teacher, train_images, unlabelled, views=args.views, seed=0,
                                 student_size=args.emonet_size)
        bank_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(bank_file, suffix=".npz") as tmp:
            np.savez(tmp, **bank)
    for key in ("hidden", "features"):
        print(f"teacher {key}: width {bank[f'target_{key}'].shape[-1]}, "
              f"mean square {float(np.square(bank[f'target_{key}']).mean()):.4f}", flush=True)
    return bank
