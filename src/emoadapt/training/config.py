"""Optimisation settings of a supervised training run (torch-free: the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass


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
    ema: float = 0.0  # decay of a weight average that picks and ships the best epoch (0 = off)
