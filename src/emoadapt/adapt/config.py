"""Every option of an adaptation run, its help text and its checks, in one torch-free place.

The CLI builds ``emoadapt adapt``'s flags from :class:`AdaptConfig` (name, default, type and the
``help`` metadata of each field), so a default is written once. :func:`protocol` names the trainer
a configuration selects — from its fields and the start model, never from the type of an argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import Enum

from ..errors import EmoadaptError

IMAGENET_INIT = "imagenet-mobilenetv2"
#: ImageNet EfficientNet-Lite start models (a new head; the scene branch's backbone), ``--init`` names.
IMAGENET_LITE_INITS = {"imagenet-lite0": "lite0", "imagenet-lite1": "lite1", "imagenet-lite2": "lite2"}
#: MobileNetV2 stages whose activations the cached protocol can store (``s5`` is the last one).
MOBILENET_STAGES = ("s1", "s2", "s3", "s4", "s5")
EMONET_BLOCKS = ("b1", "b2", "b3", "b4", "b5")
DISCREPANCY_NAMES = ("mmd", "linear-mmd", "coral", "none")


class ConfigError(EmoadaptError):
    """An adaptation option is out of range, or options that cannot go together were combined."""


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class AdaptConfig:
    """Every option of an adaptation run (stored in its checkpoints). Each field's ``help``
    metadata is its documentation (and ``emoadapt adapt --help``'s text).

    The paper's method: plain fine-tuning plus the discrepancy; ``ema`` keeps a moving average of
    the weights (:mod:`emoadapt.training.ema`). The field order is the stored order: keep it.
    (Distillation from a teacher, which trained no shipped model, is research code in
    benchmarks/research/, whose ``DistillConfig`` extends this class.)
    """

    init: str = _opt(IMAGENET_INIT, "start model: a FER weights file, imagenet-mobilenetv2 (ImageNet MobileNetV2, "
                                    "new head) or imagenet-lite0/1/2 (ImageNet EfficientNet-Lite, new head)")
    input_size: int = _opt(128, "input side in px of the adapted model (pool-head EmoNets run at any size)")
    rgb: bool = _opt(True, "give a grey EmoNet RGB input (first conv replicated / 3: grey images give the same "
                           "output)")
    head: str = _opt("new", "new (a fresh 4-class layer), mapped (the FER rows happy, sad, disgust, angry), keep "
                            "(an IER model's own trained head) or probe (LP-FT: the fresh linear layer is first "
                            "fitted as a logistic-regression probe on the frozen features of the training images, "
                            "then everything is fine-tuned)")
    discrepancy: str = _opt("mmd", "discrepancy D between face and image features: mmd, linear-mmd, coral or none")
    lam: float = _opt(1.0, "weight λ of the discrepancy term")
    lam_schedule: str = _opt("ramp", "ramp (DANN: λ·(2/(1+exp(−10p))−1) with progress p) or constant")
    alpha: float = _opt(0.5, "weight α of the source classification term (0 = no source CE)")
    layer: str = _opt("pre_logits", "tap(s) whose activations D compares, comma-separated (e.g. merged,pre_logits "
                                    "sums D over both)")
    freeze: str = _opt("none", "freeze the network up to and including this tap: none, b1…b5 (EmoNet), s1…s5 "
                               "(MobileNetV2; s1…s4 cache their activations), or features (train only the dense "
                               "head on cached features: the fast CPU protocol)")
    epochs: int = _opt(12, "training epochs")
    batch_size: int = _opt(32, "target images per step (as many source faces join them)")
    lr: float = _opt(1e-3, "peak learning rate of the classifier (AdamW; warm-up, then cosine)")
    backbone_lr_scale: float = _opt(0.1, "learning-rate factor for everything except the classifier")
    weight_decay: float = _opt(1e-4, "AdamW weight decay")
    warmup_epochs: float = _opt(1.0, "linear learning-rate warm-up, in epochs")
    min_lr_ratio: float = _opt(0.01, "final learning rate as a fraction of lr (cosine schedule)")
    label_smoothing: float = _opt(0.1, "label smoothing of both cross-entropy terms")
    augment: bool = _opt(True, "random flips, crops and small rotations of each full-network batch")
    source_limit: int = _opt(6000, "at most this many FER2013 Training faces as the source domain (0 = none: "
                                   "target-only fine-tuning, needs alpha 0 and discrepancy none)")
    bottleneck: int = _opt(256, "imagenet-mobilenetv2: width of the dense layer before the classifier (0 = none)")
    views: int = _opt(2, "cached protocols: views per target image (2 = as is + mirrored; more adds random "
                         "resized crops, drawn from seed 0)")
    ema: float = _opt(0.0, "decay of an exponential moving average of the weights (> 0: the average is "
                           "selected and saved as best.safetensors, the trained weights as "
                           "best_raw.safetensors; 0 = off)")
    seed: int = _opt(0, "seed of new layers, batch order and augmentation")
    threads: int = _opt(0, "torch CPU threads (0 = leave torch's default)")
    fit: str = _opt("centre", "how each target image becomes the square input: centre, crop (the centre 87.5 percent), "
                              "squash or pad (use the start model's own fit when it has one)")

    @property
    def layers(self) -> tuple[str, ...]:
        """The taps whose activations the discrepancy compares."""
        return tuple(tap.strip() for tap in self.layer.split(",") if tap.strip())


#: The fields whose value is one of a few words (the CLI offers them as choices).
CHOICES: dict[str, tuple[str, ...]] = {"head": ("new", "mapped", "keep", "probe"), "fit": ("centre", "crop", "squash", "pad"),
                                       "discrepancy": DISCREPANCY_NAMES, "lam_schedule": ("ramp", "constant")}


def field_help(name: str) -> str:
    """The help text of an :class:`AdaptConfig` field."""
    return next(f.metadata["help"] for f in fields(AdaptConfig) if f.name == name)


class Protocol(str, Enum):
    """The two ways an adaptation run trains; :func:`protocol` picks one from the configuration.

    ``joint``: every step runs the whole network on a joint target + source batch (the paper's
    method). ``cached``: activations up to a frozen tap are computed once per image and view, the
    later layers train on the cache (:mod:`emoadapt.adapt.cached`).
    """

    JOINT = "joint"
    CACHED = "cached"


def protocol(cfg: AdaptConfig, cached_tap: str | None) -> Protocol:
    """The trainer ``cfg`` selects; ``cached_tap`` is what :func:`emoadapt.adapt.cached.cached_tap`
    says for the start model (``None``: the whole network trains)."""
    check(cfg)
    return Protocol.CACHED if cached_tap is not None else Protocol.JOINT


def check(cfg: AdaptConfig) -> None:
    """Refuse option values that no protocol accepts (:class:`ConfigError`, one line each)."""
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise ConfigError(f"{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {getattr(cfg, name)!r}")
    if cfg.freeze not in ("none", "features", *EMONET_BLOCKS, *MOBILENET_STAGES):
        raise ConfigError(f"freeze must be none, features, b1…b5 (EmoNet) or s1…s5 (MobileNetV2), got {cfg.freeze!r}")
    for name in ("epochs", "batch_size", "views"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if not cfg.layers:
        raise ConfigError("layer names no tap")
    if cfg.source_limit == 0 and uses_source(cfg, always=False):
        raise ConfigError("source_limit 0 (no source faces) needs alpha 0 and discrepancy none (or lam 0)")
    if cfg.head == "probe" and cfg.freeze == "features":
        raise ConfigError("head probe is LP-FT: it fine-tunes the network after the probe; with freeze features "
                          "only the head trains, so fit the probe alone (head new)")


def lam_at(progress: float, cfg: AdaptConfig) -> float:
    """The discrepancy weight λ at training progress ``progress`` ∈ [0, 1]."""
    if cfg.lam_schedule == "constant":
        return cfg.lam
    if cfg.lam_schedule == "ramp":
        return cfg.lam * (2 / (1 + math.exp(-10 * progress)) - 1)
    raise ConfigError(f"lam_schedule must be ramp or constant, got {cfg.lam_schedule!r}")


def uses_source(cfg: AdaptConfig, *, always: bool) -> bool:
    """Whether source faces go into the batches: when ``always`` (the protocols whose recorded
    results had them in every batch), else only when the source classification term or the
    discrepancy uses them."""
    return always or cfg.alpha > 0 or (cfg.discrepancy != "none" and cfg.lam > 0)
