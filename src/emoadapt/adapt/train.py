"""``emoadapt adapt``: adapt a FER network to generic images, same architecture (SPEC §3).

    L = CE(target images, 4 IER classes) + α · CE(source faces, 4 mapped classes) + λ(p) · D(f_S, f_T)

Each step draws a target batch and a source batch of the same size and runs them through the
network together; ``f`` are the activations at ``layer`` (spatially averaged when it is a map);
``D`` is one of :data:`emoadapt.adapt.DISCREPANCIES`; ``λ(p)`` is constant or ramps up as
``λ · (2 / (1 + exp(−10 p)) − 1)`` with training progress ``p`` ∈ [0, 1] (DANN's schedule), so
the discrepancy does not pull features together before they carry class information.
Source faces whose FER class has no IER class (fear, neutral, surprise) feed ``D`` only.

Optional distillation (``kd_weight`` > 0, full fine-tuning): a trained IER ``teacher`` labels a
fixed bank of augmented views of the target images and of extra unlabelled images, and the loss
gains ``β · T² · KL(teacher_T ‖ student_T)`` over those views — the way a small network such as the
paper-structure EmoNet learns what an ImageNet-initialised model sees in scenes — and, with
``kd_hint_weight`` γ > 0, ``γ · MSE(student pre-logits, teacher pre-logits)`` (a FitNets-style hint
on the dense layer before the classifier; both must have the same width). With ``kd_mode="online"``
the teacher labels fresh (optionally mixed) crops at every step instead of a fixed bank
(:mod:`emoadapt.adapt.distill`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..data.labels import FER_CLASSES, FER_TO_IER, IER_CLASSES, fer_classes_in_ier_order
from ..data.transforms import fit_images, uint8_to_tensor
from ..models.emonet import EmoNet
from ..models.mobilenetv2 import MobileNetV2, MobileNetV2Config, STAGE_ENDS, load_imagenet_backbone
from ..models.registry import build_from_config, load_model
from ..training.augment import augment_batch
from ..training.loop import run_epochs
from ..training.metrics import classification_report, predict_arrays
from . import make_discrepancy
from .distill import OnlineTeacher, function_matching

IMAGENET_INIT = "imagenet-mobilenetv2"


@dataclass
class AdaptConfig:
    """Every option of an adaptation run (stored in its checkpoints).

    Attributes:
        init: a FER weights file, or ``imagenet-mobilenetv2`` (ImageNet MobileNetV2, new head).
        input_size: input side in px for the adapted model (pool-head EmoNets run at any size).
        rgb: give a grey EmoNet RGB input (first conv replicated / 3: grey faces give the same output).
        head: ``new`` (fresh 4-class layer) or ``mapped`` (the FER rows happy, sad, disgust, angry).
        discrepancy: ``mmd``, ``linear-mmd``, ``coral`` or ``none``; ``lam`` its weight λ.
        lam_schedule: ``ramp`` (DANN) or ``constant``.
        alpha: weight of the source classification term (0 = no source CE).
        layer: tap(s) whose activations ``D`` compares, comma-separated (default ``pre_logits``;
            e.g. ``merged,pre_logits`` sums D over both). With ``freeze=features`` only
            ``pre_logits`` adapts; any other name compares the frozen features.
        freeze: freeze the network up to and including this tap (``none`` = train all);
            ``features`` freezes every conv layer and trains only the dense head on cached features
            (one forward pass per image and view, then seconds per epoch: the fast CPU protocol).
        backbone_lr_scale: learning-rate factor for everything except the classifier.
        source_limit: at most this many FER2013 Training faces as the source domain.
        bottleneck: width of the dense layer added before the classifier of an ImageNet
            MobileNetV2 (the layer ``D`` acts on when the convolutions are frozen); 0 = none.
        views: cached protocols (``freeze=features``, or a MobileNetV2 stage ``s1``…``s4``, whose
            activations are cached and the later stages fine-tuned): views per target image —
            2 = as is + mirrored; more adds random resized crops (:mod:`emoadapt.adapt.views`).
            With distillation: the views per image in the teacher's bank. The crops are drawn
            from seed 0 whatever ``seed`` is, so runs with different seeds share one cache.
        teacher: IER model (weights file or registry name) for distillation; ``kd_weight`` β,
            ``kd_temperature`` T, ``kd_hint_weight`` γ. Needs ``freeze=none``.
        kd_hint_tap: what of the teacher the student's pre-logits must match: ``pre_logits``
            (its dense layer) or ``features`` (its spatially averaged last conv map, e.g. 1280
            ImageNet features of MobileNetV2); widths must agree (see ``dense``).
        dense: with a FER checkpoint as ``init``: replace its dense layers by one new layer of this
            width (0 = keep them).
        kd_mode: ``bank`` (a fixed bank of ``views`` views per image, labelled by the teacher once)
            or ``online`` (fresh crops every step, labelled by the teacher as they come:
            :mod:`emoadapt.adapt.distill`); ``mixup``: Beta(mixup, mixup) blend of two crops for
            the online mode's unlabelled views (0 = no blend).
        kd_spatial_weight: online distillation only: weight of a feature-map hint (FitNets-style):
            for each ``student_tap:teacher_tap`` pair of ``kd_spatial``, a 1×1 conv regressor maps the
            student's map to the teacher's channels, the teacher's map is average-pooled to the
            student's grid, and ``Σ_positions ‖n(s) − n(t)‖²`` (``n`` = unit length over channels)
            is averaged; the regressors are dropped after training (:mod:`emoadapt.adapt.distill`).
        ema: decay of an exponential moving average of the weights, updated every step; > 0
            selects and saves the averaged weights (``best.safetensors``) and keeps the best
            trained weights as ``best_raw.safetensors`` (:mod:`emoadapt.training.ema`); 0 = off.
    """

    init: str = IMAGENET_INIT
    input_size: int = 128
    rgb: bool = True
    head: str = "new"
    discrepancy: str = "mmd"
    lam: float = 1.0
    lam_schedule: str = "ramp"
    alpha: float = 0.5
    layer: str = "pre_logits"
    freeze: str = "none"
    epochs: int = 12
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_scale: float = 0.1
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    augment: bool = True
    source_limit: int = 6000
    bottleneck: int = 256
    views: int = 2
    teacher: str = ""
    kd_weight: float = 0.0
    kd_temperature: float = 2.0
    kd_hint_weight: float = 0.0
    kd_hint_tap: str = "pre_logits"
    dense: int = 0
    kd_mode: str = "bank"
    mixup: float = 0.0
    ema: float = 0.0
    kd_spatial_weight: float = 0.0
    kd_spatial: str = "b4:s4,merged:s5"
    seed: int = 0
    threads: int = 0


def build_start_model(cfg: AdaptConfig) -> nn.Module:
    """The network adaptation starts from, with a 4-class IER head and the requested input.
    New layers are initialised from ``cfg.seed``, so a run is repeatable."""
    torch.manual_seed(cfg.seed)
    if cfg.init == IMAGENET_INIT:
        if cfg.head == "mapped":
            raise ValueError("--head mapped needs a FER checkpoint as --init")
        config = MobileNetV2Config(num_classes=len(IER_CLASSES), input_size=cfg.input_size,
                                   hidden=(cfg.bottleneck,) if cfg.bottleneck else ())
        return load_imagenet_backbone(MobileNetV2(config))
    fer_model, extra = load_model(cfg.init)
    classes = tuple(extra.get("classes", FER_CLASSES))
    config = dict(fer_model.config.to_dict(), input_size=cfg.input_size)
    if isinstance(fer_model, EmoNet) and config["head"] == "flatten" and cfg.input_size != fer_model.config.input_size:
        raise ValueError("a flatten-head EmoNet only runs at its training size; pass --input-size "
                         f"{fer_model.config.input_size}")
    state = fer_model.state_dict()
    if cfg.dense:
        if cfg.head == "mapped":
            raise ValueError("--head mapped keeps the FER dense layers; it cannot be combined with --dense")
        config["hidden"] = [cfg.dense]
        state = {k: v for k, v in state.items() if not k.startswith(("dense.", "classifier."))}
    model = build_from_config(config)
    missing, _ = model.load_state_dict(state, strict=not cfg.dense)
    if cfg.dense:  # the new dense layer and classifier keep their fresh (seeded) initialisation
        assert all(k.startswith(("dense.", "classifier.")) for k in missing), missing
    if cfg.rgb and isinstance(model, EmoNet) and model.config.in_chans == 1:
        model = _grey_to_rgb(model)
    old = model.classifier if isinstance(model, EmoNet) else model.classifier[-1]
    model.reset_classifier(len(IER_CLASSES))
    if cfg.head == "mapped":
        new = model.classifier if isinstance(model, EmoNet) else model.classifier[-1]
        rows = [classes.index(fer) for fer in fer_classes_in_ier_order()]
        with torch.no_grad():
            new.weight.copy_(old.weight[rows])
            new.bias.copy_(old.bias[rows])
    return model


def _grey_to_rgb(model: EmoNet) -> EmoNet:
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
        if upto not in ("b1", "b2", "b3", "b4", "b5"):
            raise ValueError(f"--freeze for this network: none or b1…b5, got {upto!r}")
        count = int(upto[1:])
        return list(model.blocks[:count]) + list(model.branches[:max(0, count - 1)] if count == 5 else [])
    if upto not in STAGE_ENDS:
        raise ValueError(f"--freeze for mobilenetv2: none or {', '.join(STAGE_ENDS)}, got {upto!r}")
    return list(model.features[:STAGE_ENDS[upto]])


def param_groups(model: nn.Module, cfg: AdaptConfig, frozen: list[nn.Module]) -> list[dict]:
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    head_ids = {id(p) for p in (model.classifier.parameters())}
    head = [p for p in model.parameters() if id(p) in head_ids]
    body = [p for p in model.parameters() if id(p) not in head_ids and id(p) not in frozen_ids]
    return [{"params": body, "lr_scale": cfg.backbone_lr_scale}, {"params": head, "lr_scale": 1.0}]


def lam_at(progress: float, cfg: AdaptConfig) -> float:
    if cfg.lam_schedule == "constant":
        return cfg.lam
    if cfg.lam_schedule == "ramp":
        return cfg.lam * (2 / (1 + math.exp(-10 * progress)) - 1)
    raise ValueError(f"lam_schedule must be ramp or constant, got {cfg.lam_schedule!r}")


def map_source_labels(fer_labels: np.ndarray) -> np.ndarray:
    """FER class indices → IER indices, −1 where the FER class has no IER class."""
    table = np.full(len(FER_CLASSES), -1, dtype=np.int64)
    for fer, ier in FER_TO_IER.items():
        table[FER_CLASSES.index(fer)] = IER_CLASSES.index(ier)
    return table[fer_labels]


def _pooled(features: torch.Tensor) -> torch.Tensor:
    return features.mean(dim=(2, 3)) if features.ndim == 4 else features


def cached_tap(model: nn.Module, cfg: AdaptConfig) -> str | None:
    """The activation the cached protocol stores (``features`` or a MobileNetV2 stage), or
    ``None`` when every step runs the whole network (``freeze=none``, EmoNet blocks)."""
    if cfg.freeze == "features":
        return "features"
    if isinstance(model, MobileNetV2) and cfg.freeze in STAGE_ENDS and cfg.freeze != "s5":
        return cfg.freeze
    return None


def adapt(target_train: tuple[np.ndarray, np.ndarray], target_val: tuple[np.ndarray, np.ndarray],
          source: tuple[np.ndarray, np.ndarray], cfg: AdaptConfig, out_dir: str | Path, *, resume: bool = False,
          progress: bool = True, stop_after_epochs: int | None = None, model: nn.Module | None = None,
          cached: dict[str, torch.Tensor] | None = None,
          distill: dict[str, np.ndarray] | OnlineTeacher | None = None) -> dict:
    """Adapt on uint8 arrays (N, S, S, C): target labels are IER indices, source labels FER indices.

    Writes ``best.safetensors`` (best target-validation accuracy), ``last.safetensors``, ``log.jsonl``
    to ``out_dir``; returns the run state (history, best record). In the cached protocols
    (:func:`cached_tap`), ``cached`` (from :func:`encode_views` on the same start model) skips the
    encoding, so that several runs (an ablation, several seeds) share it. ``distill`` is a teacher
    bank from :func:`distillation_bank` (``kd_mode=bank``) or an :class:`~emoadapt.adapt.distill.OnlineTeacher`
    (``kd_mode=online``; its images at the teacher's size), needed when ``cfg.kd_weight`` > 0."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = model if model is not None else build_start_model(cfg)
    tap = cached_tap(model, cfg)
    distilling = cfg.kd_weight > 0 or cfg.kd_hint_weight > 0
    if distilling and (distill is None or tap is not None):
        raise ValueError("distillation (kd_weight or kd_hint_weight > 0) needs freeze=none and a teacher bank "
                         "(distillation_bank) or an online teacher (distill.online_teacher)")
    if cfg.kd_mode not in ("bank", "online"):
        raise ValueError(f"kd_mode must be bank or online, got {cfg.kd_mode!r}")
    if distilling and isinstance(distill, OnlineTeacher) != (cfg.kd_mode == "online"):
        raise ValueError(f"kd_mode={cfg.kd_mode} needs " + ("an OnlineTeacher" if cfg.kd_mode == "online"
                                                           else "a teacher bank from distillation_bank"))
    hint_key = {"pre_logits": "hidden", "features": "features"}.get(cfg.kd_hint_tap)
    if hint_key is None:
        raise ValueError(f"kd_hint_tap must be pre_logits or features, got {cfg.kd_hint_tap!r}")
    if cfg.kd_spatial_weight > 0 and not isinstance(distill, OnlineTeacher):
        raise ValueError("the feature-map hint (kd_spatial_weight > 0) needs kd_mode=online")
    if isinstance(distill, OnlineTeacher):
        frozen = frozen_modules(model, cfg.freeze)
        return function_matching(
            model, distill, target_train[1], target_val, (source[0], map_source_labels(source[1])), cfg, out_dir,
            optimizer=torch.optim.AdamW(param_groups(model, cfg, frozen), lr=cfg.lr, weight_decay=cfg.weight_decay),
            discrepancy=make_discrepancy(cfg.discrepancy), use_source=_uses_source(cfg, always=False), resume=resume,
            progress=progress, stop_after_epochs=stop_after_epochs)
    if cfg.kd_hint_weight > 0 and distill[f"target_{hint_key}"].shape[-1] != _hidden_width(model):
        raise ValueError(f"the hint needs equal widths: teacher {cfg.kd_hint_tap} "
                         f"{distill[f'target_{hint_key}'].shape[-1]}, student pre-logits {_hidden_width(model)} "
                         "(set dense to the teacher's width)")
    frozen = frozen_modules(model, cfg.freeze)
    optimizer = torch.optim.AdamW(param_groups(model, cfg, frozen), lr=cfg.lr, weight_decay=cfg.weight_decay)
    discrepancy = make_discrepancy(cfg.discrepancy)
    (xt, yt), (xv, yv), (xs, ys_fer) = target_train, target_val, source
    ys = map_source_labels(ys_fer)
    if tap is not None:
        if cached is None:
            cached = encode_views(model, xt, xv, xs if _uses_source(cfg, always=tap == "features") else None, tap=tap,
                                  views=cfg.views, seed=0, progress=progress)
        return _adapt_cached(model, tap, optimizer, discrepancy, cached, yt, yv, ys, cfg, out_dir,
                             resume=resume, progress=progress, stop_after_epochs=stop_after_epochs)
    steps_per_epoch = math.ceil(len(xt) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    order: dict[str, np.ndarray] = {}
    layers = tuple(tap.strip() for tap in cfg.layer.split(",") if tap.strip())
    # Without distillation, source faces always share the batch (and its batch-norm statistics),
    # as in the recorded ablation; a distillation run leaves them out when no term uses them.
    use_source = _uses_source(cfg, always=distill is None)

    def from_bank(name: str, index: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Pixels (n, C, S, S) of one random view per image of bank ``name`` and what the teacher
        made of those views: ``logits`` (n, 4) and the hint target (n, H)."""
        view = torch.randint(distill[f"{name}_views"].shape[0], (len(index),), generator=generator).numpy()
        taught = {key: torch.as_tensor(distill[f"{name}_{key}"][view, index]).float() for key in ("logits", hint_key)}
        return uint8_to_tensor(distill[f"{name}_views"][view, index]), taught

    def unlabelled_index(count: int, generator: torch.Generator) -> np.ndarray:
        available = distill["unlabelled_views"].shape[1]
        return torch.randint(max(1, available), (count if available else 0,), generator=generator).numpy()

    def train_step(epoch: int, step: int, generator: torch.Generator):
        if step == 0:
            order["target"] = torch.randperm(len(xt), generator=generator).numpy()
            for m in frozen:
                m.eval()
        t_index = order["target"][step * cfg.batch_size:(step + 1) * cfg.batch_size]
        s_index = (torch.randint(len(xs), (len(t_index),), generator=generator).numpy() if use_source
                   else np.zeros(0, dtype=np.int64))
        if distill is None:
            x_target = uint8_to_tensor(xt[t_index])
        else:
            x_target, taught_target = from_bank("target", t_index, generator)
        x = torch.cat([x_target, uint8_to_tensor(_match_channels(xs[s_index], xt.shape[-1]))])
        if cfg.augment and distill is None:
            x = augment_batch(x, generator, max_rotate_deg=10, erase_prob=0.0)
        if distill is not None:
            x_unlabelled, taught_unlabelled = from_bank("unlabelled", unlabelled_index(len(t_index), generator),
                                                        generator)
            x = torch.cat([x, x_unlabelled])
        out = model.forward_taps(x, tuple(dict.fromkeys((*layers, "pre_logits", "logits"))))
        labelled = len(t_index) + len(s_index)
        progress_now = (epoch * steps_per_epoch + step) / max(1, total_steps)
        loss, n, correct = adaptation_loss(out["logits"][:labelled], [_pooled(out[tap][:labelled]) for tap in layers],
                                           torch.as_tensor(yt[t_index]), torch.as_tensor(ys[s_index]), progress_now,
                                           cfg, discrepancy)
        if distill is not None:
            def taught(tap: str, key: str) -> tuple[torch.Tensor, torch.Tensor]:  # student rows, teacher rows
                student = torch.cat([out[tap][:len(t_index)], out[tap][labelled:]])
                return student, torch.cat([taught_target[key], taught_unlabelled[key]])
            if cfg.kd_weight > 0:
                loss = loss + cfg.kd_weight * distillation_loss(*taught("logits", "logits"), cfg.kd_temperature)
            if cfg.kd_hint_weight > 0:
                loss = loss + cfg.kd_hint_weight * F.mse_loss(*taught("pre_logits", hint_key))
        return loss, n, correct

    def validate() -> dict:
        return classification_report(yv, predict_arrays(model, xv), IER_CLASSES)

    return _run(model, optimizer, cfg, steps_per_epoch, train_step, validate, out_dir, resume=resume,
                progress=progress, stop_after_epochs=stop_after_epochs)


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


@torch.no_grad()
def distillation_bank(teacher: nn.Module, target_images: np.ndarray, unlabelled_images: np.ndarray, *, views: int,
                      seed: int, student_size: int, student_channels: int = 3, batch_size: int = 64,
                      progress: bool = False) -> dict[str, np.ndarray]:
    """What a student needs to learn from ``teacher``: for every target-train and unlabelled image,
    ``views`` augmented views (:mod:`emoadapt.adapt.views`), rendered at the teacher's input size
    for its logits and at ``student_size`` for the student.

    Args:
        target_images, unlabelled_images: (N, S, S, 3) uint8 at (at least) the teacher's size.
    Returns:
        ``target_views`` (V, N, s, s, C) uint8; float32 ``target_logits`` (V, N, 4),
        ``target_hidden`` (V, N, H) (the teacher's pre-logits) and ``target_features`` (V, N, C)
        (its last conv map, spatially averaged); the same for ``unlabelled``.
    """
    from tqdm import tqdm

    from .views import crop_boxes, render_views

    teacher.eval()
    size = teacher.config.input_size
    final_map = "s5" if "s5" in teacher.taps else "merged"  # the last conv map: MobileNetV2 / EmoNet
    bank = {}
    for name, images, offset in (("target", target_images, 0), ("unlabelled", unlabelled_images, 1)):
        boxes = crop_boxes(len(images), views, seed + offset)
        student = render_views(images, boxes, student_size)
        if student_channels == 1 and student.shape[-1] == 3:  # grey as the decoder makes it (luma)
            student = fit_images(student.reshape(-1, *student.shape[2:]), student_size, 1).reshape(
                *student.shape[:-1], 1)
        taught: dict[str, list[np.ndarray]] = {"logits": [], "hidden": [], "features": []}
        for v in tqdm(range(views), desc=f"teacher on {name} views", disable=not progress, leave=False):
            seen = render_views(images, boxes[v:v + 1], size)[0]
            for start in range(0, max(1, len(seen)), batch_size):
                batch = seen[start:start + batch_size] if len(seen) else np.zeros((1, size, size, 3), np.uint8)
                out = teacher.forward_taps(uint8_to_tensor(batch), (final_map, "pre_logits", "logits"))
                out = {k: t[:len(seen)] for k, t in out.items()}  # no images: keep the widths only
                taught["logits"].append(out["logits"].numpy())
                taught["hidden"].append(out["pre_logits"].numpy())
                taught["features"].append(_pooled(out[final_map]).numpy())
        bank[f"{name}_views"] = student
        for key, chunks in taught.items():
            values = np.concatenate(chunks)
            bank[f"{name}_{key}"] = values.reshape(views, len(images), values.shape[-1]).astype(np.float32)
    return bank


def _hidden_width(model: nn.Module) -> int:
    """Width of the pre-logits layer (the classifier's input)."""
    classifier = model.classifier[-1] if isinstance(model.classifier, nn.Sequential) else model.classifier
    return classifier.in_features


def adaptation_loss(logits: torch.Tensor, features: list[torch.Tensor], y_t: torch.Tensor, y_s: torch.Tensor,
                    progress: float, cfg: AdaptConfig, discrepancy: nn.Module) -> tuple[torch.Tensor, int, int]:
    """L = CE(target) + α·CE(mapped source) + λ(progress)·Σ_layers D(f_S, f_T) for one joint batch.

    Args:
        logits: (n_t + n_s, 4), target rows first.
        features: per compared layer, (n_t + n_s, D) features in the same order.
        y_t: (n_t,) IER labels; y_s: (n_s,) IER labels, −1 for faces without an IER class.
    Returns:
        (loss, n_t, number of correct target predictions).
    """
    n = len(y_t)
    loss = F.cross_entropy(logits[:n], y_t, label_smoothing=cfg.label_smoothing)
    mapped = y_s >= 0
    if cfg.alpha > 0 and bool(mapped.any()):
        loss = loss + cfg.alpha * F.cross_entropy(logits[n:][mapped], y_s[mapped], label_smoothing=cfg.label_smoothing)
    if cfg.discrepancy != "none" and cfg.lam > 0:
        loss = loss + lam_at(progress, cfg) * sum(discrepancy(f[n:], f[:n]) for f in features)
    return loss, n, int((logits[:n].argmax(1) == y_t).sum())


def _run(model, optimizer, cfg: AdaptConfig, steps_per_epoch: int, train_step, validate, out_dir, *, resume: bool,
         progress: bool, stop_after_epochs: int | None, helpers: dict[str, nn.Module] | None = None) -> dict:
    return run_epochs(model, optimizer, settings=asdict(cfg), epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
                      seed=cfg.seed, lr=cfg.lr, warmup_epochs=cfg.warmup_epochs, min_lr_ratio=cfg.min_lr_ratio,
                      train_step=train_step, validate=validate, out_dir=out_dir,
                      model_config=model.config.to_dict(), classes=IER_CLASSES, resume=resume,
                      extra_meta={"task": "ier", "adapt": asdict(cfg)}, stop_after_epochs=stop_after_epochs,
                      progress=progress, ema_decay=cfg.ema, helpers=helpers)


def _match_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Grey (…, 1) faces → (…, 3) when the target is RGB."""
    if images.shape[-1] == channels:
        return images
    if images.shape[-1] == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1)
    raise ValueError(f"cannot match {images.shape[-1]} source channels to {channels} target channels")


@torch.no_grad()
def encode(model: nn.Module, images: np.ndarray, batch_size: int = 64, flip: bool = False,
           progress: bool = False, tap: str = "features") -> torch.Tensor:
    """Frozen activations of uint8 images (N, S, S, C). ``tap="features"``: what
    :meth:`forward_head` expects — (N, C', 1, 1) spatial means for pooling heads, the full
    (N, C', s, s) map for a flatten head. A MobileNetV2 stage (``s1``…``s4``): its output map."""
    from tqdm import tqdm

    model.eval()
    pooled = getattr(model.config, "head", "pool") == "pool"
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="encoding", disable=not progress, leave=False):
        x = uint8_to_tensor(images[start:start + batch_size])
        x = x.flip(3) if flip else x
        if tap == "features":
            features = model.forward_features(x)
            out.append(features.mean(dim=(2, 3), keepdim=True) if pooled else features)
        else:
            out.append(model.forward_to(tap, x))
    return torch.cat(out)


def encode_views(model: nn.Module, xt: np.ndarray, xv: np.ndarray, xs: np.ndarray | None, *, tap: str = "features",
                 views: int = 2, seed: int = 0, progress: bool = False) -> dict[str, torch.Tensor | None]:
    """Frozen activations at ``tap`` of the target-train images (``views`` views, stacked as
    (V, N, …): as is, mirrored, then random resized crops from ``seed``), the source images
    (as is and mirrored: (2, N_s, …); ``None`` when ``xs`` is ``None``) and the validation
    images (1 view)."""
    from .views import crop_boxes, render_views

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
                encode(model, _match_channels(xs, xt.shape[-1]), progress=progress, tap=tap),
                encode(model, _match_channels(xs, xt.shape[-1]), flip=True, progress=progress, tap=tap)]),
            "val": encode(model, xv, progress=progress, tap=tap)}


def head_from(model: nn.Module, tap: str, activation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pre-logits hidden) from a cached activation at ``tap`` (see :func:`encode`)."""
    if tap != "features":  # a MobileNetV2 stage: run the stages after it (EmoNet caches "features")
        activation = model.features_from(tap, activation)
    hidden = model.forward_head(activation, pre_logits=True)
    return model.forward_from("pre_logits", hidden, {}), hidden


def _uses_source(cfg: AdaptConfig, *, always: bool) -> bool:
    """Whether source faces go into the batches: when ``always`` (the protocols whose recorded
    results had them in every batch), else only when the source classification term or the
    discrepancy uses them."""
    return always or cfg.alpha > 0 or (cfg.discrepancy != "none" and cfg.lam > 0)


def _adapt_cached(model, tap: str, optimizer, discrepancy, views: dict[str, torch.Tensor], yt: np.ndarray,
                  yv: np.ndarray, ys: np.ndarray, cfg: AdaptConfig, out_dir, *, resume: bool, progress: bool,
                  stop_after_epochs: int | None) -> dict:
    """The cached protocols: every image is encoded once up to ``tap`` (in each of its views: the
    only augmentation); the layers after ``tap`` train with the full adaptation loss on the cache."""
    views_t, views_s, val_features = views["target"], views["source"], views["val"]
    xt_count, xs_count = views_t.shape[1], len(ys)  # the random stream is the same whether or not
    # the source faces were encoded (they are not when no term uses them)
    steps_per_epoch = math.ceil(xt_count / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    order: dict[str, np.ndarray] = {}
    use_source = _uses_source(cfg, always=tap == "features")  # head-only: as in the recorded ablation
    if use_source and views_s is None:
        raise ValueError("this configuration needs the source faces' cached activations")

    def train_step(epoch: int, step: int, generator: torch.Generator):
        if step == 0:
            order["target"] = torch.randperm(xt_count, generator=generator).numpy()
            for m in frozen_modules(model, cfg.freeze):
                m.eval()
        t_index = torch.as_tensor(order["target"][step * cfg.batch_size:(step + 1) * cfg.batch_size])
        s_index = torch.randint(xs_count, (len(t_index),), generator=generator)
        t_view = torch.randint(views_t.shape[0], (len(t_index),), generator=generator)
        s_view = torch.randint(2, (len(s_index),), generator=generator)
        if not use_source:  # drawn all the same, so that the random stream does not depend on it
            s_index, s_view = s_index[:0], s_view[:0]
        features = torch.cat([views_t[t_view, t_index], views_s[s_view, s_index]]) if use_source \
            else views_t[t_view, t_index]
        logits, hidden = head_from(model, tap, features)
        compared = [hidden if name.strip() == "pre_logits" else features for name in cfg.layer.split(",")]
        progress_now = (epoch * steps_per_epoch + step) / max(1, total_steps)
        return adaptation_loss(logits, [_pooled(f) for f in compared], torch.as_tensor(yt[t_index.numpy()]),
                               torch.as_tensor(ys[s_index.numpy()]), progress_now, cfg, discrepancy)

    @torch.no_grad()
    def validate() -> dict:
        model.eval()
        probs = torch.cat([head_from(model, tap, chunk)[0] for chunk in val_features.split(256)]).softmax(1).numpy()
        return classification_report(yv, probs, IER_CLASSES)

    return _run(model, optimizer, cfg, steps_per_epoch, train_step, validate, out_dir, resume=resume,
                progress=progress, stop_after_epochs=stop_after_epochs)
