"""``emoadapt adapt``: adapt a FER network to generic images, same architecture (SPEC §3).

    L = CE(target images, 4 IER classes) + α · CE(source faces, 4 mapped classes) + λ(p) · D(f_S, f_T)

Each step draws a target batch and a source batch of the same size and runs them through the
network together; ``f`` are the activations at ``layer`` (spatially averaged when it is a map);
``D`` is one of :data:`emoadapt.adapt.losses.DISCREPANCIES`; ``λ(p)`` is constant or ramps up as
``λ · (2 / (1 + exp(−10 p)) − 1)`` with training progress ``p`` ∈ [0, 1] (DANN's schedule), so
the discrepancy does not pull features together before they carry class information.
Source faces whose FER class has no IER class (fear, neutral, surprise) feed ``D`` only.

The method reads top to bottom in: :mod:`~emoadapt.adapt.config` (options),
:mod:`~emoadapt.adapt.start` (start model), :mod:`~emoadapt.adapt.losses` (the loss),
:mod:`~emoadapt.adapt.loop` (the full-network trainer) and :mod:`~emoadapt.adapt.cached` (the
cached-feature protocols). :func:`adapt` picks the trainer from the configuration
(:func:`~emoadapt.adapt.config.protocol`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.labels import IER_CLASSES, fer_to_ier_indices
from .cached import cached_tap, encode_views, source_needed, train_cached
from .config import AdaptConfig, ConfigError, Protocol, protocol
from .loop import train_joint
from .probe import probe_head
from .losses import make_discrepancy
from .start import build_start_model, make_optimizer


def adapt(target_train: tuple[np.ndarray, np.ndarray], target_val: tuple[np.ndarray, np.ndarray],
          source: tuple[np.ndarray, np.ndarray], cfg: AdaptConfig, out_dir: str | Path, *, resume: bool = False,
          progress: bool = True, stop_after_epochs: int | None = None, model: nn.Module | None = None,
          cached: dict[str, torch.Tensor] | None = None, dist=None, amp: bool = False,
          classes: tuple[str, ...] | None = None) -> dict:
    """Adapt on uint8 arrays (N, S, S, C): target labels are IER indices, source labels FER indices.

    Writes ``best.safetensors`` (best target-validation accuracy), ``last.safetensors``, ``log.jsonl``
    to ``out_dir``; returns the run state (history, best record). The protocol follows from ``cfg``
    (:class:`~emoadapt.adapt.config.Protocol`): in the cached protocols, ``cached`` (from
    :func:`~emoadapt.adapt.cached.encode_views` on the same start model) skips the encoding, so
    that several runs (an ablation, several seeds) share it.

    ``dist`` (several torchrun ranks) and ``amp`` (mixed precision on CUDA) are for the joint
    (full-network) trainer; the cached protocols run in one process."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = model if model is not None else build_start_model(cfg)
    tap = cached_tap(model, cfg)
    chosen = protocol(cfg, tap)
    (xt, yt), (xv, yv), (xs, ys_fer) = target_train, target_val, source
    if (dist is not None and dist.active or amp) and chosen is not Protocol.JOINT:
        raise ConfigError(f"several torchrun ranks and --amp are for the full-network (joint) trainer; this "
                          f"configuration trains with the {chosen.value} protocol, which runs in one process "
                          "(it trains on cached features and is fast on one machine)")
    if cfg.head == "probe" and not (resume and (Path(out_dir) / "last.safetensors").exists()):
        c = probe_head(model, xt, yt, seed=cfg.seed)
        if progress:
            print(f"LP-FT: linear probe fitted on {len(xt)} training images (C = {c}); fine-tuning starts from it")
    optimizer = make_optimizer(model, cfg)
    discrepancy = make_discrepancy(cfg.discrepancy)
    ys = fer_to_ier_indices(ys_fer)
    run = dict(resume=resume, progress=progress, stop_after_epochs=stop_after_epochs)
    if chosen is Protocol.CACHED:
        if cached is None:
            cached = encode_views(model, xt, xv, xs if source_needed(cfg, tap) else None, tap=tap, views=cfg.views,
                                  seed=0, progress=progress)
        return train_cached(model, tap, optimizer, discrepancy, cached, yt, yv, ys, cfg, out_dir, **run,
                            classes=tuple(classes or IER_CLASSES))
    return train_joint(model, optimizer, discrepancy, target_train, target_val, (xs, ys), cfg, out_dir, **run,
                       dist=dist, amp=amp)
