"""The options of a distillation run: :class:`DistillConfig` is emoadapt's :class:`AdaptConfig`
plus the teacher's terms, and :func:`build_student` the start model with an optional new dense
layer (``dense``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from emoadapt.adapt.config import IMAGENET_INIT, AdaptConfig, ConfigError, check
from emoadapt.adapt.start import build_start_model, grey_to_rgb
from emoadapt.data.labels import IER_CLASSES
from emoadapt.models.emonet import EmoNet
from emoadapt.models.registry import build_from_config, load_model


@dataclass
class DistillConfig(AdaptConfig):
    """:class:`AdaptConfig` plus distillation from a teacher (stored in the run's checkpoints)."""

    teacher: str = ""  # the IER model that teaches (a weights file or a shipped model name)
    kd_weight: float = 0.0  # weight β of T²·KL(teacher_T ‖ student_T)
    kd_temperature: float = 2.0  # softmax temperature T
    kd_hint_weight: float = 0.0  # weight γ of MSE(student pre-logits, teacher hint tap)
    kd_hint_tap: str = "pre_logits"  # pre_logits or features (the teacher's pooled last conv map)
    dense: int = 0  # with a FER checkpoint as init: its dense layers replaced by one new layer this wide
    kd_mode: str = "bank"  # bank (a fixed bank of `views` views labelled once) or online (fresh crops)
    mixup: float = 0.0  # online: Beta(mixup, mixup) blend of two crops for the unlabelled views
    kd_spatial_weight: float = 0.0  # online: weight δ of the feature-map hint (hints.py)
    kd_spatial: str = "b4:s4,merged:s5"  # online: student_tap:teacher_tap pairs of that hint

    @property
    def distilling(self) -> bool:
        """Whether a teacher's terms are in the loss: a KD, hint or feature-map hint weight above 0."""
        return self.kd_weight > 0 or self.kd_hint_weight > 0 or self.kd_spatial_weight > 0


def check_distill(cfg: DistillConfig) -> None:
    """Refuse option values no distillation protocol accepts (:class:`ConfigError`, one line each)."""
    check(cfg)
    if cfg.kd_mode not in ("bank", "online"):
        raise ConfigError(f"kd_mode must be bank or online, got {cfg.kd_mode!r}")
    if cfg.kd_hint_tap not in ("pre_logits", "features"):
        raise ConfigError(f"kd_hint_tap must be pre_logits or features, got {cfg.kd_hint_tap!r}")
    if cfg.kd_spatial_weight > 0 and cfg.kd_mode != "online":
        raise ConfigError("the feature-map hint (kd_spatial_weight > 0) needs kd_mode=online")
    if cfg.distilling and cfg.kd_mode == "online" and cfg.kd_hint_weight > 0 and cfg.kd_hint_tap != "pre_logits":
        raise ConfigError("online distillation hints on the teacher's pre_logits only")


def adapt_config(cfg: AdaptConfig) -> AdaptConfig:
    """The plain :class:`AdaptConfig` part of ``cfg``."""
    from dataclasses import fields

    return AdaptConfig(**{f.name: getattr(cfg, f.name) for f in fields(AdaptConfig)})


def build_student(cfg: DistillConfig) -> nn.Module:
    """:func:`emoadapt.adapt.start.build_start_model`, or with ``dense``: the FER checkpoint's dense
    layers replaced by one fresh layer of that width (conv layers kept; new layers from ``cfg.seed``)."""
    if not cfg.dense:
        return build_start_model(adapt_config(cfg))
    if cfg.init == IMAGENET_INIT or cfg.head == "mapped":
        raise ConfigError("dense replaces a FER checkpoint's dense layers: it needs a FER --init and head=new")
    torch.manual_seed(cfg.seed)
    fer_model, _ = load_model(cfg.init)
    config = dict(fer_model.config.to_dict(), input_size=cfg.input_size, hidden=[cfg.dense])
    state = {k: v for k, v in fer_model.state_dict().items() if not k.startswith(("dense.", "classifier."))}
    model = build_from_config(config)
    missing, _ = model.load_state_dict(state, strict=False)
    assert all(k.startswith(("dense.", "classifier.")) for k in missing), missing
    if cfg.rgb and isinstance(model, EmoNet) and model.config.in_chans == 1:
        model = grey_to_rgb(model)
    model.reset_classifier(len(IER_CLASSES))
    return model


def hidden_width(model: nn.Module) -> int:
    """Width of the pre-logits layer (the classifier's input)."""
    classifier = model.classifier[-1] if isinstance(model.classifier, nn.Sequential) else model.classifier
    return classifier.in_features


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft-target loss: T² · KL(softmax(teacher/T) ‖ softmax(student/T)), mean over rows.

    Args:
        student_logits, teacher_logits: (n, classes).
    """
    if len(student_logits) == 0:
        return student_logits.sum() * 0.0
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t
