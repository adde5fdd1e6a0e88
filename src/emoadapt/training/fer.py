"""``emoadapt train-fer``: train a FER network on FER2013's official splits
(Training → fit, PublicTest → model selection, PrivateTest → reported once by ``evaluate``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.arrays import load_arrays
from ..data.fer2013 import read_fer2013
from ..data.labels import FER_CLASSES
from ..data.locate import dataset_path
from ..models.registry import build_from_config, get_preset, load_imagenet_init
from .loop import TrainConfig, fit


def subsample(images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int = 0):
    """At most ``limit`` items, chosen by a seeded permutation (for quick runs and tests)."""
    if limit is None or limit >= len(labels):
        return images, labels
    keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:limit])
    return images[keep], labels[keep]


def train_fer(out_dir: str | Path, *, preset: str = "fer-cpu", data_root: str | Path | None = None,
              cfg: TrainConfig | None = None, resume: bool = False, limit: int | None = None,
              progress: bool = True, stop_after_epochs: int | None = None, dist=None, amp: bool = False) -> dict:
    """Train preset ``preset`` on FER2013 and write checkpoints to ``out_dir`` (see :func:`fit`;
    ``dist`` and ``amp``: data-parallel ranks and mixed precision, :mod:`emoadapt.training.distributed`)."""
    cfg = cfg or TrainConfig()
    spec = get_preset(preset)
    model_config = dict(spec.config, num_classes=len(FER_CLASSES))
    model = build_from_config(model_config)
    if spec.extra.get("imagenet_init"):  # a resumed run overwrites these with its checkpoint
        load_imagenet_init(model)
    dataset = read_fer2013(data_root or dataset_path("fer2013"))
    size, channels = model_config["input_size"], model_config["in_chans"]
    train = load_arrays(dataset.split("Training"), size, channels, progress=progress)
    val = load_arrays(dataset.split("PublicTest"), size, channels, progress=progress)
    train_x, train_y = subsample(train.images, train.labels, limit, cfg.seed)
    val_x, val_y = subsample(val.images, val.labels, limit, cfg.seed)
    return fit(model, train_x, train_y, val_x, val_y, FER_CLASSES, cfg, out_dir, model_config=model_config,
               resume=resume, progress=progress, stop_after_epochs=stop_after_epochs, dist=dist, amp=amp,
               extra_meta={"preset": preset, "data": "FER2013 Training (fit), PublicTest (selection)",
                           "train_n": int(len(train_y)), "val_n": int(len(val_y))})
