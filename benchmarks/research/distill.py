"""Online distillation ("function matching"): the teacher labels fresh views at every step.

The bank protocol (:func:`research.bank.distillation_bank`) shows the student a fixed set of
views; a small student memorises them. Here, as in Beyer et al. (2022, "Knowledge distillation: a
good teacher is patient and consistent"), every step draws new random resized crops, cuts the
*same* box at the teacher's and at the student's input size, and asks the teacher afresh, so the
student never sees a view twice. Each step has

* ``batch_size`` labelled training images, one random crop each: cross-entropy on their labels
  plus the distillation terms;
* ``batch_size`` mixed views from the pool of training and unlabelled images: two random images,
  each cropped, blended as ``λ·a + (1 − λ)·b`` with ``λ ~ Beta(mixup, mixup)`` (``mixup`` 0: one
  crop, no blend) — distillation terms only;
* optionally source faces (when the configuration's source CE or discrepancy uses them).

    L = CE(labelled crops) + α·CE(source) + λ·D(f_S, f_T)
        + β·T²·KL(teacher_T ‖ student_T) + γ·MSE(student pre-logits, teacher pre-logits)
        + δ·mean over pairs (s, t) of FeatureHint(student map s, teacher map t)

The optional feature-map hint (δ = ``kd_spatial_weight``) is :mod:`research.hints`.

The teacher runs in onnxruntime when it is installed (about 6× faster than PyTorch on this CPU
for MobileNetV2 at 160 px), else in PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from emoadapt.adapt.config import ConfigError
from emoadapt.adapt.loop import fit_adaptation
from emoadapt.adapt.losses import adaptation_loss, pooled
from emoadapt.adapt.start import frozen_modules
from emoadapt.adapt.views import random_boxes, render_views
from emoadapt.data.labels import IER_CLASSES
from emoadapt.data.transforms import match_channels, rgb_to_grey, uint8_to_tensor
from emoadapt.training.metrics import classification_report, predict_arrays

from .config import DistillConfig, distillation_loss
from .hints import feature_hints, spatial_pairs

#: What the teacher returns for a batch of views: ``logits`` (N, K) and ``pre_logits`` (N, H).
TeacherFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class OnlineTeacher:
    """A teacher and the pictures it teaches on.

    Attributes:
        predict: float (N, 3, S, S) in [0, 1] → ``{"logits", "pre_logits"}`` float tensors.
        size: the teacher's input side S in px.
        train_images: (N, ≥S, ≥S, 3) uint8, the labelled training images in the student's order.
        unlabelled_images: (M, ≥S, ≥S, 3) uint8 extra images without labels (M may be 0).
    """

    predict: TeacherFn
    size: int
    train_images: np.ndarray
    unlabelled_images: np.ndarray


def online_teacher(model: nn.Module, train_images: np.ndarray, unlabelled_images: np.ndarray, *,
                   threads: int | None = None, use_onnx: bool = True, cache_dir: str | Path | None = None,
                   spatial_taps: tuple[str, ...] = ()) -> OnlineTeacher:
    """Wrap a trained IER ``model`` as an :class:`OnlineTeacher` (onnxruntime when available; a
    grey model sees the luma of the RGB views). It answers ``logits``, ``pre_logits`` and the
    feature maps ``spatial_taps`` (for the feature-map hint). The ONNX export is cached in
    ``cache_dir`` (default: the emoadapt cache)."""
    model.eval()
    grey = model.config.in_chans == 1
    taps = ("pre_logits", "logits", *spatial_taps)
    run: TeacherFn
    try:
        if not use_onnx:
            raise ImportError
        from emoadapt.models.onnx import onnx_session

        session = onnx_session(model, threads=threads, cache_dir=cache_dir, taps=taps)

        def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {tap: torch.from_numpy(value) for tap, value in zip(taps, session.run(None, {"images": x.numpy()}))}
    except ImportError:
        @torch.no_grad()
        def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
            return model.forward_taps(x, taps)

    def predict(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return run(rgb_to_grey(x) if grey else x.contiguous())

    return OnlineTeacher(predict, model.config.input_size, train_images, unlabelled_images)


def crops(images: np.ndarray, boxes: np.ndarray, sizes: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The same boxes (n, 5) cut from uint8 images (n, S, S, 3) at two sizes: float tensors
    (n, 3, s, s) in [0, 1] for each size in ``sizes``."""
    return tuple(uint8_to_tensor(render_views(images, boxes[None], size)[0]) for size in sizes)


