"""The epoch driver shared by ``train-fer`` and ``adapt``: seeded per epoch (so ``--resume`` after a
kill gives the same result as an uninterrupted run), per-epoch metrics to JSONL, atomic
``last``/``best`` checkpoints, a progress bar with live loss and accuracy.

A command supplies ``train_step(epoch, batch_index, generator) -> (loss, n, correct)`` for one optimisation
step and ``validate() -> report``; :func:`run_epochs` does the rest."""

from __future__ import annotations

import json
import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ..data.transforms import uint8_to_tensor
from ..errors import CheckpointError, EmoadaptError
from ..fileio import atomic_write_json, atomic_write_text
from .augment import augment_batch
from .checkpoint import load_training_state, save_training_state, save_weights
from .config import TrainConfig
from .distributed import Dist, all_sum, autocast, barrier, sync_buffers, wrap
from .ema import WeightAverage
from .metrics import classification_report, predict_arrays


def lr_at(step: int, total_steps: int, warmup_steps: int, lr: float, min_lr_ratio: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay from ``lr`` to ``lr * min_lr_ratio``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def class_weights(labels: np.ndarray, num_classes: int, kind: str) -> torch.Tensor | None:
    """Per-class CE weights, normalised so that the average weight over the samples is 1."""
    if kind == "none":
        return None
    counts = np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.float64).clip(min=1)
    if kind == "sqrt":
        weights = 1 / np.sqrt(counts)
    elif kind == "balanced":
        weights = 1 / counts
    else:
        raise EmoadaptError(f"class_weight must be none, sqrt or balanced, got {kind!r}")
    return torch.tensor(weights / (weights * counts).sum() * counts.sum(), dtype=torch.float32)


COLLAPSE_EPOCHS = 5  # warn after this many epochs in a row with one predicted class


def classes_predicted(report: dict) -> int | None:
    """How many classes a validation report's predictions use (columns of its confusion matrix;
    None when the report has none)."""
    if "confusion" not in report:
        return None
    return int((np.asarray(report["confusion"]).sum(0) > 0).sum())


def _warn_if_collapsed(history: list[dict]) -> None:
    """Warn when the trained weights have answered one class for every validation image over the
    last COLLAPSE_EPOCHS epochs (once per such streak: at the epoch it reaches that length): the
    network has collapsed, typically because every unit of the layer before the classifier is off
    (dead ReLUs), and more epochs rarely help."""
    recent = [r.get("val_classes_predicted") for r in history[-COLLAPSE_EPOCHS:]]
    if len(recent) == COLLAPSE_EPOCHS and all(n == 1 for n in recent) and (
            len(history) == COLLAPSE_EPOCHS or history[-COLLAPSE_EPOCHS - 1].get("val_classes_predicted") != 1):
        warnings.warn(f"epochs {history[-COLLAPSE_EPOCHS]['epoch']}-{history[-1]['epoch']}: the model predicts one "
                      "class for every validation image (collapsed; validation accuracy = that class's share). "
                      "Often the layer before the classifier is dead (all ReLUs off): with `emoadapt adapt` "
                      "try --dense 256 (a fresh dense layer) or a lower --lr.", RuntimeWarning, stacklevel=3)


StepFn = Callable[[int, int, torch.Generator], tuple[torch.Tensor, int, int]]


@dataclass(frozen=True)
class EpochPlan:
    """How :func:`run_epochs` trains: ``epochs`` of ``steps_per_epoch`` steps, seeded per epoch with
    ``seed``; learning rate warmed up linearly over ``warmup_epochs`` then cosine-decayed from ``lr`` to
    ``lr * min_lr_ratio``; ``ema_decay`` > 0 keeps a weight average that validates and ships."""

    epochs: int
    steps_per_epoch: int
    seed: int
    lr: float
    warmup_epochs: float
    min_lr_ratio: float
    ema_decay: float = 0.0

    @classmethod
    def of(cls, cfg: Any, steps_per_epoch: int) -> "EpochPlan":
        """The plan of a :class:`TrainConfig` or :class:`~emoadapt.adapt.config.AdaptConfig`."""
        return cls(cfg.epochs, steps_per_epoch, cfg.seed, cfg.lr, cfg.warmup_epochs, cfg.min_lr_ratio, cfg.ema)


