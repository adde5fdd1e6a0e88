"""What the adaptation experiments share: the configurations they compare, how a configuration
is trained over seeds and scored on the test split, and run-folder names.

One module per experiment imports it: ``adapt_mobilenet.py`` (frozen features), ``adapt_finetune.py``
(stage s5 fine-tuned: the shipped model), ``adapt_emonet.py`` (the paper-structure network),
``adapt_distill.py`` (EmoNet taught by an IER model), ``adapt_kfold.py`` (5-fold CV of one
configuration); ``adaptation.py --part NAME`` runs one of them and writes OUT/<part><tag>.json.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from emoadapt.adapt.cached import encode
from emoadapt.adapt.config import AdaptConfig
from emoadapt.adapt.start import build_start_model
from emoadapt.adapt.train import adapt
from emoadapt.data.labels import IER_CLASSES
from emoadapt.models.registry import load_model
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


FINETUNE_CONFIGS = {k: MOBILENET_CONFIGS[k] for k in ("target-only", "+mmd", "+source-CE +mmd")}



def agreement_accuracy(report_labels, probs, agree_mask) -> float:
    keep = np.asarray(agree_mask, dtype=bool)
    return float((probs[keep].argmax(1) == report_labels[keep]).mean()) if keep.any() else float("nan")


def slug(text: str) -> str:
    """A file-name-safe form of a configuration name ("mobilenetv2 +source-CE +mmd" -> "mobilenetv2_source-CE_mmd")."""
    return "_".join(part.strip("+") for part in text.split())


def summary(values: list[float]) -> dict:
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


def fer_label(fer_path: str) -> str:
    """Run-name part for a non-default ``--fer`` checkpoint ("" for the shipped fer-cpu), so runs
    from different FER trainings never share (or resume) a folder: ``runs/fer-wide/best.safetensors``
    gives "fer-wide ", ``my-fer.safetensors`` gives "my-fer "."""
    path = Path(fer_path)
    if path == Path(DEFAULT_FER):
        return ""
    name = path.parent.name if path.stem in ("best", "last") and path.parent.name else path.stem
    return f"{name} "


def _train(cfg: AdaptConfig, splits, source, run_dir: Path, *, cached, distill, resume: bool) -> dict:
    """One run: emoadapt's adaptation, or with a teacher (``distill``: a bank or an online
    teacher) the research trainer of ``research/train.py``."""
    train, val = (splits["train"].images, splits["train"].labels), (splits["val"].images, splits["val"].labels)
    if distill is None:
        return adapt(train, val, source, cfg, run_dir, progress=False, model=build_start_model(cfg), cached=cached,
                     resume=resume)
    from research.config import build_student
    from research.train import adapt_with_teacher

    return adapt_with_teacher(train, val, source, cfg, run_dir, teacher=distill, model=build_student(cfg),
                              progress=False, resume=resume)


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
            state = _train(cfg, splits, source, run_dir, cached=cached, distill=distill,
                           resume=resume and (run_dir / "last.safetensors").exists())
            best, _ = load_model(run_dir / "best.safetensors")
            probs, probs_flip = predict_plain_and_flip(best, splits["test"].images)
            report = classification_report(splits["test"].labels, probs, IER_CLASSES)
            rows.append({"seed": seed, "val_acc": state["best"]["val_acc"], "best_epoch": state["best"]["epoch"],
                         "test": report, "seconds": time.time() - started, "weights": str(run_dir / "best.safetensors"),
                         "agree_acc": agreement_accuracy(splits["test"].labels, probs, agree) if agree is not None else None,
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
                         "val_acc": summary([r["val_acc"] for r in rows]),
                         "test_acc": summary([r["test"]["accuracy"] for r in rows]),
                         "test_macro_f1": summary([r["test"]["macro_f1"] for r in rows])}
    return results