def mixed_views(pool: np.ndarray, count: int, rng: np.random.Generator, mixup: float,
                sizes: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` views from ``pool`` (N, S, S, 3) uint8 at both ``sizes``: a random crop of a
    random image, blended with another one as ``λ·a + (1 − λ)·b``, λ ~ Beta(mixup, mixup) per view
    (``mixup`` 0: no blend)."""
    first = crops(pool[rng.integers(len(pool), size=count)], random_boxes(rng, count), sizes)
    if mixup <= 0:
        return first
    second = crops(pool[rng.integers(len(pool), size=count)], random_boxes(rng, count), sizes)
    lam = torch.from_numpy(rng.beta(mixup, mixup, size=count)).float().view(-1, 1, 1, 1)
    return tuple(lam * a + (1 - lam) * b for a, b in zip(first, second))


def function_matching(model: nn.Module, teacher: OnlineTeacher, train_labels: np.ndarray,
                      val: tuple[np.ndarray, np.ndarray], source: tuple[np.ndarray, np.ndarray], cfg: DistillConfig,
                      out_dir: str | Path, *, optimizer, discrepancy: nn.Module, use_source: bool, resume: bool,
                      progress: bool, stop_after_epochs: int | None) -> dict:
    """Train ``model`` (the student) with the loss in the module docstring; one epoch is
    ``ceil(N_train / batch_size)`` steps. ``val`` images are at the student's size; ``source``
    faces (uint8, FER labels already mapped to IER indices or −1) at the student's size.
    Returns the run state of :func:`emoadapt.training.loop.run_epochs`."""
    if not isinstance(teacher, OnlineTeacher):
        raise ConfigError("kd_mode=online needs an OnlineTeacher (distill.online_teacher)")
    if cfg.kd_hint_weight > 0 and cfg.kd_hint_tap != "pre_logits":
        raise ConfigError("online distillation hints on the teacher's pre_logits only")
    if len(teacher.train_images) != len(train_labels):
        raise ConfigError(f"{len(teacher.train_images)} teacher-size training images for {len(train_labels)} labels")
    student_size, channels = model.config.input_size, model.config.in_chans
    sizes = (teacher.size, student_size)
    pool = np.concatenate([teacher.train_images, teacher.unlabelled_images])
    xs, ys = source
    steps_per_epoch = math.ceil(len(train_labels) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    layers = tuple(tap.strip() for tap in cfg.layer.split(",") if tap.strip())
    order: dict[str, np.ndarray] = {}
    pairs = spatial_pairs(cfg.kd_spatial) if cfg.kd_spatial_weight > 0 else []
    hints = feature_hints(model, teacher, pairs, cfg.seed) if pairs else nn.ModuleDict()
    if pairs:  # the regressors train with the student (and are saved with last.safetensors for --resume)
        optimizer.add_param_group({"params": list(hints.parameters()), "lr": cfg.lr,
                                   "weight_decay": cfg.weight_decay, "lr_scale": 1.0})

    def to_student(x: torch.Tensor) -> torch.Tensor:
        return rgb_to_grey(x) if channels == 1 else x

    def train_step(epoch: int, step: int, generator: torch.Generator):
        if step == 0:
            order["train"] = torch.randperm(len(train_labels), generator=generator).numpy()
            for m in frozen_modules(model, cfg.freeze):  # frozen layers keep their batch-norm statistics
                m.eval()
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
        index = order["train"][step * cfg.batch_size:(step + 1) * cfg.batch_size]
        labelled_t, labelled_s = crops(teacher.train_images[index], random_boxes(rng, len(index)), sizes)
        mixed_t, mixed_s = mixed_views(pool, len(index), rng, cfg.mixup, sizes)
        s_index = rng.integers(len(xs), size=len(index)) if use_source else np.zeros(0, dtype=np.int64)
        faces = uint8_to_tensor(match_channels(xs[s_index], 3))
        x = torch.cat([to_student(labelled_s), to_student(faces), to_student(mixed_s)])
        out = model.forward_taps(x, tuple(dict.fromkeys((*layers, *(s for s, _ in pairs), "pre_logits", "logits"))))
        n_labelled = len(index) + len(s_index)
        progress_now = (epoch * steps_per_epoch + step) / max(1, total_steps)
        loss, n, correct = adaptation_loss(out["logits"][:n_labelled],
                                           [pooled(out[tap][:n_labelled]) for tap in layers],
                                           torch.as_tensor(train_labels[index]), torch.as_tensor(ys[s_index]),
                                           progress_now, cfg, discrepancy)
        taught = teacher.predict(torch.cat([labelled_t, mixed_t]))
        student = {tap: torch.cat([out[tap][:len(index)], out[tap][n_labelled:]])
                   for tap in dict.fromkeys(("logits", "pre_logits", *(s for s, _ in pairs)))}
        if cfg.kd_weight > 0:
            loss = loss + cfg.kd_weight * distillation_loss(student["logits"], taught["logits"], cfg.kd_temperature)
        if cfg.kd_hint_weight > 0:
            loss = loss + cfg.kd_hint_weight * F.mse_loss(student["pre_logits"], taught["pre_logits"])
        if pairs:
            hint = sum(hints[f"{s}->{t}"](student[s], taught[t]) for s, t in pairs) / len(pairs)
            loss = loss + cfg.kd_spatial_weight * hint
        return loss, n, correct

    def validate() -> dict:
        return classification_report(val[1], predict_arrays(model, val[0]), IER_CLASSES)

    return fit_adaptation(model, optimizer, cfg, steps_per_epoch, train_step, validate, out_dir, resume=resume,
                          progress=progress, stop_after_epochs=stop_after_epochs,
                          helpers={"feature_hints": hints} if pairs else None)