@dataclass(frozen=True)
class RunFiles:
    """What :func:`run_epochs` writes into ``out_dir`` besides the weights: ``settings`` (every option,
    JSON-able; ``--resume`` refuses a checkpoint made with others), the model's ``model_config``, its
    ``classes``, and ``extra_meta`` stored in ``run.json`` and every weights file."""

    out_dir: Path
    settings: dict
    model_config: dict
    classes: tuple[str, ...]
    extra_meta: dict | None = None

    @property
    def meta(self) -> dict:
        return {"classes": list(self.classes), **(self.extra_meta or {})}


def run_epochs(model: torch.nn.Module, optimizer: torch.optim.Optimizer, plan: EpochPlan, files: RunFiles,
               train_step: StepFn, validate: Callable[[], dict], *, resume: bool = False, progress: bool = True,
               stop_after_epochs: int | None = None, helpers: dict[str, torch.nn.Module] | None = None,
               dist: Dist | None = None) -> dict:
    """Drive ``plan.epochs`` epochs of ``plan.steps_per_epoch`` calls to ``train_step``; after each,
    ``validate()`` and write ``last.safetensors`` (resumable state), ``best.safetensors`` (best
    validation accuracy), ``log.jsonl`` and ``run.json`` into ``files.out_dir``. Each param group's
    learning rate is ``lr_at(...) * group.get("lr_scale", 1)``. ``stop_after_epochs`` ends the call
    early (tests use it to simulate a kill).

    With ``plan.ema_decay`` > 0 (:class:`~emoadapt.training.ema.WeightAverage`, updated after every
    step, kept in ``last.safetensors``) each epoch validates both: ``val_acc`` (which picks
    ``best.safetensors``, saved with the averaged weights) is the average's, ``val_acc_raw`` the
    trained weights'; ``best_raw.safetensors`` keeps the best trained weights, for comparison.

    ``helpers``: modules trained beside the model but not shipped (their parameters must be in
    ``optimizer``): stored in ``last.safetensors`` and restored by ``resume``, never in ``best``.

    ``dist`` (:mod:`emoadapt.training.distributed`, under torchrun): every rank runs the steps (its
    draws seeded with its rank besides the seed and epoch; rank 0's are those of a single process)
    and resumes from the same ``last.safetensors``; rank 0 alone validates, logs and writes the
    checkpoints while the others wait. Train loss and accuracy are summed over the ranks. The
    returned state is complete on rank 0; the other ranks' holds the epoch.
    """
    d = dist or Dist()
    out = Path(files.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    average = WeightAverage(model, plan.ema_decay) if plan.ema_decay > 0 else None
    state = _start_state(model, optimizer, files, out / "last.safetensors", resume, helpers, average)
    if d.is_main:
        atomic_write_json(out / "run.json", {"model_config": files.model_config, "train_config": files.settings,
                                              **files.meta})
    epochs_run = 0
    while state["epoch"] < plan.epochs:
        epoch = state["epoch"]
        record = _train_epoch(model, optimizer, plan, epoch, train_step, average, d, progress)
        epochs_run += 1
        if d.is_main:  # rank 0 validates and saves; the others wait for its checkpoint
            _validate_and_save(model, optimizer, files, out, state, record, validate, average, helpers)
            if progress:
                tqdm.write(f"epoch {epoch + 1}: loss {record['train_loss']:.3f} train acc {record['train_acc']:.3f} "
                           f"val acc {record['val_acc']:.4f} macro-F1 {record['val_macro_f1']:.3f} "
                           f"({record['epoch_seconds']:.0f} s, {record['train_img_per_s']:.0f} img/s)")
        state["epoch"] = epoch + 1
        barrier(d)
        if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
            break
    return state


def _start_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, files: RunFiles, last: Path, resume: bool,
                 helpers: dict[str, torch.nn.Module] | None, average: WeightAverage | None) -> dict:
    """A fresh training state, or (``resume``) the one in ``last`` with the model, optimizer, helpers
    and weight average restored; refuses a checkpoint made with other settings."""
    if not resume:
        return {"epoch": 0, "history": [], "best": None, "train_config": files.settings}
    if not last.exists():
        raise CheckpointError(f"--resume: no checkpoint at {last}")
    state = load_training_state(last, model, optimizer)
    saved = state.pop("extra_tensors")
    if state["train_config"] != files.settings:
        raise CheckpointError(f"--resume: {last} was made with other settings: {state['train_config']}")
    for name, module in (helpers or {}).items():
        prefix = f"helper.{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)})
    if average is not None:
        saved_average = {k[4:]: v for k, v in saved.items() if k.startswith("ema.")}
        if not saved_average:
            raise CheckpointError(f"--resume: {last} holds no weight average (ema_decay {average.decay})")
        average.load(saved_average, state["ema_updates"])
    return state


