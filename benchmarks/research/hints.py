"""Opt-in feature-map hints for online distillation (FitNets, Romero et al. 2015).

A student matching four logits per view learns little; feature maps give it thousands of numbers.
For each ``student_tap:teacher_tap`` pair of ``kd_spatial`` (default ``b4:s4,merged:s5``: EmoNet's
block-4 map against MobileNetV2's stage s4, the merged map against stage s5) a 1×1 conv regressor
(trained with the student, then dropped) maps the student's channels to the teacher's, the
teacher's map is average-pooled to the student's grid, and :class:`FeatureHint` compares unit-length
channel vectors position by position.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from emoadapt.adapt.config import ConfigError
from emoadapt.data.transforms import rgb_to_grey


def spatial_pairs(spec: str) -> list[tuple[str, str]]:
    """``"b4:s4,merged:s5"`` → ``[("b4", "s4"), ("merged", "s5")]`` (student tap, teacher tap)."""
    pairs = []
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        student, sep, teacher = item.partition(":")
        if not sep or not student or not teacher:
            raise ConfigError(f"kd_spatial: expected student_tap:teacher_tap pairs, got {item!r}")
        pairs.append((student.strip(), teacher.strip()))
    if not pairs:
        raise ConfigError("kd_spatial names no student_tap:teacher_tap pair")
    return pairs


def teacher_taps(spec: str) -> tuple[str, ...]:
    """The teacher feature maps a ``kd_spatial`` spec compares, each once, in order:
    ``"b3:s4,b4:s4,merged:s5"`` → ``("s4", "s5")``."""
    return tuple(dict.fromkeys(teacher for _, teacher in spatial_pairs(spec)))


class FeatureHint(nn.Module):
    """Feature-map hint loss for one tap pair.

    ``forward(student (N, Cs, h, w), teacher (N, Ct, H, W))``: a 1×1 conv maps the student's map to
    Ct channels, the teacher's map is average-pooled to (h, w), both are made unit length over
    channels at each position, and the squared distance (0 … 4; 2 − 2·cosine) is averaged over
    positions and views. A scalar.
    """

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__()
        self.regressor = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        mapped = F.normalize(self.regressor(student), dim=1)
        target = F.normalize(F.adaptive_avg_pool2d(teacher, student.shape[-2:]), dim=1)
        return (mapped - target).pow(2).sum(1).mean()


def feature_hints(model: nn.Module, teacher, pairs: list[tuple[str, str]], seed: int) -> nn.ModuleDict:
    """One :class:`FeatureHint` per (student tap, teacher tap) pair, sized by one probe view of
    ``teacher`` (an :class:`~research.distill.OnlineTeacher`), initialised from ``seed``;
    keys ``"student->teacher"``."""
    probe = torch.rand(1, 3, teacher.size, teacher.size)
    with torch.no_grad():
        was_training = model.training
        model.eval()
        small = F.interpolate(probe, size=model.config.input_size, mode="bilinear")
        student = model.forward_taps(rgb_to_grey(small) if model.config.in_chans == 1 else small,
                                     tuple(s for s, _ in pairs))
        model.train(was_training)
        taught = teacher.predict(probe)
    for s, t in pairs:
        if student[s].dim() != 4 or t not in taught or taught[t].dim() != 4:
            raise ConfigError(f"kd_spatial pair {s}:{t} needs a feature map on both sides "
                              f"(student {tuple(student[s].shape)}, "
                              f"teacher {tuple(taught[t].shape) if t in taught else 'none'})")
    torch.manual_seed(seed)
    return nn.ModuleDict({f"{s}->{t}": FeatureHint(student[s].shape[1], taught[t].shape[1]) for s, t in pairs})
