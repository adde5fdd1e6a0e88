"""Steps 1–2 of ``emoadapt train``: the face (FER) branch and the start model (FusionNet)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..data.labels import FER_CLASSES
from .config import Progress, Recipe, RecipeError, print_progress


def face_branch(recipe: Recipe, out: Path, say: Progress = print_progress) -> Path:
    """Step 1: ``out/face.safetensors``, a 7-class EfficientNet-Lite FER model."""
    from ..models.registry import load_model, resolve_model
    from ..models.weights import save_weights

    path = out / "face.safetensors"
    if path.exists():
        return path
    spec = recipe.face
    if spec.source == "train-fer":
        from ..training.config import TrainConfig
        from ..training.fer import train_fer

        say(f"[face] train-fer --model {spec.model} --epochs {spec.epochs} --lr {spec.lr} --seed {spec.seed}")
        run = out / "train-fer"
        train_fer(run, preset=spec.model, cfg=TrainConfig(epochs=spec.epochs, lr=spec.lr, seed=spec.seed),
                  resume=(run / "last.safetensors").exists())
        model, meta = load_model(run / "best.safetensors")
    else:
        model, meta = resolve_model(spec.source)
        if hasattr(model, "branches"):  # a FusionNet: take its face branch
            model = model.branches["face"]
            meta = {"classes": list(FER_CLASSES), "from": f"{spec.source} (face branch)"}
    if type(model).__name__ != "EfficientNetLite":
        raise RecipeError(f"[face] {spec.source}: the face branch must be an EfficientNet-Lite FER model")
    save_weights(path, model, model.config.to_dict(), {**meta, "recipe_step": "face"})
    return path


def start_model(recipe: Recipe, face_path: Path, classes: tuple[str, ...]):
    """Step 2: FusionNet(face branch, ImageNet scene branch) with a fresh, seeded head."""
    from ..models.efficientnet_lite import EfficientNetLite, EfficientNetLiteConfig
    from ..models.fusion import FusionConfig, FusionNet
    from ..models.registry import load_imagenet_init, load_model

    torch.manual_seed(recipe.head.seed)  # every new layer (the scene branch's unused head too) is seeded
    face, _ = load_model(face_path)
    scene = load_imagenet_init(EfficientNetLite(EfficientNetLiteConfig(
        variant=recipe.scene.variant, num_classes=len(classes), input_size=recipe.scene.input_size)))
    head = recipe.head
    config = FusionConfig(face=face.config.to_dict(), scene=scene.config.to_dict(), hidden=head.hidden,
                          num_classes=len(classes), input_size=recipe.scene.input_size, dropout=head.dropout,
                          input_dropout=head.input_dropout, experts=head.experts,
                          scene_stages=recipe.scene.stages)
    model = FusionNet(config)
    model.branches["face"].load_state_dict(face.state_dict())
    model.branches["scene"].load_state_dict(scene.state_dict())
    return model.eval()


def branches_digest(model) -> str:
    """A short hash of the branches' weights and of which stages are pooled (what the feature cache
    depends on)."""
    digest = hashlib.sha256()
    if model.config.scene_stages:  # wider features: not the cache of the last map alone
        digest.update(f"scene_stages={list(model.config.scene_stages)}".encode())
    for name, value in sorted(model.branches.state_dict().items()):
        if ".classifier." in name or ".dense." in name:  # the branches' own heads: unused by the features
            continue
        digest.update(name.encode())
        digest.update(value.detach().float().numpy().tobytes())
    return digest.hexdigest()[:16]


