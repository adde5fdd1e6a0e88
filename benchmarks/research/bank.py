"""Opt-in distillation over a fixed bank of views (``kd_mode=bank``).

A trained IER ``teacher`` labels, once, ``views`` augmented views of every target-train image and
of extra unlabelled images (:func:`distillation_bank`); training then shows the student one
random view per image per step, and the loss gains

    β · T² · KL(teacher_T ‖ student_T)  [+ γ · MSE(student pre-logits, teacher hint tap)]

over those views — the way a small network such as the paper-structure EmoNet learns what an
ImageNet-initialised model sees in scenes. The hint (FitNets-style) acts on the dense layer before
the classifier; student and teacher widths must agree (``dense``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from emoadapt.adapt.config import ConfigError, uses_source
from emoadapt.adapt.loop import Arrays, fit_adaptation, target_batch
from emoadapt.adapt.losses import adaptation_loss, pooled
from emoadapt.adapt.start import frozen_modules
from emoadapt.adapt.views import crop_boxes, render_views
from emoadapt.data.labels import IER_CLASSES
from emoadapt.data.transforms import fit_images, match_channels, uint8_to_tensor
from emoadapt.training.metrics import classification_report, predict_arrays

from .config import DistillConfig, distillation_loss, hidden_width

#: What a bank holds per image set ``target`` / ``unlabelled``: ``{name}_views`` (V, N, s, s, C)
#: uint8 and float32 ``{name}_logits`` (V, N, 4), ``{name}_hidden`` (V, N, H), ``{name}_features`` (V, N, C).
TeacherBank = dict[str, np.ndarray]
HINT_KEYS = {"pre_logits": "hidden", "features": "features"}


@torch.no_grad()
def distillation_bank(teacher: nn.Module, target_images: np.ndarray, unlabelled_images: np.ndarray, *, views: int,
                      seed: int, student_size: int, student_channels: int = 3, batch_size: int = 64,
                      progress: bool = False) -> TeacherBank:
    """What a student needs to learn from ``teacher``: for every target-train and unlabelled image,
    ``views`` augmented views (:mod:`emoadapt.adapt.views`), rendered at the teacher's input size
    for its logits and at ``student_size`` for the student.

    Args:
        target_images, unlabelled_images: (N, S, S, 3) uint8 at (at least) the teacher's size.
    Returns:
        ``target_views`` (V, N, s, s, C) uint8; float32 ``target_logits`` (V, N, 4),
        ``target_hidden`` (V, N, H) (the teacher's pre-logits) and ``target_features`` (V, N, C)
        (its last conv map, spatially averaged); the same for ``unlabelled``.
    """
    from tqdm import tqdm

    teacher.eval()
    size = teacher.config.input_size
    final_map = "s5" if "s5" in teacher.taps else "merged"  # the last conv map: MobileNetV2 / EmoNet
    bank = {}
    for name, images, offset in (("target", target_images, 0), ("unlabelled", unlabelled_images, 1)):
        boxes = crop_boxes(len(images), views, seed + offset)
        student = render_views(images, boxes, student_size)
        if student_channels == 1 and student.shape[-1] == 3:  # grey as the decoder makes it (luma)
            student = fit_images(student.reshape(-1, *student.shape[2:]), student_size, 1).reshape(
                *student.shape[:-1], 1)
        taught: dict[str, list[np.ndarray]] = {"logits": [], "hidden": [], "features": []}
        for v in tqdm(range(views), desc=f"teacher on {name} views", disable=not progress, leave=False):
            seen = render_views(images, boxes[v:v + 1], size)[0]
            for start in range(0, max(1, len(seen)), batch_size):
                batch = seen[start:start + batch_size] if len(seen) else np.zeros((1, size, size, 3), np.uint8)
                out = teacher.forward_taps(uint8_to_tensor(batch), (final_map, "pre_logits", "logits"))
                out = {k: t[:len(seen)] for k, t in out.items()}  # no images: keep the widths only
                taught["logits"].append(out["logits"].numpy())
                taught["hidden"].append(out["pre_logits"].numpy())
                taught["features"].append(pooled(out[final_map]).numpy())
        bank[f"{name}_views"] = student
        for key, chunks in taught.items():
            values = np.concatenate(chunks)
            bank[f"{name}_{key}"] = values.reshape(views, len(images), values.shape[-1]).astype(np.float32)
    return bank


def train_with_bank(model: nn.Module, optimizer: torch.optim.Optimizer, discrepancy: nn.Module, bank: TeacherBank,
                    target_train: Arrays, target_val: Arrays, source: Arrays, cfg: DistillConfig,
                    out_dir: str | Path, *, resume: bool, progress: bool, stop_after_epochs: int | None) -> dict:
    """The joint protocol on the bank's views (no other augmentation) plus the distillation terms
    over the labelled and the unlabelled views; ``source`` labels are IER indices (−1: none).
    Source faces join the batches only when the source CE or the discrepancy uses them."""
    if not isinstance(bank, dict):
        raise ConfigError("kd_mode=bank needs a teacher bank from distillation_bank")
    hint_key = HINT_KEYS[cfg.kd_hint_tap]
    if cfg.kd_hint_weight > 0 and bank[f"target_{hint_key}"].shape[-1] != hidden_width(model):
        raise ConfigError(f"the hint needs equal widths: teacher {cfg.kd_hint_tap} "
                          f"{bank[f'target_{hint_key}'].shape[-1]}, student pre-logits {hidden_width(model)} "
                          "(set dense to the teacher's width)")
    (xt, yt), (xv, yv), (xs, ys) = target_train, target_val, source
    steps_per_epoch = math.ceil(len(xt) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    frozen = frozen_modules(model, cfg.freeze)
    order: dict[str, np.ndarray] = {}
    use_source = uses_source(cfg, always=False)

    def from_bank(name: str, index: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Pixels (n, C, S, S) of one random view per image of bank ``name`` and what the teacher
        made of those views: ``logits`` (n, 4) and the hint target (n, H)."""
        view = torch.randint(bank[f"{name}_views"].shape[0], (len(index),), generator=generator).numpy()
        taught = {key: torch.as_tensor(bank[f"{name}_{key}"][view, index]).float() for key in ("logits", hint_key)}
        return uint8_to_tensor(bank[f"{name}_views"][view, index]), taught

    def unlabelled_index(count: int, generator: torch.Generator) -> np.ndarray:
        available = bank["unlabelled_views"].shape[1]
        return torch.randint(max(1, available), (count if available else 0,), generator=generator).numpy()

    def train_step(epoch: int, step: int, generator: torch.Generator):
        t_index = target_batch(order, len(xt), frozen, step, cfg.batch_size, generator)
        s_index = (torch.randint(len(xs), (len(t_index),), generator=generator).numpy() if use_source
                   else np.zeros(0, dtype=np.int64))
        x_target, taught_target = from_bank("target", t_index, generator)
        x = torch.cat([x_target, uint8_to_tensor(match_channels(xs[s_index], xt.shape[-1]))])
        x_unlabelled, taught_unlabelled = from_bank("unlabelled", unlabelled_index(len(t_index), generator),
                                                    generator)
        x = torch.cat([x, x_unlabelled])
        out = model.forward_taps(x, tuple(dict.fromkeys((*cfg.layers, "pre_logits", "logits"))))
        labelled = len(t_index) + len(s_index)
        progress_now = (epoch * steps_per_epoch + step) / max(1, total_steps)
        loss, n, correct = adaptation_loss(out["logits"][:labelled],
                                           [pooled(out[tap][:labelled]) for tap in cfg.layers],
                                           torch.as_tensor(yt[t_index]), torch.as_tensor(ys[s_index]), progress_now,
                                           cfg, discrepancy)

        def taught(tap: str, key: str) -> tuple[torch.Tensor, torch.Tensor]:  # student rows, teacher rows
            student = torch.cat([out[tap][:len(t_index)], out[tap][labelled:]])
            return student, torch.cat([taught_target[key], taught_unlabelled[key]])

        if cfg.kd_weight > 0:
            loss = loss + cfg.kd_weight * distillation_loss(*taught("logits", "logits"), cfg.kd_temperature)
        if cfg.kd_hint_weight > 0:
            loss = loss + cfg.kd_hint_weight * F.mse_loss(*taught("pre_logits", hint_key))
        return loss, n, correct

    def validate() -> dict:
        return classification_report(yv, predict_arrays(model, xv), IER_CLASSES)

    return fit_adaptation(model, optimizer, cfg, steps_per_epoch, train_step, validate, out_dir, resume=resume,
                          progress=progress, stop_after_epochs=stop_after_epochs)
