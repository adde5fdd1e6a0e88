"""``adapt_with_teacher``: emoadapt's adaptation (:func:`emoadapt.adapt.train.adapt`, the joint
protocol) plus distillation from a teacher, over a fixed bank of views (``kd_mode=bank``,
:mod:`research.bank`) or fresh crops (``kd_mode=online``, :mod:`research.distill`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from emoadapt.adapt.cached import cached_tap
from emoadapt.adapt.config import ConfigError, uses_source
from emoadapt.adapt.losses import make_discrepancy
from emoadapt.adapt.start import make_optimizer
from emoadapt.data.labels import fer_to_ier_indices

from .bank import TeacherBank, train_with_bank
from .config import DistillConfig, build_student, check_distill
from .distill import OnlineTeacher, function_matching


def adapt_with_teacher(target_train: tuple[np.ndarray, np.ndarray], target_val: tuple[np.ndarray, np.ndarray],
                       source: tuple[np.ndarray, np.ndarray], cfg: DistillConfig, out_dir: str | Path, *,
                       teacher: TeacherBank | OnlineTeacher | None, model: nn.Module | None = None,
                       resume: bool = False, progress: bool = True, stop_after_epochs: int | None = None) -> dict:
    """Adapt on uint8 arrays as :func:`emoadapt.adapt.train.adapt` does (target labels IER
    indices, source labels FER indices; same files in ``out_dir``), the whole network training,
    with the teacher's terms in the loss. ``teacher``: a bank from
    :func:`research.bank.distillation_bank` (``kd_mode=bank``) or an
    :class:`research.distill.OnlineTeacher` (``kd_mode=online``, its images at the teacher's size)."""
    check_distill(cfg)
    if not cfg.distilling:
        raise ConfigError("a teacher was given but no distillation weight (kd_weight, kd_hint_weight, "
                          "kd_spatial_weight) is above 0")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = model if model is not None else build_student(cfg)
    if cached_tap(model, cfg) is not None:
        raise ConfigError(f"distillation (kd_weight, kd_hint_weight or kd_spatial_weight > 0) trains the whole "
                          f"network: it needs freeze=none, got freeze={cfg.freeze}")
    xs, ys = source[0], fer_to_ier_indices(source[1])
    optimizer = make_optimizer(model, cfg)
    discrepancy = make_discrepancy(cfg.discrepancy)
    run = dict(resume=resume, progress=progress, stop_after_epochs=stop_after_epochs)
    if cfg.kd_mode == "online":
        return function_matching(model, teacher, target_train[1], target_val, (xs, ys), cfg, out_dir,
                                 optimizer=optimizer, discrepancy=discrepancy,
                                 use_source=uses_source(cfg, always=False), **run)
    return train_with_bank(model, optimizer, discrepancy, teacher, target_train, target_val, (xs, ys), cfg,
                           out_dir, **run)
