"""Adaptation ablation on Emotion6 (4 IER classes), one rerunnable script (issue: domain adaptation).

    python benchmarks/adaptation.py --part mobilenet [--seeds 0 1 2] [--size 160]
    python benchmarks/adaptation.py --part emonet --fer runs/fer-cpu/best.safetensors
    python benchmarks/adaptation.py --part kfold --config "+source-CE +mmd"   # 5-fold CV of one config
    python benchmarks/adaptation.py --part finetune     # MobileNetV2 stage s5 fine-tuned on cached s4 views
    python benchmarks/adaptation.py --part distill --teacher T.safetensors   # EmoNet + distillation from T
    python benchmarks/report.py                        # markdown tables from the saved JSON

Protocol: one stratified train/val/test split of the available Emotion6 images (seed 0, 70/15/15,
manifest in OUT/split.json); every configuration trains with seeds 0,1,2 on train, picks its best
epoch on val, and is scored on test. The baseline (ImageNet MobileNetV2 features + logistic
regression, C chosen on val) runs in the same script. Results go to OUT/<part>.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from emoadapt.adapt.data import source_faces, target_splits
from emoadapt.adapt.cached import encode, encode_views, head_from
from emoadapt.adapt.config import AdaptConfig
from emoadapt.adapt.start import build_start_model
from emoadapt.adapt.train import adapt
from emoadapt.data.labels import IER_CLASSES
from emoadapt.data.locate import dataset_path
from emoadapt.evaluate import ier_probs_from_fer
from emoadapt.fileio import atomic_path, atomic_write_json
from emoadapt.models.registry import load_model, sha256
from emoadapt.training.metrics import (classification_report, predict_arrays, predict_plain_and_flip,
                                      save_confusion_png)

MOBILENET_CONFIGS = {  # name -> changes to the base AdaptConfig
    "target-only": {"discrepancy": "none", "alpha": 0.0},
    "+mmd": {"discrepancy": "mmd", "alpha": 0.0},
    "+linear-mmd": {"discrepancy": "linear-mmd", "alpha": 0.0},
    "+coral": {"discrepancy": "coral", "alpha": 0.0},
    "+source-CE": {"discrepancy": "none", "alpha": 0.5},
    "+source-CE +mmd": {"discrepancy": "mmd", "alpha": 0.5},
    "+source-CE +coral": {"discrepancy": "coral", "alpha": 0.5},
}


def _agreement_accuracy(report_labels, probs, agree_mask) -> float:
    keep = np.asarray(agree_mask, dtype=bool)
    return float((probs[keep].argmax(1) == report_labels[keep]).mean()) if keep.any() else float("nan")


def _vote_agrees(arrays) -> np.ndarray:
    from emoadapt.data import open_dataset

    meta = {s.path: s.meta.get("vote_agrees") for s in open_dataset(dataset_path("emotion6"), "emotion6").samples}
    return np.array([bool(meta.get(p)) for p in arrays.paths])


def slug(text: str) -> str:
    """A file-name-safe form of a configuration name ("mobilenetv2 +source-CE +mmd" -> "mobilenetv2_source-CE_mmd")."""
    return "_".join(part.strip("+") for part in text.split())


def _summary(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def linear_probe(model, splits, out: Path) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats = {k: encode(model, v.images).flatten(1).numpy() for k, v in splits.items()}
    best = None
    for c in (0.01, 0.03, 0.1, 0.3, 1.0):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        clf.fit(feats["train"], splits["train"].labels)
        val = float((clf.predict(feats["val"]) == splits["val"].labels).mean())
        if best is None or val > best[0]:
            best = (val, c, clf)
    val, c, clf = best
    probs = clf.predict_proba(feats["test"])
    report = classification_report(splits["test"].labels, probs, IER_CLASSES)
    save_confusion_png(report, out / "confusion-linear-probe.png", title=f"linear probe: test {report['accuracy']:.1%}")
    return {"C": c, "val_acc": val, "test": report}


DEFAULT_FER = "src/emoadapt/weights/fer-cpu.safetensors"
DEFAULT_EMONET_SIZE = 64


def _fer_label(fer_path: str) -> str:
    """Run-name part for a non-default ``--fer`` checkpoint ("" for the shipped fer-cpu), so runs
    from different FER trainings never share (or resume) a folder: ``runs/fer-wide/best.safetensors``
    gives "fer-wide ", ``my-fer.safetensors`` gives "my-fer "."""
    path = Path(fer_path)
    if path == Path(DEFAULT_FER):
        return ""
    name = path.parent.name if path.stem in ("best", "last") and path.parent.name else path.stem
    return f"{name} "


def run_configs(name_prefix, base: AdaptConfig, configs: dict, seeds, splits, source, out: Path, cached=None,
                agree=None, distill=None, resume: bool = False) -> dict:
    """Train every configuration with every seed; score its best-validation checkpoint on the test
    split. ``resume``: continue runs whose folder already holds a checkpoint."""
    results = {}
    for name, changes in configs.items():
        rows = []
        for seed in seeds:
            cfg = replace(base, seed=seed, **changes)
            run_dir = out / "runs" / f"{slug(name_prefix + name)}-s{seed}"
            started = time.time()
            model = build_start_model(cfg)
            state = adapt((splits["train"].images, splits["train"].labels), (splits["val"].images, splits["val"].labels),
                          source, cfg, run_dir, progress=False, model=model, cached=cached, distill=distill,
                          resume=resume and (run_dir / "last.safetensors").exists())
            best, _ = load_model(run_dir / "best.safetensors")
            probs, probs_flip = predict_plain_and_flip(best, splits["test"].images)
            report = classification_report(splits["test"].labels, probs, IER_CLASSES)
            rows.append({"seed": seed, "val_acc": state["best"]["val_acc"], "best_epoch": state["best"]["epoch"],
                         "test": report, "seconds": time.time() - started, "weights": str(run_dir / "best.safetensors"),
                         "agree_acc": _agreement_accuracy(splits["test"].labels, probs, agree) if agree is not None else None,
                         "test_flip_tta": classification_report(splits["test"].labels, probs_flip,
                                                                IER_CLASSES)["accuracy"]})
            if cfg.ema > 0:  # the same run's best trained (not averaged) weights, for a paired comparison
                raw, _ = load_model(run_dir / "best_raw.safetensors")
                rows[-1]["raw"] = {**state["best_raw"], "test": classification_report(
                    splits["test"].labels, predict_arrays(raw, splits["test"].images), IER_CLASSES)}
            print(f"{name_prefix}{name} seed {seed}: val {rows[-1]['val_acc']:.3f} test {report['accuracy']:.3f} "
                  f"macro-F1 {report['macro_f1']:.3f} ({rows[-1]['seconds']:.0f} s)"
                  + (f"; trained weights: val {rows[-1]['raw']['val_acc_raw']:.3f} "
                     f"test {rows[-1]['raw']['test']['accuracy']:.3f}" if cfg.ema > 0 else ""), flush=True)
        best_row = max(rows, key=lambda r: r["val_acc"])
        save_confusion_png(best_row["test"], out / f"confusion-{slug(name_prefix + name)}-s{best_row['seed']}.png",
                           title=f"{name_prefix}{name} (seed {best_row['seed']}): test {best_row['test']['accuracy']:.1%}")
        results[name] = {"config": asdict(replace(base, **changes)), "runs": rows,
                         "val_acc": _summary([r["val_acc"] for r in rows]),
                         "test_acc": _summary([r["test"]["accuracy"] for r in rows]),
                         "test_macro_f1": _summary([r["test"]["macro_f1"] for r in rows])}
    return results


def part_mobilenet(args, out: Path) -> dict:
    base = AdaptConfig(init="imagenet-mobilenetv2", input_size=args.size, freeze="features", epochs=40,
                       lr=1e-3, source_limit=args.source_limit, threads=args.threads)
    start = build_start_model(base)
    splits = target_splits(dataset_path("emotion6"), args.size, 3, layout="emotion6", seed=0,
                           write_to=out / "split.json", progress=False)
    source = source_faces(args.size, limit=base.source_limit, seed=0, progress=False)
    started = time.time()
    cached = encode_views(start, splits["train"].images, splits["val"].images, source[0])
    encode_seconds = time.time() - started
    agree = _vote_agrees(splits["test"])
    results = {"size": args.size, "split_counts": {k: int(len(v.labels)) for k, v in splits.items()},
               "encode_seconds": encode_seconds, "test_agree_n": int(agree.sum())}
    results["linear_probe"] = linear_probe(start, splits, out)
    print(f"linear probe: test {results['linear_probe']['test']['accuracy']:.3f}", flush=True)
    results["configs"] = run_configs("mobilenetv2 ", base, MOBILENET_CONFIGS, args.seeds, splits, source, out,
                                     cached=cached, agree=agree)
    return results


FINETUNE_CONFIGS = {k: MOBILENET_CONFIGS[k] for k in ("target-only", "+mmd", "+source-CE +mmd")}


def part_finetune(args, out: Path) -> dict:
    """MobileNetV2 with its last stage (s5) and head trained: the s4 activations of every image are
    cached in ``--views`` views (as is, mirrored, random resized crops), the same split as
    ``--part mobilenet``."""
    base = AdaptConfig(init="imagenet-mobilenetv2", input_size=args.size, freeze="s4", views=args.views,
                       epochs=args.finetune_epochs, lr=1e-3, backbone_lr_scale=0.1, source_limit=args.source_limit,
                       threads=args.threads)
    start = build_start_model(base)
    splits = target_splits(dataset_path("emotion6"), args.size, 3, layout="emotion6", manifest=out / "split.json",
                           progress=False)
    source = source_faces(args.size, limit=base.source_limit, seed=0, progress=False)
    started = time.time()
    cached = encode_views(start, splits["train"].images, splits["val"].images, source[0], tap="s4",
                          views=args.views, seed=0)
    encode_seconds = time.time() - started
    print(f"encoded s4 views in {encode_seconds:.0f} s", flush=True)
    agree = _vote_agrees(splits["test"])
    results = {"size": args.size, "views": args.views, "encode_seconds": encode_seconds,
               "test_agree_n": int(agree.sum())}
    results["configs"] = run_configs("mobilenetv2-s5 ", base, FINETUNE_CONFIGS, args.seeds, splits, source, out,
                                     cached=cached, agree=agree)
    return results


def part_emonet(args, out: Path) -> dict:
    base = AdaptConfig(init=args.fer, input_size=args.emonet_size, rgb=True, freeze="none", epochs=args.emonet_epochs,
                       lr=1e-3, backbone_lr_scale=1.0, source_limit=args.source_limit, threads=args.threads,
                       head=args.head)
    fer_model, _ = load_model(args.fer)
    splits = target_splits(dataset_path("emotion6"), args.emonet_size, 3, layout="emotion6",
                           manifest=out / "split.json", progress=False)
    agree = _vote_agrees(splits["test"])
    zero_shot_x = splits["test"].images.mean(axis=3, keepdims=True).round().astype(np.uint8)  # RGB -> grey
    from PIL import Image

    size = fer_model.config.input_size
    zero_shot_x = np.stack([np.asarray(Image.fromarray(a[:, :, 0]).resize((size, size), Image.Resampling.BILINEAR))
                            for a in zero_shot_x])[:, :, :, None]
    probs = ier_probs_from_fer(predict_arrays(fer_model, zero_shot_x))
    results = {"size": args.emonet_size, "zero_shot": classification_report(splits["test"].labels, probs, IER_CLASSES)}
    print(f"emonet zero-shot: test {results['zero_shot']['accuracy']:.3f}", flush=True)
    source = source_faces(args.emonet_size, limit=base.source_limit, seed=0, progress=False)
    configs = {k: MOBILENET_CONFIGS[k] for k in args.emonet_configs}
    prefix = "emonet " + _fer_label(args.fer) + ("mapped-head " if args.head == "mapped" else "")  # OUT/runs
    results["head"] = args.head
    results["configs"] = run_configs(prefix, base, configs, args.seeds, splits, source, out, agree=agree)
    return results


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


def unlabelled_emotion6(size: int) -> np.ndarray:
    """Emotion6 images of the two keywords without an IER class (fear, surprise): never in the
    4-class train/val/test split, used unlabelled, (N, size, size, 3) uint8."""
    from emoadapt.data import open_dataset
    from emoadapt.data.arrays import load_arrays

    dataset = open_dataset(dataset_path("emotion6"), "emotion6")
    return load_arrays(dataset.subset(lambda s: s.label in ("fear", "surprise"), name="emotion6-fear-surprise"),
                       size, 3, progress=False).images


def part_distill(args, out: Path) -> dict:
    """The paper-structure EmoNet adapted from its own FER training (``--fer``), full fine-tune at
    ``--emonet-size`` RGB, with the paper's loss plus distillation from an IER ``--teacher`` over a
    fixed bank of ``--views`` augmented views of the training images and of the unlabelled
    fear/surprise images (``--kd-mode bank``), or over fresh crops (blended with ``--mixup``)
    that the teacher labels at every step (``--kd-mode online``). The teacher was trained on the
    same train split only."""
    from emoadapt.adapt.distill import online_teacher
    from emoadapt.adapt.hints import teacher_taps

    teacher, _ = load_model(args.teacher)
    base = AdaptConfig(init=args.fer, input_size=args.emonet_size, rgb=True, freeze="none",
                       epochs=args.emonet_epochs, lr=1e-3, backbone_lr_scale=1.0, source_limit=args.source_limit,
                       threads=args.threads, teacher=str(args.teacher), kd_weight=args.kd_weight,
                       kd_temperature=args.kd_temperature, views=args.views, kd_mode=args.kd_mode,
                       mixup=args.mixup, ema=args.ema, kd_spatial=args.kd_spatial, weight_decay=args.weight_decay)
    size = teacher.config.input_size
    teacher_splits = target_splits(dataset_path("emotion6"), size, 3, layout="emotion6", manifest=out / "split.json",
                        progress=False)
    splits = target_splits(dataset_path("emotion6"), args.emonet_size, 3, layout="emotion6",
                           manifest=out / "split.json", progress=False)
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
    agree = _vote_agrees(splits["test"])
    source = source_faces(args.emonet_size, limit=base.source_limit, seed=0, progress=False)
    configs = {k: {key: getattr(args, key) if value is None else value for key, value in DISTILL_CONFIGS[k].items()}
               for k in args.distill_configs}
    results = {"size": args.emonet_size, "kd_mode": args.kd_mode, "mixup": args.mixup,
               "views": args.views if args.kd_mode == "bank" else None, "teacher": str(args.teacher),
               "teacher_accuracy": teacher_acc, "unlabelled_n": int(len(unlabelled)),
               "unlabelled_faces": args.unlabelled_faces, "bank_seconds": bank_seconds}
    fer = _fer_label(args.fer)
    prefix = (f"emonet {fer}" if args.kd_mode == "bank" else f"emonet {fer}online mixup{args.mixup:g} "
              + (f"beta{args.kd_weight:g} " if args.kd_weight != 1 else "")
              + (f"faces{args.unlabelled_faces} " if args.unlabelled_faces else "")
              + (f"ema{args.ema:g} " if args.ema else "")
              + (f"wd{args.weight_decay:g} " if args.weight_decay != AdaptConfig().weight_decay else "")
              + (f"{args.emonet_size}px " if args.emonet_size != DEFAULT_EMONET_SIZE else "")
              + (f"delta{args.kd_spatial_weight:g} " if args.kd_spatial_weight != 1 else "")
              + (f"maps-{args.kd_spatial.replace(':', '_').replace(',', '+')} "
                 if args.kd_spatial != AdaptConfig().kd_spatial else ""))  # run folders in OUT/runs
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
    from emoadapt.adapt.bank import distillation_bank

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


def part_kfold(args, out: Path) -> dict:
    """5-fold cross-validation of one configuration (``--config``) with a cached protocol
    (``--protocol features``: frozen features, head trained; ``s4``: stage s5 fine-tuned on
    ``--views`` cached views): every Emotion6 image (and source face, when the configuration uses
    them) is encoded once, then each fold indexes the cache."""
    if args.protocol == "features":
        base = replace(AdaptConfig(init="imagenet-mobilenetv2", input_size=args.size, freeze="features", epochs=40,
                                   lr=1e-3, source_limit=args.source_limit, threads=args.threads),
                       **MOBILENET_CONFIGS[args.config])
    else:
        base = replace(AdaptConfig(init="imagenet-mobilenetv2", input_size=args.size, freeze="s4", views=args.views,
                                   epochs=args.finetune_epochs, lr=1e-3, backbone_lr_scale=0.1,
                                   source_limit=args.source_limit, threads=args.threads),
                       **FINETUNE_CONFIGS[args.config])
    start = build_start_model(base)
    folds = {k: target_splits(dataset_path("emotion6"), args.size, 3, layout="emotion6", folds=5, fold_index=k,
                              seed=0, write_to=out / "folds.json", progress=False) for k in range(5)}
    everything = {p: (img, label) for k in range(5) for a in folds[k].values()
                  for p, img, label in zip(a.paths, a.images, a.labels)}
    paths = sorted(everything)
    images = np.stack([everything[p][0] for p in paths])
    index = {p: i for i, p in enumerate(paths)}
    uses_source = base.alpha > 0 or base.discrepancy != "none" or base.freeze == "features"
    xs, ys = (source_faces(args.size, limit=base.source_limit, seed=0, progress=False) if uses_source
              else (images[:1, :, :, :1], np.zeros(1, dtype=np.int64)))  # one stand-in face, never used
    tap = "features" if base.freeze == "features" else base.freeze
    started = time.time()
    cache = encode_views(start, images, images[:1], xs, tap=tap, views=base.views, seed=0)
    views, source_views = cache["target"], cache["source"]
    encode_seconds = time.time() - started
    rows = []
    for k in range(5):
        pick = {name: np.array([index[p] for p in folds[k][name].paths]) for name in ("train", "val", "test")}
        cached = {"target": views[:, pick["train"]], "source": source_views, "val": views[0, pick["val"]]}
        model = build_start_model(base)
        run_dir = out / "runs" / f"kfold-{args.protocol}-{slug(args.config)}-fold{k}"
        state = adapt((images[pick["train"]], folds[k]["train"].labels), (images[pick["val"]], folds[k]["val"].labels),
                      (xs, ys), base, run_dir, progress=False, model=model, cached=cached)
        best, _ = load_model(run_dir / "best.safetensors")
        with torch.no_grad():
            probs = torch.cat([head_from(best, tap, chunk)[0] for chunk in views[0, pick["test"]].split(128)])
        report = classification_report(folds[k]["test"].labels, probs.softmax(1).numpy(), IER_CLASSES)
        rows.append({"fold": k, "val_acc": state["best"]["val_acc"], "test": report})
        print(f"fold {k}: val {rows[-1]['val_acc']:.3f} test {report['accuracy']:.3f}", flush=True)
    return {"config": args.config, "protocol": args.protocol, "size": args.size, "encode_seconds": encode_seconds,
            "folds": rows, "test_acc": _summary([r["test"]["accuracy"] for r in rows]),
            "test_macro_f1": _summary([r["test"]["macro_f1"] for r in rows])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("mobilenet", "emonet", "kfold", "finetune", "distill"), required=True)
    parser.add_argument("--config", default="+source-CE +mmd", help="configuration for --part kfold")
    parser.add_argument("--protocol", choices=("features", "s4"), default="features",
                        help="--part kfold: frozen features (head trained) or stage s5 fine-tuned on cached s4 views")
    parser.add_argument("--out", default="benchmarks/results/adaptation")
    parser.add_argument("--resume", action="store_true",
                        help="continue runs whose folder in OUT/runs already holds a checkpoint (--part distill)")
    parser.add_argument("--tag", default="", help="results go to OUT/<part><tag>.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=160, help="MobileNetV2 input size")
    parser.add_argument("--source-limit", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--views", type=int, default=8, help="cached views per training image (--part finetune)")
    parser.add_argument("--finetune-epochs", type=int, default=20)
    parser.add_argument("--teacher", default=None, help="IER model that teaches the EmoNet (--part distill)")
    parser.add_argument("--kd-weight", type=float, default=1.0)
    parser.add_argument("--kd-temperature", type=float, default=2.0)
    parser.add_argument("--kd-hint-weight", type=float, default=10.0, help="γ of the +hint configurations")
    parser.add_argument("--kd-mode", choices=("bank", "online"), default="bank",
                        help="--part distill: fixed bank of --views views, or fresh crops labelled online")
    parser.add_argument("--mixup", type=float, default=0.0, help="--kd-mode online: Beta(mixup, mixup) blends")
    parser.add_argument("--unlabelled-faces", type=int, default=0,
                        help="--part distill: also this many FER2013 Training faces in the unlabelled pool")
    parser.add_argument("--kd-spatial-weight", type=float, default=1.0, help="δ of the +maps configurations")
    parser.add_argument("--kd-spatial", default=AdaptConfig().kd_spatial,
                        help="student_tap:teacher_tap pairs of the +maps configurations")
    parser.add_argument("--weight-decay", type=float, default=AdaptConfig().weight_decay,
                        help="--part distill: AdamW weight decay of the student")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="--part distill: select and keep an EMA of the weights with this decay (0 = off)")
    parser.add_argument("--distill-configs", nargs="+", default=["target-only +kd", "+mmd +kd"])
    parser.add_argument("--fer", default=DEFAULT_FER,
                        help="FER checkpoint for the EmoNet parts (default: the shipped fer-cpu)")
    parser.add_argument("--emonet-size", type=int, default=DEFAULT_EMONET_SIZE)
    parser.add_argument("--emonet-epochs", type=int, default=15)
    parser.add_argument("--head", choices=("new", "mapped"), default="new",
                        help="--part emonet: a fresh 4-class layer or the FER rows happy/sad/disgust/angry")
    parser.add_argument("--emonet-configs", nargs="+", default=["target-only", "+mmd", "+source-CE +mmd"])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    parts = {"mobilenet": part_mobilenet, "emonet": part_emonet, "kfold": part_kfold, "finetune": part_finetune, "distill": part_distill}
    results = parts[args.part](args, out)
    results.update({"command": shlex.join(["python"] + sys.argv), "seconds": time.time() - started,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch_threads": torch.get_num_threads()})
    atomic_write_json(out / f"{args.part}{args.tag}.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
