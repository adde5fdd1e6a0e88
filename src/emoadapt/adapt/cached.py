"""The cached-feature protocols: adaptation on activations computed once.

On a 2-core CPU the frozen part of the network is run once per image and view (``encode_views``),
and only the layers after the frozen tap train, with the full adaptation loss, on the cache:
``freeze=features`` trains the dense head on pooled features (seconds per epoch); a MobileNetV2
stage ``s1``…``s4`` caches that stage's maps and fine-tunes the later stages. The views are the
only augmentation (:mod:`emoadapt.adapt.views`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.labels import IER_CLASSES
from ..data.transforms import match_channels, uint8_to_tensor
from ..models.mobilenetv2 import STAGE_ENDS, MobileNetV2
from ..training.metrics import classification_report
from .config import AdaptConfig, ConfigError, uses_source
from .loop import fit_adaptation, target_batch
from .losses import adaptation_loss, pooled
from .start import frozen_modules
from .views import crop_boxes, render_views


def cached_tap(model: nn.Module, cfg: AdaptConfig) -> str | None:
    """The activation the cached protocol stores (``features`` or a MobileNetV2 stage), or
    ``None`` when every step runs the whole network (``freeze=none``, EmoNet blocks)."""
    if cfg.freeze == "features":
        return "features"
    if isinstance(model, MobileNetV2) and cfg.freeze in STAGE_ENDS and cfg.freeze != "s5":
        return cfg.freeze
    return None


@torch.no_grad()
def encode(model: nn.Module, images: np.ndarray, batch_size: int = 64, flip: bool = False,
           progress: bool = False, tap: str = "features") -> torch.Tensor:
    """Frozen activations of uint8 images (N, S, S, C). ``tap="features"``: what
    :meth:`forward_head` expects — (N, C', 1, 1) spatial means for pooling heads, the full
    (N, C', s, s) map for a flatten head. A MobileNetV2 stage (``s1``…``s4``): its output map."""
    from tqdm import tqdm

    model.eval()
    pooled_head = getattr(model.config, "head", "pool") == "pool"
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="encoding", disable=not progress, leave=False):
        x = uint8_to_tensor(images[start:start + batch_size])
        x = x.flip(3) if flip else x
        if tap == "features":
            features = model.forward_features(x)
            out.append(features.mean(dim=(2, 3), keepdim=True) if pooled_head else features)
        else:
            out.append(model.forward_to(tap, x))
    return torch.cat(out)


def encode_views(model: nn.Module, xt: np.ndarray, xv: np.ndarray, xs: np.ndarray | None, *, tap: str = "features",
                 views: int = 2, seed: int = 0, progress: bool = False) -> dict[str, torch.Tensor | None]:
    """Frozen activations at ``tap`` of the target-train images (``views`` views, stacked as
    (V, N, …): as is, mirrored, then random resized crops from ``seed``), the source images
    (as is and mirrored: (2, N_s, …); ``None`` when ``xs`` is ``None``) and the validation
    images (1 view)."""
    target = [encode(model, xt, progress=progress, tap=tap)]
    if views >= 2:
        target.append(encode(model, xt, flip=True, progress=progress, tap=tap))
    if views > 2:
        boxes = crop_boxes(len(xt), views, seed)[2:]
        for v in range(len(boxes)):
            rendered = render_views(xt, boxes[v:v + 1], xt.shape[1])[0]
            target.append(encode(model, rendered, progress=progress, tap=tap))
    return {"target": torch.stack(target),
            "source": None if xs is None else torch.stack([
                encode(model, match_channels(xs, xt.shape[-1]), progress=progress, tap=tap),
                encode(model, match_channels(xs, xt.shape[-1]), flip=True, progress=progress, tap=tap)]),
            "val": encode(model, xv, progress=progress, tap=tap)}


def head_from(model: nn.Module, tap: str, activation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pre-logits hidden) from a cached activation at ``tap`` (see :func:`encode`)."""
    if tap != "features":  # a MobileNetV2 stage: run the stages after it (EmoNet caches "features")
        activation = model.features_from(tap, activation)
    hidden = model.forward_head(activation, pre_logits=True)
    return model.forward_from("pre_logits", hidden, {}), hidden


def source_needed(cfg: AdaptConfig, tap: str) -> bool:
    """Whether the cached protocol at ``tap`` puts source faces in its batches (the head-only
    protocol always does, as in the recorded ablation)."""
    return uses_source(cfg, always=tap == "features")


def train_cached(model: nn.Module, tap: str, optimizer: torch.optim.Optimizer, discrepancy: nn.Module,
                 views: dict[str, torch.Tensor], yt: np.ndarray, yv: np.ndarray, ys: np.ndarray, cfg: AdaptConfig,
                 out_dir: str | Path, *, resume: bool, progress: bool, stop_after_epochs: int | None,
                 classes: tuple[str, ...] = IER_CLASSES) -> dict:
    """Train the layers after ``tap`` on ``views`` (from :func:`encode_views` on the same start
    model) with the full adaptation loss; ``ys`` are IER indices (−1: no IER class); ``classes``
    name the target labels (the IER classes, or a user's own label set)."""
    views_t, views_s, val_features = views["target"], views["source"], views["val"]
    xt_count, xs_count = views_t.shape[1], len(ys)  # the random stream is the same whether or not
    # the source faces were encoded (they are not when no term uses them)
    steps_per_epoch = math.ceil(xt_count / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    order: dict[str, np.ndarray] = {}
    # the head-only protocol puts faces in every batch when they were encoded; without them (a user's
    # own classes) it trains on the target alone, unless a loss term needs the faces
    use_source = source_needed(cfg, tap) and (views_s is not None or uses_source(cfg, always=False))
    if use_source and views_s is None:
        raise ConfigError("this configuration needs the source faces' cached activations")

    frozen = frozen_modules(model, cfg.freeze)

    def train_step(epoch: int, step: int, generator: torch.Generator):
        t_index = torch.as_tensor(target_batch(order, xt_count, frozen, step, cfg.batch_size, generator))
        s_index = torch.randint(max(xs_count, 1), (len(t_index),), generator=generator)
        t_view = torch.randint(views_t.shape[0], (len(t_index),), generator=generator)
        s_view = torch.randint(2, (len(s_index),), generator=generator)
        if not use_source:  # drawn all the same, so that the random stream does not depend on it
            s_index, s_view = s_index[:0], s_view[:0]
        features = torch.cat([views_t[t_view, t_index], views_s[s_view, s_index]]) if use_source \
            else views_t[t_view, t_index]
        logits, hidden = head_from(model, tap, features)
        compared = [hidden if name.strip() == "pre_logits" else features for name in cfg.layer.split(",")]
        progress_now = (epoch * steps_per_epoch + step) / max(1, total_steps)
        return adaptation_loss(logits, [pooled(f) for f in compared], torch.as_tensor(yt[t_index.numpy()]),
                               torch.as_tensor(ys[s_index.numpy()]), progress_now, cfg, discrepancy)

    @torch.no_grad()
    def validate() -> dict:
        model.eval()
        probs = torch.cat([head_from(model, tap, chunk)[0] for chunk in val_features.split(256)]).softmax(1).numpy()
        return classification_report(yv, probs, classes)

    return fit_adaptation(model, optimizer, cfg, steps_per_epoch, train_step, validate, out_dir, resume=resume,
                          progress=progress, stop_after_epochs=stop_after_epochs, classes=classes)
