"""Two backbones, one head: a scene branch and a face branch whose pooled features are
concatenated, standardised and classified (the shipped ``emoadapt-ier`` since issue #16).

Both branches see the same image (N, 3, S, S) in [0, 1]. Typically the ``scene`` branch is an
ImageNet EfficientNet-Lite0 (what a generic photo looks like) and the ``face`` branch the same
architecture trained on FER2013 (what a facial expression looks like); the head — dense 256 →
ReLU → classes — is what the adaptation trains, with the paper's classification + discrepancy
loss on faces and scenes (``benchmarks/faces_scenes.py``).

Named taps: the face branch's stages ``f1``…``f5`` and the scene branch's ``s1``…``s5`` (spatial, for
layer-wise explanations; see each backbone's module for shapes), then ``pre_logits`` (the 256-d
layer) and ``logits``. ``forward_from(tap, activation, context)`` continues one branch from an
edited activation and takes the other branch's pooled features from ``context`` (the output of
:meth:`forward_taps` for the same image), so a layer-wise explanation of one branch holds the other
branch fixed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CheckpointError

BRANCHES = ("face", "scene")
PREFIX = {"face": "f", "scene": "s"}


@dataclass(frozen=True)
class FusionConfig:
    """Rebuild information for :class:`FusionNet`.

    Attributes:
        face, scene: the branches' own configs (dicts with ``arch``); their own heads are kept
            (the face branch's is the FER network's 7-class head) but not used by ``forward``.
        hidden: width of the dense layer on the concatenated features (0: no dense layer, the
            classifier is linear on the standardised features).
        num_classes, input_size, in_chans: as for every model (both branches share the input).
        dropout: before the classifier.
        input_dropout: on the standardised features, before the dense layer (training only).
        experts: ``False``: one classifier on the concatenated features. ``True`` (needs
            ``hidden = 0``): a mixture of experts — the classifier on all features (the shared
            expert), plus one per branch (scene features only, face features only) and a gate
            (softmax over the three, from all features) that weighs their probabilities, so that a
            face close-up can be read by the face expert without the face features diluting the
            scene expert; the logits are the log of the mixed probabilities.
    """

    face: dict = field(default_factory=dict)
    scene: dict = field(default_factory=dict)
    hidden: int = 256
    num_classes: int = 4
    input_size: int = 160
    in_chans: int = 3
    dropout: float = 0.3
    input_dropout: float = 0.0
    experts: bool = False
    scene_stages: tuple[int, ...] = ()
    arch: str = field(default="fusion", init=False)

    def to_dict(self) -> dict:
        return asdict(self)


class FusionNet(nn.Module):
    """Face branch ⊕ scene branch → standardise → dense → classes (the EmoNet interface)."""

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.config = config
        self.branches = nn.ModuleDict({name: build_branch(getattr(config, name)) for name in BRANCHES})
        #: per branch, each extra pooled stage in order: (``features`` index after which it is pooled,
        #: its first column inside the branch's pooled features, its width)
        self.extras = {"face": [], "scene": self._scene_extras(config.scene_stages)}
        #: per branch, the width of its pooled features (last map, then the extra stages)
        self.widths = {name: self.branches[name].feature_channels + sum(w for _, _, w in self.extras[name])
                       for name in BRANCHES}
        width = sum(self.widths.values())
        #: channels of :meth:`forward_features` (the concatenated pooled branch features)
        self.feature_channels = width
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_std", torch.ones(width))
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.dense = (nn.Sequential(nn.Linear(width, config.hidden), nn.ReLU(inplace=True)) if config.hidden
                      else nn.Identity())
        self.num_features = config.hidden or width
        self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.num_features, config.num_classes))
        if config.experts:
            if config.hidden:
                raise CheckpointError("a FusionNet with experts has a linear head: set hidden = 0")
            self.expert_heads = nn.ModuleDict({name: nn.Linear(self.widths[name], config.num_classes)
                                               for name in BRANCHES})
            self.gate = nn.Linear(width, 1 + len(BRANCHES))
        self.branch_taps = {name: tuple(f"{PREFIX[name]}{t[1:]}" for t in self.branches[name].stage_ends)
                            for name in BRANCHES}
        self.taps = self.branch_taps["face"] + self.branch_taps["scene"] + ("pre_logits", "logits")

    # -- plumbing ---------------------------------------------------------------------------
    def _scene_extras(self, stages: tuple[int, ...]) -> list[tuple[int, int, int]]:
        scene = self.branches["scene"]
        if stages and not hasattr(scene, "block_stages"):
            raise CheckpointError("scene_stages needs an EfficientNet-Lite scene branch")
        unknown = [k for k in stages if k not in getattr(scene, "block_stages", {})]
        if unknown or list(stages) != sorted(set(stages)):
            raise CheckpointError(f"scene_stages must be increasing EfficientNet stages 1–7, got {list(stages)}")
        extras, first = [], scene.feature_channels
        for k in stages:
            end, width = scene.block_stages[k]
            extras.append((end, first, width))
            first += width
        return extras

    def split_features(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{branch: (N, width)}`` from concatenated pooled features (N, C) (face first)."""
        return dict(zip(BRANCHES, flat.split([self.widths[name] for name in BRANCHES], dim=1)))

    def walk(self, name: str, h: torch.Tensor, start: int = 0, stage_ends: dict[str, int] | None = None,
             known: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run branch ``name``'s feature layers from index ``start`` on ``h`` (the input of
        ``features[start]``; for ``start = 0`` the normalised image). Returns its pooled features
        (N, width) — the last map's mean, then each extra stage's mean; an extra stage that ends at
        or before ``start`` is taken from ``known`` (the same image's pooled features, unedited) —
        and ``{tap: map}`` for the ``stage_ends`` it passes (e.g. ``{"s1": 2, …}``)."""
        branch = self.branches[name]
        ends = [end for end, _, _ in self.extras[name]]
        extras: dict[int, torch.Tensor] = {}
        maps: dict[str, torch.Tensor] = {}
        at_end = {end: tap for tap, end in (stage_ends or {}).items()}
        for index in range(start, len(branch.features)):
            h = branch.features[index](h)
            if index + 1 in ends:
                extras[index + 1] = h.mean(dim=(2, 3))
            if index + 1 in at_end:
                maps[at_end[index + 1]] = h
        for end, first, width in self.extras[name]:
            if end <= start:  # before the edited layer: the unedited image's value
                extras[end] = known[:, first:first + width].expand(h.shape[0], -1)
        return torch.cat([h.mean(dim=(2, 3))] + [extras[end] for end in ends], dim=1), maps

    def _split_tap(self, tap: str) -> tuple[str, str]:
        """``"f3"`` → ``("face", "s3")``: the branch and its own stage name."""
        for name in BRANCHES:
            if tap in self.branch_taps[name]:
                return name, f"s{tap[1:]}"
        raise ValueError(f"unknown tap {tap!r}; choose from {', '.join(self.taps[:-2])}")

    def branch_input(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` resized (bilinear) to the input size branch ``name`` was trained at (e.g. the FER
        branch at 96 px inside a 160 px model), so each branch sees faces at its own scale."""
        return resize_to(x, self.branches[name].config.input_size)

    def pooled(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{branch: (N, width)}`` pooled features of images ``x`` (N, 3, S, S) in [0, 1]: each
        branch's last map averaged over positions, then (scene) the averaged outputs of ``scene_stages``."""
        return {name: self.walk(name, self.normalised(name, x))[0] for name in BRANCHES}

    def normalised(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Images ``x`` as branch ``name``'s first layer takes them: resized, then normalised."""
        branch = self.branches[name]
        return (self.branch_input(name, x) - branch.mean) / branch.std

    def fuse(self, pooled: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, C_face + C_scene) the standardised concatenation of the branches' pooled features."""
        features = torch.cat([pooled[name] for name in BRANCHES], dim=1)
        return (features - self.feature_mean) / self.feature_std

    def head(self, pooled: dict[str, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        h = self.dense(self.input_dropout(self.fuse(pooled)))
        return h if pre_logits else self.classify(h)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) from the ``pre_logits`` layer ``h``: the classifier, or with experts the log
        of the gate-weighted mixture of the shared, scene and face experts' probabilities."""
        if not self.config.experts:
            return self.classifier(h)
        parts = self.split_features(h)
        experts = [self.classifier(h)] + [self.expert_heads[name](parts[name]) for name in BRANCHES]
        log_probs = torch.stack([logits.log_softmax(1) for logits in experts], dim=1)  # (N, E, K)
        log_gate = self.gate(h).log_softmax(1)[:, :, None]  # (N, E, 1)
        return torch.logsumexp(log_probs + log_gate, dim=1)

    @torch.no_grad()
    def fit_standardisation(self, features: torch.Tensor) -> None:
        """Set the standardisation of :meth:`fuse` from training features (N, C) or (N, C, 1, 1)
        (the output of :meth:`forward_features`): their mean and standard deviation per channel."""
        flat = features.reshape(-1, self.feature_channels).double()
        self.feature_mean.copy_(flat.mean(0).float())
        self.feature_std.copy_((flat.std(0) + 1e-6).float())

    # -- the model interface ----------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_face + C_scene, 1, 1): the branches' pooled features, concatenated (face first),
        before standardisation — what the cached adaptation protocol stores (``freeze=features``)."""
        pooled = self.pooled(x)
        return torch.cat([pooled[name] for name in BRANCHES], dim=1)[:, :, None, None]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits (or the ``pre_logits`` layer) from :meth:`forward_features`' output."""
        flat = features.mean(dim=(2, 3)) if features.dim() == 4 else features
        return self.head(self.split_features(flat), pre_logits=pre_logits)

    def forward_taps(self, x: torch.Tensor, taps: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        taps = self.taps if taps is None else taps
        out: dict[str, Any] = {}
        pooled = {}
        for name in BRANCHES:
            pooled[name], maps = self.walk(name, self.normalised(name, x), stage_ends=self.branches[name].stage_ends)
            out.update({f"{PREFIX[name]}{t[1:]}": v for t, v in maps.items()})
        out["features"] = torch.cat([pooled[name] for name in BRANCHES], dim=1)  # not listed: forward_features, flat
        out["fused"] = self.fuse(pooled)  # not a listed tap: what affect heads may read (models/affect.py)
        out["pre_logits"] = self.dense(self.input_dropout(out["fused"]))
        out["logits"] = self.classify(out["pre_logits"])
        result = {name: out[name] for name in taps}
        result.update({f"pooled_{name}": pooled[name] for name in BRANCHES})  # context for forward_from
        return result

    def forward_from(self, tap: str, activation: torch.Tensor, context: dict[str, torch.Tensor] | None = None
                     ) -> torch.Tensor:
        """Logits from an edited activation at ``tap``; the other branch's pooled features come
        from ``context`` (:meth:`forward_taps` of the same image, batch 1 or N)."""
        if tap == "pre_logits":
            return self.classify(activation)
        if context is None:
            raise ValueError("FusionNet.forward_from needs the context of forward_taps (the other branch)")
        name, stage = self._split_tap(tap)
        pooled = {other: context[f"pooled_{other}"].expand(activation.shape[0], -1) for other in BRANCHES}
        pooled[name] = self.walk(name, activation, self.branches[name].stage_ends[stage],
                                 known=context[f"pooled_{name}"])[0]
        return self.head(pooled)

    def forward_to(self, tap: str, x: torch.Tensor) -> torch.Tensor:
        name, stage = self._split_tap(tap)
        return self.branches[name].forward_to(stage, self.branch_input(name, x))

    def reset_classifier(self, num_classes: int) -> None:
        from dataclasses import replace

        if self.config.experts:
            raise CheckpointError("a FusionNet with experts keeps its classes (train a new one with emoadapt train)")
        self.classifier[-1] = nn.Linear(self.num_features, num_classes)
        self.config = replace(self.config, num_classes=num_classes)


def build_branch(config: dict) -> nn.Module:
    """A branch from its config: EfficientNet-Lite or MobileNetV2 (models with stages s1…s5)."""
    arch = config.get("arch")
    if arch == "efficientnet_lite":
        from .efficientnet_lite import efficientnet_lite_from_dict

        return efficientnet_lite_from_dict(config)
    if arch == "mobilenetv2":
        from .mobilenetv2 import mobilenetv2_from_dict

        return mobilenetv2_from_dict(config)
    raise CheckpointError(f"a fusion branch must be efficientnet_lite or mobilenetv2, got {arch!r}")


def resize_to(x: torch.Tensor, side: int) -> torch.Tensor:
    """Images (N, C, H, W) resized to (N, C, side, side), bilinear (no antialiasing, so that the
    ONNX export stays a plain Resize); unchanged when already that size."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)


def fusion_from_dict(data: dict) -> FusionNet:
    data = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k != "arch"}
    try:
        return FusionNet(FusionConfig(**data))
    except TypeError as exc:
        raise CheckpointError(f"bad fusion model config: {exc}") from None
