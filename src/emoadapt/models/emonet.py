"""The paper's network (SPEC §2): VGG-16 blocks B1–B5, residual branches R1–R4 from the pooled
outputs of B1–B4, all five summed, then a head.

Shapes for the ``paper`` preset (224 px RGB): B1 → (64, 112, 112), B2 → (128, 56, 56),
B3 → (256, 28, 28), B4 → (512, 14, 14), B5 → (512, 7, 7). Branch Rk max-pools the output of Bk to
twice the B5 size (14 × 14), applies a 3×3 conv to the B5 width + ReLU + 2×2 max-pool → (512, 7, 7).
``merged`` = B5 + R1 + R2 + R3 + R4. Head ``flatten``: flatten → dense 2048 → dense 2048 → classes;
head ``pool``: global average pool → optional dense layers → classes.

Named taps (for layer-wise explanations and embeddings): ``b1``…``b5`` (pooled block outputs),
``merged``, ``pre_logits`` (input of the last linear layer) and ``logits``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from ..errors import EmoadaptError

BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
TAPS = ("b1", "b2", "b3", "b4", "b5", "merged", "pre_logits", "logits")


@dataclass(frozen=True)
class EmoNetConfig:
    """Everything needed to rebuild an :class:`EmoNet` (stored beside every checkpoint).

    Attributes:
        num_classes: outputs of the last layer.
        in_chans: 1 (grey) or 3 (RGB) input channels.
        input_size: square input side in pixels (must be ≥ 32).
        width: channel multiplier on VGG-16's 64-128-256-512-512.
        batch_norm: BatchNorm after every conv (the paper has none).
        head: ``"flatten"`` (paper) or ``"pool"`` (global average pooling).
        hidden: widths of the dense layers before the classifier (paper: 2048, 2048).
        dropout: dropout before each dense layer (paper: 0).
        residual: use the R1–R4 branches (the paper does).
        mean, std: per-channel normalisation applied inside the model to inputs in [0, 1]
            (paper: /255 only, i.e. mean 0, std 1).
    """

    num_classes: int = 7
    in_chans: int = 3
    input_size: int = 224
    width: float = 1.0
    batch_norm: bool = False
    head: str = "flatten"
    hidden: tuple[int, ...] = (2048, 2048)
    dropout: float = 0.0
    residual: bool = True
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    arch: str = field(default="emonet", init=False)

    def to_dict(self) -> dict:
        return asdict(self)


def _max_pool_to(in_side: int, out_side: int) -> nn.Module:
    """Max-pool an (in_side × in_side) map to (out_side × out_side).

    A plain ``MaxPool2d`` when its windows equal those of ``AdaptiveMaxPool2d`` (always when
    ``in_side`` is a multiple of ``out_side``; also e.g. 3 → 2 with kernel 2, stride 1), because
    ONNX has no adaptive max-pool with uneven windows; ``AdaptiveMaxPool2d`` otherwise.
    """
    stride = max(1, in_side // out_side)
    kernel = in_side - (out_side - 1) * stride
    adaptive = [(i * in_side // out_side, -(-(i + 1) * in_side // out_side)) for i in range(out_side)]
    if kernel > 0 and adaptive == [(i * stride, i * stride + kernel) for i in range(out_side)]:
        return nn.MaxPool2d(kernel, stride)
    return nn.AdaptiveMaxPool2d(out_side)


def _conv(cin: int, cout: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


class EmoNet(nn.Module):
    """B1–B5 + R1–R4 + sum + head. Input: (N, in_chans, S, S) float in [0, 1]. Output: logits (N, K)."""

    def __init__(self, config: EmoNetConfig):
        super().__init__()
        if config.input_size < 32:
            raise EmoadaptError(f"input_size must be at least 32 (five 2x2 poolings), got {config.input_size}")
        if config.head not in ("flatten", "pool"):
            raise EmoadaptError(f"head must be 'flatten' or 'pool', got {config.head!r}")
        self.config = config
        widths = [max(8, round(c * config.width)) for _, c in BLOCKS]
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)

        self.blocks = nn.ModuleList()
        cin = config.in_chans
        for (n_convs, _), cout in zip(BLOCKS, widths):
            layers: list[nn.Module] = []
            for i in range(n_convs):
                layers += _conv(cin if i == 0 else cout, cout, config.batch_norm)
            layers.append(nn.MaxPool2d(2))
            self.blocks.append(nn.Sequential(*layers))
            cin = cout

        sides = [config.input_size // 2 ** (k + 1) for k in range(len(BLOCKS))]  # pooled B1..B5 sides
        side = sides[4]
        self.feature_size = side  # spatial side of B5 / merged
        self.branches = nn.ModuleList()
        if config.residual:
            for cout, block_side in zip(widths[:4], sides[:4]):
                self.branches.append(nn.Sequential(
                    _max_pool_to(block_side, 2 * side),
                    *_conv(cout, widths[4], config.batch_norm),
                    nn.MaxPool2d(2),
                ))

        features = widths[4] * side * side if config.head == "flatten" else widths[4]
        dense: list[nn.Module] = []
        for hidden in config.hidden:
            if config.dropout > 0:
                dense.append(nn.Dropout(config.dropout))
            dense += [nn.Linear(features, hidden), nn.ReLU(inplace=True)]
            features = hidden
        self.dense = nn.Sequential(*dense)
        self.num_features = features
        self.head_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(features, config.num_classes)
        self.taps = TAPS

    # --- the feature / head split --------------------------------------------------------
    def forward_taps(self, x: torch.Tensor, taps: tuple[str, ...] = TAPS) -> dict[str, torch.Tensor]:
        """Run the network once and return the requested named activations."""
        out: dict[str, torch.Tensor] = {}
        h = (x - self.mean) / self.std
        pooled = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            pooled.append(h)
            out[f"b{i + 1}"] = h
        out["merged"] = self._merge(pooled)
        out["pre_logits"] = self.forward_head(out["merged"], pre_logits=True)
        out["logits"] = self.classifier(self.head_dropout(out["pre_logits"]))
        return {name: out[name] for name in taps}

    def _merge(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        merged = pooled[4]
        for branch, h in zip(self.branches, pooled[:4]):
            merged = merged + branch(h)
        return merged

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) in [0, 1] → merged feature map (N, C5, s, s)."""
        h = (x - self.mean) / self.std
        pooled = []
        for block in self.blocks:
            h = block(h)
            pooled.append(h)
        return self._merge(pooled)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Merged map → logits (N, K), or the input of the classifier (N, F) when ``pre_logits``."""
        h = features.flatten(1) if self.config.head == "flatten" else features.mean(dim=(2, 3))
        h = self.dense(h)
        return h if pre_logits else self.classifier(self.head_dropout(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_from(self, tap: str, activation: torch.Tensor, context: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits from a (possibly edited) activation at ``tap``.

        Args:
            tap: one of ``b1``…``b5``, ``merged``, ``pre_logits``.
            activation: (N, …) the activation at ``tap``.
            context: activations of the earlier taps for the same image (batch 1 or N), from
                :meth:`forward_taps`; the residual branches of earlier blocks read them.
        """
        if tap in ("pre_logits",):
            return self.classifier(activation)
        if tap == "merged":
            return self.forward_head(activation)
        if tap not in TAPS[:5]:
            raise EmoadaptError(f"unknown tap {tap!r}; choose from {', '.join(TAPS[:-1])}")
        start = int(tap[1:])
        n = activation.shape[0]
        pooled = [context[f"b{i + 1}"].expand(n, *context[f"b{i + 1}"].shape[1:]) for i in range(start - 1)]
        pooled.append(activation)
        h = activation
        for block in self.blocks[start:]:
            h = block(h)
            pooled.append(h)
        return self.forward_head(self._merge(pooled))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last layer with a freshly initialised one with ``num_classes`` outputs."""
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.config = replace(self.config, num_classes=num_classes)



def emonet_from_dict(data: dict) -> EmoNet:
    data = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k != "arch"}
    return EmoNet(EmoNetConfig(**data))
