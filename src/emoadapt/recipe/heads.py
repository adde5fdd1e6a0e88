"""Step 4 of ``emoadapt train``: the head on the cached features, trained with the paper's loss or fitted by L-BFGS."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..data.labels import FER_CLASSES, FER_TO_IER, IER_CLASSES
from .config import Recipe, RecipeError


def adapt_config(recipe: Recipe, epochs: int | None = None):
    """The :class:`~emoadapt.adapt.config.AdaptConfig` of the head step (cached protocol)."""
    from ..adapt.config import AdaptConfig

    head = recipe.head
    return AdaptConfig(init="recipe", input_size=recipe.scene.input_size, discrepancy=head.discrepancy, lam=head.lam,
                       alpha=head.alpha, layer=head.layer, freeze="features", epochs=epochs or head.epochs,
                       batch_size=head.batch_size, lr=head.lr, backbone_lr_scale=1.0, weight_decay=head.weight_decay,
                       label_smoothing=head.label_smoothing, source_limit=recipe.data.source_limit,
                       views=head.views, seed=head.seed)


def as_maps(features: np.ndarray) -> torch.Tensor:
    """(…, C) → (…, C, 1, 1) float32: what FusionNet.forward_head takes."""
    return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[..., None, None]


def train_head(recipe: Recipe, model, data: dict[str, Any], train: np.ndarray, val: np.ndarray, run: Path,
               classes: tuple[str, ...], progress: bool = False):
    """Train the head of ``model`` (a start FusionNet, changed in place) on the cached features of
    the labelled images ``train`` (indices), validating on ``val``; returns the trained model
    (``head.safetensors`` in ``run``: the weights after the recipe's fixed epochs; the training
    state ``last.safetensors`` resumes an interrupted run; ``best.safetensors`` is the best
    validation epoch, for information)."""
    from ..adapt.train import adapt
    from ..models.registry import load_model
    from ..models.weights import save_weights

    trained = run / "head.safetensors"
    if trained.exists():  # resumed: this fold's (or the final) head is done
        return load_model(trained)[0]
    cfg = adapt_config(recipe)
    views_t = data["target"][:recipe.head.train_views or None, train]
    faces = "faces_train" in data
    use_faces = faces and (cfg.alpha > 0 or (cfg.discrepancy != "none" and cfg.lam > 0))
    fit_on = [views_t.reshape(-1, views_t.shape[-1])] + ([data["faces_train"].reshape(-1, views_t.shape[-1])]
                                                         if use_faces else [])
    model.fit_standardisation(torch.from_numpy(np.concatenate(fit_on)))
    # FER labels are what adapt() maps onto the IER classes: give it FER indices of the mapped faces
    source_labels = fer_indices(data["faces_train_labels"]) if use_faces else np.zeros(0, np.int64)
    cached = {"target": as_maps(views_t), "val": as_maps(data["target"][0, val]),
              "source": as_maps(data["faces_train"]) if use_faces else None}
    if recipe.head.solver == "lbfgs":
        fit = fit_domain_experts if recipe.head.experts else fit_linear_head
        fit(model, views_t.reshape(-1, views_t.shape[-1]), np.tile(data["target_labels"][train], len(views_t)),
            data["faces_train"].reshape(-1, views_t.shape[-1]) if use_faces else None,
            np.tile(data["faces_train_labels"], 2) if use_faces else None, recipe.head)
    else:
        empty = np.zeros((0, 1, 1, 3), np.uint8)
        adapt((empty, data["target_labels"][train]), (empty, data["target_labels"][val]),
              (empty, source_labels), cfg, run, resume=(run / "last.safetensors").exists(), progress=progress,
              model=model, cached=cached, classes=classes)
    save_weights(trained, model, model.config.to_dict(), {"classes": list(classes), "recipe_step": "head"})
    return model.eval()


def lbfgs_fit(layer: torch.nn.Linear, loss_of: Callable[[torch.nn.Linear], torch.Tensor], l2: float) -> None:
    """Minimise ``loss_of(layer) + l2/2 · |layer.weight|²`` over the layer's weight and bias (full
    batch, L-BFGS with a strong-Wolfe line search: the objectives here are convex)."""
    optimiser = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=300, history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-10)

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_of(layer) + l2 / 2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(objective)


def fit_domain_experts(model, target: np.ndarray, target_labels: np.ndarray, faces: np.ndarray | None,
                       face_labels: np.ndarray | None, head) -> None:
    """A FusionNet with experts fitted in three convex parts (full batch, L-BFGS): the scene expert
    ``CE(target)`` on the scene features, the face expert ``alpha · CE(faces)`` on the face features
    (the paper's two classification terms, each on its own branch), and the gate, a logistic
    regression on all features telling faces from the labelled images (class-balanced), which
    routes an image to one expert or the other; the shared expert is switched off (gate −30)."""
    from torch.nn import functional as F

    from ..models.fusion import BRANCHES

    if faces is None:
        raise RecipeError("[head] experts need source faces ([data] source = \"fer2013\", alpha > 0)")
    torch.manual_seed(head.seed)
    z_t = (torch.from_numpy(target).float() - model.feature_mean) / model.feature_std
    z_s = (torch.from_numpy(faces).float() - model.feature_mean) / model.feature_std
    y_t, y_s = torch.from_numpy(target_labels).long(), torch.from_numpy(face_labels).long()
    parts_t, parts_s = model.split_features(z_t), model.split_features(z_s)
    smooth = head.label_smoothing
    lbfgs_fit(model.expert_heads["scene"], lambda l: F.cross_entropy(l(parts_t["scene"]), y_t, label_smoothing=smooth),
              head.l2)
    lbfgs_fit(model.expert_heads["face"], lambda l: F.cross_entropy(l(parts_s["face"]), y_s, label_smoothing=smooth),
              head.l2)
    both = torch.cat([z_t, z_s])
    is_face = torch.cat([torch.zeros(len(z_t)), torch.ones(len(z_s))])
    weight = torch.cat([torch.full((len(z_t),), 0.5 / len(z_t)), torch.full((len(z_s),), 0.5 / len(z_s))])
    domain = torch.nn.Linear(both.shape[1], 1)
    lbfgs_fit(domain, lambda l: (F.binary_cross_entropy_with_logits(l(both)[:, 0], is_face, reduction="none")
                                 * weight).sum(), head.l2)
    with torch.no_grad():  # gate rows: shared (off), face (the domain logit), scene (0)
        model.gate.weight.zero_()
        model.gate.bias.copy_(torch.tensor([-30.0, 0.0, 0.0]))
        model.gate.weight[1 + BRANCHES.index("face")] = domain.weight[0]
        model.gate.bias[1 + BRANCHES.index("face")] = domain.bias[0]
        model.classifier[-1].weight.zero_()
        model.classifier[-1].bias.zero_()
    model.train(False)


def fit_linear_head(model, target: np.ndarray, target_labels: np.ndarray, faces: np.ndarray | None,
                    face_labels: np.ndarray | None, head) -> None:
    """The linear classifier of ``model`` fitted full batch (L-BFGS) on the convex objective
    ``CE(target, smoothing) + alpha · CE(faces, smoothing) + l2/2 · |W|²`` — the paper's loss for a
    linear head on frozen features (a discrepancy there would be a constant) with the
    regularisation of a logistic regression. Features: (n, C) pooled, standardised by the model."""
    from torch.nn import functional as F

    torch.manual_seed(head.seed)
    layer = model.classifier[-1]

    def standardised(x: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(x).float() - model.feature_mean) / model.feature_std

    z_t, y_t = standardised(target), torch.from_numpy(target_labels).long()
    z_s = standardised(faces) if faces is not None else None
    y_s = torch.from_numpy(face_labels).long() if face_labels is not None else None

    def loss_of(linear: torch.nn.Linear) -> torch.Tensor:
        loss = F.cross_entropy(linear(z_t), y_t, label_smoothing=head.label_smoothing)
        if z_s is not None and head.alpha > 0:
            loss = loss + head.alpha * F.cross_entropy(linear(z_s), y_s, label_smoothing=head.label_smoothing)
        return loss

    lbfgs_fit(layer, loss_of, head.l2)
    model.train(False)


def fer_indices(ier_labels: np.ndarray) -> np.ndarray:
    """IER labels of mapped faces → the FER class indices they came from (inverse of the map)."""
    back = {IER_CLASSES.index(ier): FER_CLASSES.index(fer) for fer, ier in FER_TO_IER.items()}
    return np.array([back[int(y)] for y in ier_labels], dtype=np.int64)


@torch.inference_mode()
def head_logits(model, features: np.ndarray, tta: str) -> np.ndarray:
    """Logits (N, K) float64 of the head on cached features (V, N, C) (view 0 = the input fit,
    view 1 = its mirror image): the plain view, or with ``tta="flip"`` the log of the softmax
    averaged over both views (so ``softmax(logits)`` is what ``predict`` reports before calibration)."""
    model.eval()
    plain = model.forward_head(as_maps(features[0])).double()
    if tta != "flip":
        return plain.numpy()
    mirrored = model.forward_head(as_maps(features[1])).double()
    return torch.log((plain.softmax(1) + mirrored.softmax(1)) / 2).numpy()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan")


def face_scores(model, data: dict[str, Any], tta: str) -> dict[str, float]:
    """4-class accuracy on FER2013 PublicTest (``faces_val``) and PrivateTest (``faces_test``)."""
    return {f"faces_{name}": accuracy(head_logits(model, data[f"faces_{name}"], tta), data[f"faces_{name}_labels"])
            for name in ("val", "test") if f"faces_{name}" in data}


