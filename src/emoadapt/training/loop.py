"""One supervised training loop for array data, shared by ``train-fer`` (and reused by ``adapt``
for its bookkeeping): seeded per epoch, so ``--resume`` after a kill gives the same result as an
uninterrupted run; per-epoch metrics to JSONL; atomic ``last``/``best`` checkpoints."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ..data.transforms import uint8_to_tensor
from ..errors import CheckpointError
from ..fileio import atomic_write_json, atomic_write_text
from .augment import augment_batch
from .checkpoint import load_training_state, save_training_state, save_weights
from .metrics import classification_report, predict_arrays


@dataclass
class TrainConfig:
    """Optimisation settings (stored in every checkpoint).

    ``class_weight``: ``none``, ``sqrt`` (weights ∝ 1/√count, mild) or ``balanced`` (∝ 1/count).
    The learning rate follows a linear warm-up then a cosine decay to ``lr * min_lr_ratio``."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    class_weight: str = "sqrt"
    augment: bool = True
    seed: int = 0
    threads: int = 0  # 0 = torch default


def lr_at(step: int, total_steps: int, warmup_steps: int, cfg: TrainConfig) -> float:
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def class_weights(labels: np.ndarray, num_classes: int, kind: str) -> torch.Tensor | None:
    if kind == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64).clip(min=1)
    weights = 1 / np.sqrt(counts) if kind == "sqrt" else 1 / counts if kind == "balanced" else None
    if weights is None:
        raise ValueError(f"class_weight must be none, sqrt or balanced, got {kind!r}")
    return torch.tensor(weights / (weights * counts).sum() * counts.sum(), dtype=torch.float32)


def fit(model: torch.nn.Module, train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray,
        val_labels: np.ndarray, classes: tuple[str, ...], cfg: TrainConfig, out_dir: str | Path, *,
        model_config: dict, resume: bool = False, extra_meta: dict | None = None,
        stop_after_epochs: int | None = None, progress: bool = True,
        on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train ``model`` on uint8 images (N, H, W, C) with labels (N,), select on the validation set.

    Writes to ``out_dir``: ``last.safetensors`` (resumable state), ``best.safetensors`` (weights of
    the best validation accuracy), ``log.jsonl`` (one line per epoch) and ``run.json``.
    ``stop_after_epochs`` ends the call early (used by tests to simulate a kill).
    Returns the final state: history and best validation metrics.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "history": [], "best": None, "train_config": asdict(cfg)}
    last = out / "last.safetensors"
    if resume:
        if not last.exists():
            raise CheckpointError(f"--resume: no checkpoint at {last}")
        state = load_training_state(last, model, optimizer)
        if state["train_config"] != asdict(cfg):
            raise CheckpointError(f"--resume: {last} was trained with different settings {state['train_config']}")
    atomic_write_json(out / "run.json", {"model_config": model_config, "train_config": asdict(cfg),
                                         "classes": list(classes), **(extra_meta or {})})

    weights = class_weights(train_labels, len(classes), cfg.class_weight)
    steps_per_epoch = math.ceil(len(train_images) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    epochs_done_now = 0
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(len(train_images), generator=generator).numpy()
        model.train()
        started = time.time()
        seen, loss_sum, correct = 0, 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   unit="batch", leave=False)
        for step_in_epoch in bar:
            step = epoch * steps_per_epoch + step_in_epoch
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, warmup_steps, cfg)
            index = order[step_in_epoch * cfg.batch_size:(step_in_epoch + 1) * cfg.batch_size]
            x = uint8_to_tensor(train_images[index])
            y = torch.as_tensor(train_labels[index])
            if cfg.augment:
                x = augment_batch(x, generator)
            logits = model(x)
            loss = F.cross_entropy(logits, y, weight=weights, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(index)
            loss_sum += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == y).sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        train_seconds = time.time() - started
        val = classification_report(val_labels, predict_arrays(model, val_images), classes)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                  "val_acc": val["accuracy"], "val_macro_f1": val["macro_f1"], "lr": optimizer.param_groups[0]["lr"],
                  "epoch_seconds": train_seconds, "train_img_per_s": seen / train_seconds}
        state["history"].append(record)
        state["epoch"] = epoch + 1
        if state["best"] is None or val["accuracy"] > state["best"]["val_acc"]:
            state["best"] = record
            save_weights(out / "best.safetensors", model, model_config,
                         extra={"classes": list(classes), "epoch": epoch + 1, "val": val, **(extra_meta or {})})
        save_training_state(last, model, optimizer, state)
        atomic_write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))
        if progress:
            tqdm.write(f"epoch {epoch + 1}: loss {record['train_loss']:.3f} train acc {record['train_acc']:.3f} "
                       f"val acc {record['val_acc']:.4f} macro-F1 {record['val_macro_f1']:.3f} "
                       f"({train_seconds:.0f} s, {record['train_img_per_s']:.0f} img/s)")
        if on_epoch is not None:
            on_epoch(record)
        epochs_done_now += 1
        if stop_after_epochs is not None and epochs_done_now >= stop_after_epochs:
            break
    return state
