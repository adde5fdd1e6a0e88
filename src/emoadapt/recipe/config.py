"""The recipe file of ``emoadapt train`` (TOML): every choice that makes a shipped model, in one
place, torch-free. ``configs/emoadapt-ier.toml`` is the shipped default's recipe.

A recipe has five tables (every key optional; the defaults below are the shipped recipe's):

``[face]``   where the face (FER) branch comes from: ``from = "train-fer"`` trains it here
             (``model``, ``epochs``, ``lr``, ``seed`` as ``emoadapt train-fer``), or a weights file /
             shipped model name whose face branch (or whole EfficientNet-Lite FER model) is reused.
``[scene]``  the scene branch: an ImageNet EfficientNet-Lite ``variant`` at ``input_size`` px.
``[data]``   the labelled images (``target``: a known dataset name or a folder; ``layout``;
             ``label_map`` onto the model's classes), the k-fold manifest CV uses, the source faces.
``[head]``   the head on the branches' pooled features and the paper's loss
             ``CE(target) + alpha·CE(source faces) + lam·D`` (``discrepancy``: mmd, linear-mmd,
             coral, none), epochs, optimiser, training views.
``[output]`` test-time fit and flip averaging, calibration, affect heads.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from ..errors import EmoadaptError

Progress = Callable[[str], None]  #: where the trainer's steps report progress (a line of text each)


def print_progress(message: str) -> None:
    """The default :data:`Progress`: one flushed line on stdout."""
    print(message, flush=True)


class RecipeError(EmoadaptError):
    """A recipe file is missing, unreadable, or has an unknown key or a bad value."""


@dataclass(frozen=True)
class FaceSpec:
    source: str = "train-fer"  # "train-fer", or a weights file / shipped model name to take the face branch from
    model: str = "fer-lite0"  # train-fer: the preset to train
    epochs: int = 8
    lr: float = 1e-3
    seed: int = 0


@dataclass(frozen=True)
class SceneSpec:
    variant: str = "lite0"  # ImageNet EfficientNet-Lite: lite0, lite1 or lite2
    input_size: int = 224
    stages: tuple[int, ...] = ()  # EfficientNet stages (1-7) whose mean-pooled outputs join the last map's


@dataclass(frozen=True)
class DataSpec:
    target: str = "emotion6"  # a known dataset (under EMOADAPT_DATA) or a folder path
    layout: str = "auto"
    label_map: str = ""  # "joy=happy,sadness=sad,..." onto the model's classes ("" = the layout's own map)
    folds: str = "benchmarks/results/adaptation/folds.json"  # k-fold manifest for --cv ("" = make 5 folds)
    source: str = "fer2013"  # FER2013 faces for the source terms ("" = none: alpha and lam must be 0)
    source_limit: int = 6000


@dataclass(frozen=True)
class HeadSpec:
    hidden: int = 0  # 0 = a linear classifier on the standardised features; else one ReLU layer this wide
    experts: bool = False  # with hidden = 0: shared + scene-only + face-only linear experts mixed by a gate
    input_dropout: float = 0.0
    dropout: float = 0.0
    alpha: float = 0.5
    discrepancy: str = "none"
    lam: float = 0.0
    layer: str = "pre_logits"
    solver: str = "adamw"  # adamw: minibatches over the views (any head, any D); lbfgs: full batch, linear head(s)
    l2: float = 0.1  # lbfgs: weight of ½·|W|² in the objective (the logistic regression's 1/(C·n))
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1
    views: int = 8  # views encoded per image: fit, mirrored, then random resized crops (seed 0)
    train_views: int = 0  # views the head trains on: the first N of them (0 = all)
    seed: int = 0


@dataclass(frozen=True)
class OutputSpec:
    fit: str = "squash"  # how an image becomes the square input (emoadapt.data.transforms.FITS)
    tta: str = "flip"  # "flip": average the image and its mirror image; "none"
    ood: str = "energy"  # the OOD score: energy of the logits, or mahalanobis of the pre_logits features
    ood_quantile: float = 0.95
    affect: bool = True  # fit valence/arousal/distribution heads (needs Emotion6's ground truth)


@dataclass(frozen=True)
class Recipe:
    name: str = "emoadapt-ier"
    face: FaceSpec = field(default_factory=FaceSpec)
    scene: SceneSpec = field(default_factory=SceneSpec)
    data: DataSpec = field(default_factory=DataSpec)
    head: HeadSpec = field(default_factory=HeadSpec)
    output: OutputSpec = field(default_factory=OutputSpec)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TABLES = {"face": FaceSpec, "scene": SceneSpec, "data": DataSpec, "head": HeadSpec, "output": OutputSpec}


def _build(cls, values: dict[str, Any], where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    out = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if isinstance(default, tuple):  # a list of integers in TOML
            if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise RecipeError(f"{where}.{name}: expected a list of integers, got {value!r}")
            out[name] = tuple(value)
            continue
        if isinstance(default, bool) != isinstance(value, bool) or (
                not isinstance(default, bool) and isinstance(default, (int, float)) and
                not isinstance(value, (int, float))) or (isinstance(default, str) and not isinstance(value, str)):
            raise RecipeError(f"{where}.{name}: expected {type(default).__name__}, got {value!r}")
        out[name] = float(value) if isinstance(default, float) else value
    return cls(**out)


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> Recipe:
    """A :class:`Recipe` from parsed TOML; unknown tables or keys are errors (a typo must not pass)."""
    unknown = sorted(set(data) - set(_TABLES) - {"name"})
    if unknown:
        raise RecipeError(f"{where}: unknown table(s) {', '.join(unknown)}; known: name, {', '.join(_TABLES)}")
    parts = {key: _build(cls, data.get(key, {}), f"{where} [{key}]") for key, cls in _TABLES.items()}
    recipe = Recipe(name=str(data.get("name", Recipe.name)), **parts)
    check(recipe)
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"no recipe file at {path} (the shipped default's is configs/emoadapt-ier.toml)")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    return recipe_from_dict(data, str(path))


def check(recipe: Recipe) -> None:
    """Refuse values no step accepts, before any image is read."""
    from ..adapt.config import DISCREPANCY_NAMES
    from ..data.transforms import FITS

    head, output = recipe.head, recipe.output
    if recipe.scene.variant not in ("lite0", "lite1", "lite2"):
        raise RecipeError(f"[scene] variant must be lite0, lite1 or lite2, got {recipe.scene.variant!r}")
    stages = recipe.scene.stages
    if list(stages) != sorted(set(stages)) or not all(1 <= k <= 7 for k in stages):
        raise RecipeError(f"[scene] stages must be increasing EfficientNet stages from 1 to 7, got {list(stages)}")
    if head.discrepancy not in DISCREPANCY_NAMES:
        raise RecipeError(f"[head] discrepancy must be one of {', '.join(DISCREPANCY_NAMES)}, got {head.discrepancy!r}")
    if not recipe.data.source and (head.alpha > 0 or (head.discrepancy != "none" and head.lam > 0)):
        raise RecipeError("[head] alpha and lam need source faces: set [data] source = \"fer2013\" or set them to 0")
    if output.fit not in FITS:
        raise RecipeError(f"[output] fit must be one of {', '.join(FITS)}, got {output.fit!r}")
    if output.tta not in ("flip", "none"):
        raise RecipeError(f"[output] tta must be flip or none, got {output.tta!r}")
    for name in ("epochs", "batch_size", "views"):
        if getattr(head, name) < 1:
            raise RecipeError(f"[head] {name} must be at least 1, got {getattr(head, name)}")
    if head.hidden < 0 or recipe.scene.input_size < 32:
        raise RecipeError("[head] hidden must be >= 0 and [scene] input_size >= 32")
    if head.experts and head.hidden:
        raise RecipeError("[head] experts = true needs hidden = 0 (linear experts)")
    if output.ood not in ("energy", "mahalanobis"):
        raise RecipeError(f"[output] ood must be energy or mahalanobis, got {output.ood!r}")
    if head.experts and output.ood == "energy":
        raise RecipeError("[output] ood = \"energy\" is constant for experts (their logits are normalised log "
                          "probabilities): use ood = \"mahalanobis\"")
    if head.solver not in ("adamw", "lbfgs"):
        raise RecipeError(f"[head] solver must be adamw or lbfgs, got {head.solver!r}")
    if head.solver == "lbfgs" and (head.hidden or (head.discrepancy != "none" and head.lam > 0)):
        raise RecipeError("[head] solver = \"lbfgs\" fits linear heads (hidden = 0); a discrepancy on frozen "
                          "features is a constant there: set discrepancy = \"none\" or use adamw")