def _train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, plan: EpochPlan, epoch: int,
                 train_step: StepFn, average: WeightAverage | None, d: Dist, progress: bool) -> dict:
    """One epoch of steps, seeded by (seed, epoch, rank): the record of its loss, accuracy, last
    learning rate and speed (summed over the ranks)."""
    torch.manual_seed(plan.seed * 100_003 + epoch + 7_919 * d.rank)  # dropout and any global draw
    generator = torch.Generator().manual_seed(plan.seed * 100_003 + epoch + 7_919 * d.rank)
    total_steps = plan.steps_per_epoch * plan.epochs
    warmup_steps = max(1, int(plan.warmup_epochs * plan.steps_per_epoch))
    model.train()
    started = time.time()
    seen, loss_sum, correct = 0, 0.0, 0
    bar = tqdm(range(plan.steps_per_epoch), desc=f"epoch {epoch + 1}/{plan.epochs}",
               disable=not (progress and d.is_main), unit="batch", leave=False)
    for step_in_epoch in bar:
        base = lr_at(epoch * plan.steps_per_epoch + step_in_epoch, total_steps, warmup_steps, plan.lr,
                     plan.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = base * group.get("lr_scale", 1.0)
        loss, n, n_correct = train_step(epoch, step_in_epoch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update(model)
        seen += n
        loss_sum += float(loss.detach()) * n
        correct += n_correct
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    bar.close()
    seconds = time.time() - started
    seen, loss_sum, correct = all_sum([seen, loss_sum, correct], d)
    sync_buffers(model, d)
    return {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen, "lr": base,
            "epoch_seconds": seconds, "train_img_per_s": seen / seconds}


def _validate_and_save(model: torch.nn.Module, optimizer: torch.optim.Optimizer, files: RunFiles, out: Path,
                       state: dict, record: dict, validate: Callable[[], dict], average: WeightAverage | None,
                       helpers: dict[str, torch.nn.Module] | None) -> None:
    """Validate the epoch's weights (and their average), keep the best, append ``record`` (completed
    with the validation scores) to the history and write the checkpoints and ``log.jsonl``."""
    epoch = record["epoch"]
    val = validate()
    record.update(val_acc=val["accuracy"], val_macro_f1=val["macro_f1"])
    record["val_classes_predicted"] = classes_predicted(val)  # the trained weights'
    _warn_if_collapsed(state["history"] + [record])
    if average is not None:  # the trained weights' score is kept as val_acc_raw; the average's decides
        raw = val
        if state.get("best_raw") is None or raw["accuracy"] > state["best_raw"]["val_acc_raw"]:
            save_weights(out / "best_raw.safetensors", model, files.model_config,
                         extra={**files.meta, "epoch": epoch, "val": raw, "weights": "trained"})
            state["best_raw"] = {"epoch": epoch, "val_acc_raw": raw["accuracy"]}
    with average.applied(model) if average is not None else nullcontext():  # the weights that ship
        if average is not None:
            val = validate()
            record.update(val_acc=val["accuracy"], val_macro_f1=val["macro_f1"], val_acc_raw=raw["accuracy"])
            state["ema_updates"] = average.updates
        if state["best"] is None or val["accuracy"] > state["best"]["val_acc"]:
            state["best"] = record
            shipped = {"weights": f"ema {average.decay}"} if average is not None else {}
            save_weights(out / "best.safetensors", model, files.model_config,
                         extra={**files.meta, "epoch": epoch, "val": val, **shipped})
    state["history"].append(record)
    state["epoch"] = epoch
    extra_tensors = {f"helper.{name}.{k}": v for name, module in (helpers or {}).items()
                     for k, v in module.state_dict().items()}
    if average is not None:
        extra_tensors.update({f"ema.{k}": v for k, v in average.tensors.items()})
    save_training_state(out / "last.safetensors", model, optimizer, state, extra_tensors=extra_tensors)
    atomic_write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))


