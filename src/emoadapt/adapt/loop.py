"""The paper's method, trained end to end: every step runs the whole network on a joint batch.

Each step draws ``batch_size`` target images (a fresh permutation per epoch) and as many random
source faces, augments the joint batch, and minimises :func:`~emoadapt.adapt.losses.adaptation_loss`
on the activations at ``cfg.layer``; the epochs, checkpoints and model selection are
:func:`emoadapt.training.loop.run_epochs`' (:func:`fit_adaptation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.labels import IER_CLASSES
from ..data.transforms import match_channels, uint8_to_tensor
from ..training.augment import augment_batch
from ..training.distributed import Dist, Taps, autocast, wrap
from ..training.loop import EpochPlan, RunFiles, StepFn, run_epochs
from ..training.metrics import classification_report, predict_arrays
from .config import AdaptConfig, uses_source
from .losses import adaptation_loss, pooled
from .start import frozen_modules

Arrays = tuple[np.ndarray, np.ndarray]


def target_batch(order: dict[str, np.ndarray], count: int, frozen: list[nn.Module], step: int, batch_size: int,
                 generator: torch.Generator) -> np.ndarray:
    """Indices of step ``step``'s target batch: at step 0 a new seeded permutation of ``count``
    images (and the frozen modules set back to eval mode, so they keep their batch-norm
    statistics); then consecutive slices of it. ``order`` keeps the permutation between steps."""
    if step == 0:
        order["target"] = torch.randperm(count, generator=generator).numpy()
        for m in frozen:
            m.eval()
    return order["target"][step * batch_size:(step + 1) * batch_size]


def fit_adaptation(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: AdaptConfig, steps_per_epoch: int,
                   train_step: StepFn, validate: Callable[[], dict], out_dir: str | Path, *, resume: bool,
                   progress: bool, stop_after_epochs: int | None,
                   helpers: dict[str, nn.Module] | None = None, dist: Dist | None = None,
                   classes: tuple[str, ...] = IER_CLASSES) -> dict:
    """Run ``cfg.epochs`` epochs of ``train_step`` with the run's settings stored beside the weights
    (``best.safetensors`` is a model of ``classes`` whose metadata holds the whole :class:`AdaptConfig`)."""
    files = RunFiles(Path(out_dir), asdict(cfg), model.config.to_dict(), tuple(classes),
                     {"task": "ier", "adapt": asdict(cfg)})
    return run_epochs(model, optimizer, EpochPlan.of(cfg, steps_per_epoch), files, train_step, validate,
                      resume=resume, progress=progress, stop_after_epochs=stop_after_epochs, helpers=helpers,
                      dist=dist)


def train_joint(model: nn.Module, optimizer: torch.optim.Optimizer, discrepancy: nn.Module, target_train: Arrays,
                target_val: Arrays, source: Arrays, cfg: AdaptConfig, out_dir: str | Path, *, resume: bool,
                progress: bool, stop_after_epochs: int | None, dist: Dist | None = None, amp: bool = False) -> dict:
    """Full-network adaptation on uint8 arrays; ``source`` labels already mapped to IER indices
    (−1 for faces without an IER class). Source faces share every batch (and its batch-norm
    statistics), as in the recorded ablation.

    Under torchrun (``dist`` with several ranks) the network runs in DistributedDataParallel and a
    DistributedSampler gives each rank its share of the target images (each rank draws its own
    source faces); ``amp``: bfloat16 autocast on CUDA (:mod:`emoadapt.training.distributed`)."""
    (xt, yt), (xv, yv), (xs, ys) = target_train, target_val, source
    d = dist or Dist()
    taps = tuple(dict.fromkeys((*cfg.layers, "pre_logits", "logits")))
    net = wrap(Taps(model, taps), d, find_unused=True)
    sampler = None
    if d.active:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(len(xt)), num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed)
    steps_per_epoch = math.ceil((len(sampler) if sampler else len(xt)) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    frozen = frozen_modules(model, cfg.freeze)
    order: dict[str, np.ndarray] = {}
    # source faces share every batch, as in the recorded runs, unless there are none (source_limit 0)
    with_source = len(xs) > 0 and uses_source(cfg, always=cfg.source_limit > 0)

    def train_step(epoch: int, step: int, generator: torch.Generator):
        if sampler is not None and step == 0:  # this rank's share of a new permutation
            sampler.set_epoch(epoch)
            order["target"] = np.fromiter(iter(sampler), dtype=np.int64)
            for m in frozen:
                m.eval()
        if sampler is not None:
            t_index = order["target"][step * cfg.batch_size:(step + 1) * cfg.batch_size]
        else:
            t_index = target_batch(order, len(xt), frozen, step, cfg.batch_size, generator)
        s_index = (torch.randint(len(xs), (len(t_index),), generator=generator).numpy() if with_source
                   else np.zeros(0, np.int64))
        x = torch.cat([uint8_to_tensor(xt[t_index]), uint8_to_tensor(match_channels(xs[s_index], xt.shape[-1]))])
        if cfg.augment:
            x = augment_batch(x, generator, max_rotate_deg=10, erase_prob=0.0)
        with autocast(d, amp):
            out = net(x.to(d.device, non_blocking=True))
        out = {name: value.float() for name, value in out.items()}
        progress_now = (epoch * steps_per_epoch + step) / max(1, total_steps)
        return adaptation_loss(out["logits"], [pooled(out[tap]) for tap in cfg.layers],
                               torch.as_tensor(yt[t_index]).to(d.device), torch.as_tensor(ys[s_index]).to(d.device),
                               progress_now, cfg, discrepancy)

    def validate() -> dict:
        return classification_report(yv, predict_arrays(model, xv), IER_CLASSES)

    return fit_adaptation(model, optimizer, cfg, steps_per_epoch, train_step, validate, out_dir, resume=resume,
                          progress=progress, stop_after_epochs=stop_after_epochs, dist=d)
