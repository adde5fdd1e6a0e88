"""The network adaptation starts from, what of it is frozen, and its optimizer.

A FER checkpoint (or ImageNet MobileNetV2) becomes a 4-class IER network of the requested input
size: a fresh classifier (``head=new``) or the FER rows happy, sad, disgust, angry (``mapped``);
a grey EmoNet is given RGB input without changing its output on grey images.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.labels import FER_CLASSES, IER_CLASSES, fer_classes_in_ier_order
from ..models.efficientnet_lite import EfficientNetLite, EfficientNetLiteConfig
from ..models.efficientnet_lite import load_imagenet_backbone as load_imagenet_lite
from ..models.emonet import EmoNet
from ..models.mobilenetv2 import STAGE_ENDS, MobileNetV2, MobileNetV2Config, load_imagenet_backbone
from ..models.registry import build_from_config, load_model
from .config import EMONET_BLOCKS, IMAGENET_INIT, IMAGENET_LITE_INITS, AdaptConfig, ConfigError


def build_start_model(cfg: AdaptConfig) -> nn.Module:
    """The network adaptation starts from, with a 4-class IER head and the requested input.
    New layers are initialised from ``cfg.seed``, so a run is repeatable."""
    torch.manual_seed(cfg.seed)
    if cfg.init in (IMAGENET_INIT, *IMAGENET_LITE_INITS):
        if cfg.head in ("mapped", "keep"):
            raise ConfigError(f"--head {cfg.head} needs a trained checkpoint as --init, not {cfg.init}")
        hidden = (cfg.bottleneck,) if cfg.bottleneck else ()
        if cfg.init == IMAGENET_INIT:
            config = MobileNetV2Config(num_classes=len(IER_CLASSES), input_size=cfg.input_size, hidden=hidden)
            return load_imagenet_backbone(MobileNetV2(config))
        config = EfficientNetLiteConfig(variant=IMAGENET_LITE_INITS[cfg.init], num_classes=len(IER_CLASSES),
                                        input_size=cfg.input_size, hidden=hidden)
        return load_imagenet_lite(EfficientNetLite(config))
    fer_model, extra = load_model(cfg.init)
    classes = tuple(extra.get("classes", FER_CLASSES))
    config = dict(fer_model.config.to_dict(), input_size=cfg.input_size)
    if isinstance(fer_model, EmoNet) and config["head"] == "flatten" and cfg.input_size != fer_model.config.input_size:
        raise ConfigError("a flatten-head EmoNet only runs at its training size; pass --input-size "
                          f"{fer_model.config.input_size}")
    model = build_from_config(config)
    model.load_state_dict(fer_model.state_dict())
    if cfg.rgb and isinstance(model, EmoNet) and model.config.in_chans == 1:
        model = grey_to_rgb(model)
    if cfg.head == "probe":
        raise ConfigError("--head probe starts from an ImageNet backbone (--init imagenet-lite0 …)")
    if cfg.head == "keep":
        if tuple(extra.get("classes", ())) != IER_CLASSES:
            raise ConfigError(f"--head keep needs an IER model (classes {', '.join(IER_CLASSES)}) as --init, got "
                              f"classes {extra.get('classes')}")
        return model
    old = model.classifier if isinstance(model, EmoNet) else model.classifier[-1]
    model.reset_classifier(len(IER_CLASSES))
    if cfg.head == "mapped":
        new = model.classifier if isinstance(model, EmoNet) else model.classifier[-1]
        rows = [classes.index(fer) for fer in fer_classes_in_ier_order()]
        with torch.no_grad():
            new.weight.copy_(old.weight[rows])
            new.bias.copy_(old.bias[rows])
    return model


def grey_to_rgb(model: EmoNet) -> EmoNet:
    """Same network on RGB input: conv1 weights replicated / 3, so an RGB image whose three channels
    are equal gives exactly the grey model's output (normalisation mean/std are replicated)."""
    config = dict(model.config.to_dict(), in_chans=3, mean=model.config.mean * 3 if len(model.config.mean) == 1
                  else model.config.mean, std=model.config.std * 3 if len(model.config.std) == 1 else model.config.std)
    state = model.state_dict()
    first = "blocks.0.0.weight"
    state[first] = state[first].repeat(1, 3, 1, 1) / 3
    rgb = build_from_config(config)
    rgb.load_state_dict(state)
    return rgb


def frozen_modules(model: nn.Module, upto: str) -> list[nn.Module]:
    """The modules that compute taps up to and including ``upto`` (``none`` → nothing)."""
    if upto == "none":
        return []
    if upto == "features":
        return [m for name, m in model.named_children() if name in ("blocks", "branches", "features")]
    if isinstance(model, EmoNet):
        if upto not in EMONET_BLOCKS:
            raise ConfigError(f"--freeze for this network: none or b1…b5, got {upto!r}")
        count = int(upto[1:])
        return list(model.blocks[:count]) + list(model.branches[:max(0, count - 1)] if count == 5 else [])
    if upto not in STAGE_ENDS:
        raise ConfigError(f"--freeze for mobilenetv2: none or {', '.join(STAGE_ENDS)}, got {upto!r}")
    return list(model.features[:STAGE_ENDS[upto]])


def param_groups(model: nn.Module, cfg: AdaptConfig, frozen: list[nn.Module]) -> list[dict]:
    """Freeze ``frozen``; the classifier learns at ``lr``, the rest at ``lr · backbone_lr_scale``."""
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    head_ids = {id(p) for p in (model.classifier.parameters())}
    head = [p for p in model.parameters() if id(p) in head_ids]
    body = [p for p in model.parameters() if id(p) not in head_ids and id(p) not in frozen_ids]
    return [{"params": body, "lr_scale": cfg.backbone_lr_scale}, {"params": head, "lr_scale": 1.0}]


def make_optimizer(model: nn.Module, cfg: AdaptConfig) -> torch.optim.Optimizer:
    """AdamW over :func:`param_groups`, after freezing ``cfg.freeze``."""
    frozen = frozen_modules(model, cfg.freeze)
    return torch.optim.AdamW(param_groups(model, cfg, frozen), lr=cfg.lr, weight_decay=cfg.weight_decay)