def fit(model: torch.nn.Module, train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray,
        val_labels: np.ndarray, classes: tuple[str, ...], cfg: TrainConfig, out_dir: str | Path, *,
        model_config: dict, resume: bool = False, extra_meta: dict | None = None,
        stop_after_epochs: int | None = None, progress: bool = True, dist: Dist | None = None,
        amp: bool = False) -> dict:
    """Supervised training on uint8 images (N, H, W, C) with labels (N,); selection on the validation set.

    Under torchrun (``dist`` with several ranks) the model runs inside DistributedDataParallel and a
    DistributedSampler (seeded with ``cfg.seed``, reshuffled per epoch) gives each rank its share
    of every epoch (padded to equal shares); ``amp``: bfloat16 autocast on CUDA."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = dist or Dist()
    net = wrap(model, d)  # model itself on d.device; net: DDP around it with several ranks
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = class_weights(train_labels, len(classes), cfg.class_weight)
    weights = None if weights is None else weights.to(d.device)
    sampler = None
    if d.active:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(len(train_images)), num_replicas=d.world, rank=d.rank, shuffle=True,
                                     seed=cfg.seed)
    steps_per_epoch = math.ceil((len(sampler) if sampler else len(train_images)) / cfg.batch_size)
    orders: dict[int, np.ndarray] = {}

    def train_step(epoch: int, step: int, generator: torch.Generator) -> tuple[torch.Tensor, int, int]:
        if step == 0 and sampler is not None:  # a new epoch: this rank's share of a new permutation
            sampler.set_epoch(epoch)
            orders[0] = np.fromiter(iter(sampler), dtype=np.int64)
        elif step == 0:  # a new epoch: a new permutation from this epoch's generator
            orders[0] = torch.randperm(len(train_images), generator=generator).numpy()
        index = orders[0][step * cfg.batch_size:(step + 1) * cfg.batch_size]
        x = uint8_to_tensor(train_images[index])
        y = torch.as_tensor(train_labels[index])
        if cfg.augment:
            x = augment_batch(x, generator)
        x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
        with autocast(d, amp):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, weight=weights, label_smoothing=cfg.label_smoothing)
        return loss, len(index), int((logits.argmax(1) == y).sum())

    def validate() -> dict:
        return classification_report(val_labels, predict_arrays(model, val_images), classes)

    files = RunFiles(Path(out_dir), asdict(cfg), model_config, tuple(classes), extra_meta)
    return run_epochs(model, optimizer, EpochPlan.of(cfg, steps_per_epoch), files, train_step, validate,
                      resume=resume, progress=progress, stop_after_epochs=stop_after_epochs, dist=d)
