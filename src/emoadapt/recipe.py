"""``emoadapt train``: make a FusionNet model from data, end to end, from a recipe file.

Steps (each writes its result into the run folder and is skipped when that result exists, so an
interrupted run resumes where it stopped):

1. ``face``     the face (FER) branch: trained with ``train-fer`` or taken from a weights file
                (``face.safetensors``).
2. ``start``    FusionNet = face branch ⊕ ImageNet EfficientNet-Lite scene branch, fresh head.
3. ``encode``   the frozen branches' pooled features (N, C_face + C_scene) of every labelled image
                in ``views`` training views (the product's own input fit, its mirror image, then
                seeded random resized crops) and of the source faces (plain and mirrored);
                cached in ``features/`` in chunks (an interrupted encoding resumes by chunk).
4. ``head``     the head trained on the cache with the paper's loss
                ``CE(target) + α·CE(source faces, mapped) + λ·D`` (:func:`emoadapt.adapt.train.adapt`,
                cached protocol): per fold for ``--cv``, or on every labelled image for the final
                model, for the recipe's fixed number of epochs.
5. ``calibrate`` temperature and OOD threshold from the CV folds' out-of-fold outputs (the final
                model has no held-out images of its own).
6. ``affect``   valence / arousal / 7-way distribution heads (Emotion6 ground truth only).
7. ``ship``     ``model.safetensors`` (fp16) + ``model.calibration.json`` + ``model.affect.safetensors``
                + ``model.md`` (the card) + ``model.json`` (the registry entry to copy into
                ``src/emoadapt/weights/registry.json``).

A test image is scored as ``predict`` scores it: the input fit, then (``tta = "flip"``) the softmax
averaged over the image and its mirror image.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .data.labels import FER_CLASSES, FER_TO_IER, IER_CLASSES
from .fileio import atomic_path, atomic_write_json
from .recipe_config import Recipe, RecipeError

Progress = Callable[[str], None]


def _say(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------- data
def target_dataset(recipe: Recipe):
    """The labelled images, relabelled onto their model classes: ``(dataset, classes)``.

    The IER classes when the layout maps onto them (or ``label_map`` says how), else the folder's
    own classes (a user's label set)."""
    from .data import open_dataset
    from .data.locate import KNOWN, dataset_path

    spec = recipe.data
    path = dataset_path(spec.target) if spec.target in KNOWN else Path(spec.target)
    dataset = open_dataset(path, spec.layout)
    if spec.label_map:
        mapping = parse_label_map(spec.label_map)
        missing = sorted(set(dataset.classes) - set(mapping))
        if missing:
            raise RecipeError(f"[data] label_map has no entry for class(es) {', '.join(missing)} of {path}")
        labels = set(mapping.values())
        classes = IER_CLASSES if labels == set(IER_CLASSES) else tuple(sorted(labels))
        samples = [replace(s, label=mapping[s.label]) for s in dataset.samples]
        return replace(dataset, samples=samples, classes=classes, to_ier=None), classes
    if dataset.to_ier is not None:
        return dataset.to_ier_dataset(), IER_CLASSES
    return dataset, tuple(dataset.classes)


def parse_label_map(text: str) -> dict[str, str]:
    """``"joy=happy,sadness=sad"`` → ``{"joy": "happy", "sadness": "sad"}``."""
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            raise RecipeError(f"label_map entries are FOLDER=CLASS, got {item!r}")
        folder, label = (side.strip() for side in item.split("=", 1))
        pairs[folder] = label
    return pairs


def sample_keys(dataset) -> list[str]:
    from .data.splits import sample_key

    return [sample_key(s, dataset.root) for s in dataset.samples]


def fold_plan(recipe: Recipe, dataset, out: Path) -> dict[str, str]:
    """``{sample key: "fold<k>"}`` from the recipe's manifest, or 5 new seeded folds (written to
    ``out/folds.json``)."""
    from .data.splits import kfold_dataset, read_manifest, write_manifest

    keys = sample_keys(dataset)
    if recipe.data.folds and Path(recipe.data.folds).exists():
        assignments = read_manifest(recipe.data.folds).assignments
    else:
        path = out / "folds.json"
        if not path.exists():
            write_manifest(kfold_dataset(dataset, folds=5, seed=0), path)
        assignments = read_manifest(path).assignments
    missing = [k for k in keys if k not in assignments]
    if missing:
        raise RecipeError(f"{len(missing)} images are in no fold of the manifest (e.g. {missing[0]}); "
                          "set [data] folds = \"\" to make new folds")
    return {k: assignments[k] for k in keys}


def source_face_samples(recipe: Recipe, split: str, limit: int | None) -> tuple[list, np.ndarray]:
    """FER2013 faces of ``split`` whose class maps onto an IER class: samples and IER labels
    (at most ``limit``, a seeded choice)."""
    from .data.fer2013 import read_fer2013
    from .data.locate import dataset_path

    fer = read_fer2013(dataset_path("fer2013")).split(split)
    samples = [s for s in fer.samples if s.label in FER_TO_IER]
    if limit is not None and limit < len(samples):
        keep = np.sort(np.random.default_rng(0).permutation(len(samples))[:limit])
        samples = [samples[i] for i in keep]
    return samples, np.array([IER_CLASSES.index(FER_TO_IER[s.label]) for s in samples])


# ----------------------------------------------------------------------------- steps 1–2: models
def face_branch(recipe: Recipe, out: Path, say: Progress = _say) -> Path:
    """Step 1: ``out/face.safetensors``, a 7-class EfficientNet-Lite FER model."""
    from .models.registry import load_model, resolve_model
    from .models.weights import save_weights

    path = out / "face.safetensors"
    if path.exists():
        return path
    spec = recipe.face
    if spec.source == "train-fer":
        from .training.config import TrainConfig
        from .training.fer import train_fer

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
    from .models.efficientnet_lite import EfficientNetLite, EfficientNetLiteConfig
    from .models.fusion import FusionConfig, FusionNet
    from .models.registry import load_imagenet_init, load_model

    torch.manual_seed(recipe.head.seed)  # every new layer (the scene branch's unused head too) is seeded
    face, _ = load_model(face_path)
    scene = load_imagenet_init(EfficientNetLite(EfficientNetLiteConfig(
        variant=recipe.scene.variant, num_classes=len(classes), input_size=recipe.scene.input_size)))
    head = recipe.head
    config = FusionConfig(face=face.config.to_dict(), scene=scene.config.to_dict(), hidden=head.hidden,
                          num_classes=len(classes), input_size=recipe.scene.input_size, dropout=head.dropout,
                          input_dropout=head.input_dropout, experts=head.experts)
    model = FusionNet(config)
    model.branches["face"].load_state_dict(face.state_dict())
    model.branches["scene"].load_state_dict(scene.state_dict())
    return model.eval()


def branches_digest(model) -> str:
    """A short hash of the branches' weights (what the feature cache depends on)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.branches.state_dict().items()):
        if ".classifier." in name or ".dense." in name:  # the branches' own heads: unused by the features
            continue
        digest.update(name.encode())
        digest.update(value.detach().float().numpy().tobytes())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- step 3: features
def view_images(path: str, size: int, fit: str, views: int, boxes: np.ndarray | None) -> list[np.ndarray]:
    """The views of one image as float32 (3, size, size) in [0, 1]: the input fit (view 0), its
    mirror image (view 1), then random resized crops of the original picture (``boxes`` (V−2, 5)
    from :func:`emoadapt.adapt.views.crop_boxes`), each resized to size × size (bilinear)."""
    from PIL import Image

    from .data.decode import decode_image
    from .data.transforms import image_to_tensor

    picture = decode_image(path, mode="RGB")
    plain = image_to_tensor(picture, size, 3, fit)
    out = [plain, plain.flip(2)][:views]
    width, height = picture.size
    for x0, y0, x1, y1, mirror in (boxes if boxes is not None else []):
        crop = picture.resize((size, size), Image.Resampling.BILINEAR,
                              box=(x0 * width, y0 * height, x1 * width, y1 * height))
        if mirror:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255.0).permute(2, 0, 1))
    return [v.numpy() for v in out]


class FeatureEncoder:
    """The frozen branches' pooled features through onnxruntime (the ``features`` tap)."""

    def __init__(self, model, threads: int | None = None):
        from .models.onnx import onnx_session

        self.session = onnx_session(model, threads=threads, taps=("features",))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.session.get_inputs()[0].name: batch.astype(np.float32)})[0]


def encode_paths(encoder: FeatureEncoder, paths: list[str], cache: Path, *, size: int, fit: str, views: int,
                 seed: int = 0, chunk: int = 64, say: Progress = _say, label: str = "images") -> np.ndarray:
    """(V, N, C) float32 features of ``paths`` in ``views`` views, cached under ``cache`` one chunk
    of ``chunk`` images per file (an interrupted encoding resumes at the first missing chunk)."""
    from .adapt.views import crop_boxes

    cache.mkdir(parents=True, exist_ok=True)
    boxes = crop_boxes(len(paths), views, seed)[2:] if views > 2 else None
    parts = []
    started, total = time.time(), len(paths)
    for first in range(0, total, chunk):
        part = cache / f"part-{first // chunk:05d}.npy"
        if not part.exists():
            batch = [view_images(paths[i], size, fit, views, None if boxes is None else boxes[:, i])
                     for i in range(first, min(first + chunk, total))]
            stacked = np.stack(batch, 1)  # (V, n, 3, S, S)
            v, n = stacked.shape[:2]
            features = encoder(stacked.reshape(v * n, *stacked.shape[2:])).reshape(v, n, -1)
            with atomic_path(part, suffix=".npy") as tmp:
                np.save(tmp, features.astype(np.float32))
            done = min(first + chunk, total)
            say(f"[encode] {label}: {done}/{total} ({views} views, {time.time() - started:.0f} s)")
        parts.append(np.load(part))
    return np.concatenate(parts, 1)


def encode_all(recipe: Recipe, model, dataset, out: Path, say: Progress = _say) -> dict[str, Any]:
    """Step 3: every feature the head steps need, cached under ``$EMOADAPT_CACHE/features/<branches
    hash>`` (shared by the runs of an ablation).

    Returns ``{"target": (V, N, C), "target_labels": (N,), "keys": [...],
    "faces_train": (2, Ns, C), "faces_train_labels", "faces_val": (2, Nv, C), …, "faces_test" …}``
    (faces: IER labels; ``val`` = PublicTest, ``test`` = PrivateTest; absent without source faces)."""
    from .data.arrays import DEFAULT_CACHE

    fit, size = recipe.output.fit, recipe.scene.input_size
    # shared by every run with the same branches (an ablation's runs encode once): $EMOADAPT_CACHE/features
    root = DEFAULT_CACHE / "features" / branches_digest(model)
    encoder = FeatureEncoder(model)
    index = {c: i for i, c in enumerate(dataset.classes)}
    paths = [s.path for s in dataset.samples]
    listing = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:12]  # which images, in which order
    data: dict[str, Any] = {"keys": sample_keys(dataset), "target_labels": np.array([index[s.label] for s in dataset.samples]),
                            "target": encode_paths(encoder, paths, root / f"target-{listing}-{fit}-{size}-v{recipe.head.views}",
                                                   size=size, fit=fit, views=recipe.head.views, say=say,
                                                   label="labelled images")}
    if recipe.data.source and tuple(dataset.classes) == IER_CLASSES:
        for name, split, limit in (("train", "Training", recipe.data.source_limit), ("val", "PublicTest", None),
                                   ("test", "PrivateTest", None)):
            samples, labels = source_face_samples(recipe, split, limit)
            data[f"faces_{name}"] = encode_paths(encoder, [s.path for s in samples],
                                                 root / f"faces-{split}-{limit}-{fit}-{size}", size=size, fit=fit,
                                                 views=2, say=say, label=f"FER2013 {split} faces")
            data[f"faces_{name}_labels"] = labels
    return data


# ----------------------------------------------------------------------------- step 4: the head
def adapt_config(recipe: Recipe, epochs: int | None = None):
    """The :class:`~emoadapt.adapt.config.AdaptConfig` of the head step (cached protocol)."""
    from .adapt.config import AdaptConfig

    head = recipe.head
    return AdaptConfig(init="recipe", input_size=recipe.scene.input_size, discrepancy=head.discrepancy, lam=head.lam,
                       alpha=head.alpha, layer=head.layer, freeze="features", epochs=epochs or head.epochs,
                       batch_size=head.batch_size, lr=head.lr, backbone_lr_scale=1.0, weight_decay=head.weight_decay,
                       label_smoothing=head.label_smoothing, source_limit=recipe.data.source_limit,
                       views=head.views, seed=head.seed)


def _as_maps(features: np.ndarray) -> torch.Tensor:
    """(…, C) → (…, C, 1, 1) float32: what FusionNet.forward_head takes."""
    return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[..., None, None]


def train_head(recipe: Recipe, model, data: dict[str, Any], train: np.ndarray, val: np.ndarray, run: Path,
               classes: tuple[str, ...], progress: bool = False):
    """Train the head of ``model`` (a start FusionNet, changed in place) on the cached features of
    the labelled images ``train`` (indices), validating on ``val``; returns the trained model
    (``head.safetensors`` in ``run``: the weights after the recipe's fixed epochs; the training
    state ``last.safetensors`` resumes an interrupted run; ``best.safetensors`` is the best
    validation epoch, for information)."""
    from .adapt.train import adapt
    from .models.registry import load_model
    from .models.weights import save_weights

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
    cached = {"target": _as_maps(views_t), "val": _as_maps(data["target"][0, val]),
              "source": _as_maps(data["faces_train"]) if use_faces else None}
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

    from .models.fusion import BRANCHES

    if faces is None:
        raise RecipeError("[head] experts need source faces ([data] source = \"fer2013\", alpha > 0)")
    torch.manual_seed(head.seed)
    widths = [model.branches[name].feature_channels for name in BRANCHES]
    z_t = (torch.from_numpy(target).float() - model.feature_mean) / model.feature_std
    z_s = (torch.from_numpy(faces).float() - model.feature_mean) / model.feature_std
    y_t, y_s = torch.from_numpy(target_labels).long(), torch.from_numpy(face_labels).long()
    parts_t, parts_s = dict(zip(BRANCHES, z_t.split(widths, 1))), dict(zip(BRANCHES, z_s.split(widths, 1)))
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
    plain = model.forward_head(_as_maps(features[0])).double()
    if tta != "flip":
        return plain.numpy()
    mirrored = model.forward_head(_as_maps(features[1])).double()
    return torch.log((plain.softmax(1) + mirrored.softmax(1)) / 2).numpy()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan")


def face_scores(model, data: dict[str, Any], tta: str) -> dict[str, float]:
    """4-class accuracy on FER2013 PublicTest (``faces_val``) and PrivateTest (``faces_test``)."""
    return {f"faces_{name}": accuracy(head_logits(model, data[f"faces_{name}"], tta), data[f"faces_{name}_labels"])
            for name in ("val", "test") if f"faces_{name}" in data}


# ----------------------------------------------------------------------------- CV and the final fit
def cross_validate(recipe: Recipe, out: Path, say: Progress = _say, folds: list[int] | None = None,
                   mode: str = "final") -> dict:
    """The recipe's k-fold CV on the labelled images, each fold's head trained for the recipe's fixed
    epochs and scored on test fold k as ``predict`` scores.

    ``mode="final"``: the head trains on every other fold — the estimate of the shipped fit (which
    trains on every image); ``out/cv.json``, whose out-of-fold outputs calibrate the model.
    ``mode="select"``: fold k+1 is held out for validation and the head trains on the rest — for
    choosing between recipes on validation scores; ``out/cv-select.json``.
    Rows hold test (and in ``select`` mode validation) accuracy, FER2013 PublicTest/PrivateTest
    4-class accuracy and the out-of-fold logits."""
    if mode not in ("final", "select"):
        raise RecipeError(f"CV mode must be final or select, got {mode!r}")
    dataset, classes = target_dataset(recipe)
    start = start_model(recipe, face_branch(recipe, out, say), classes)
    data = encode_all(recipe, start, dataset, out, say)
    plan = fold_plan(recipe, dataset, out)
    assigned = np.array([plan[k] for k in data["keys"]])
    names = sorted(set(assigned))
    result_path = out / ("cv.json" if mode == "final" else "cv-select.json")
    result = json.loads(result_path.read_text()) if result_path.exists() else {"folds": {}}
    for k, name in enumerate(names):
        if (folds is not None and k not in folds) or name in result["folds"]:
            continue
        val_name = names[(k + 1) % len(names)]
        test, val = np.flatnonzero(assigned == name), np.flatnonzero(assigned == val_name)
        train = np.flatnonzero((assigned != name) & ((assigned != val_name) | (mode == "final")))
        model = start_model(recipe, out / "face.safetensors", classes)
        model = train_head(recipe, model, data, train, val, out / f"cv-{mode}" / name, classes)
        logits = head_logits(model, data["target"][:, test], recipe.output.tta)
        row = {"test": accuracy(logits, data["target_labels"][test]), **face_scores(model, data, recipe.output.tta),
               "n_train": int(len(train)), "n_test": int(len(test)), "test_index": test.tolist(),
               "test_logits": np.round(logits, 6).tolist()}
        if mode == "select":
            row["val"] = accuracy(head_logits(model, data["target"][:, val], recipe.output.tta),
                                  data["target_labels"][val])
        result["folds"][name] = row
        say(f"[cv {mode}] {name}: " + " ".join(f"{key} {row[key]:.4f}" for key in
                                              ("test", "val", "faces_val", "faces_test") if key in row))
        result.update(summary(result["folds"]), mode=mode, recipe=recipe.to_dict(), classes=list(classes))
        atomic_write_json(result_path, result)
    return result


def summary(folds: dict[str, dict]) -> dict[str, Any]:
    """Mean and sample standard deviation over folds of each score."""
    out = {}
    for key in ("test", "val", "faces_val", "faces_test"):
        values = [row[key] for row in folds.values() if key in row]
        if values:
            out[f"{key}_mean"] = float(np.mean(values))
            out[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def train_final(recipe: Recipe, out: Path, say: Progress = _say):
    """The shipped fit: the head on every labelled image for the recipe's fixed epochs (chosen
    beforehand by CV); returns the model (``out/final/head.safetensors``)."""
    dataset, classes = target_dataset(recipe)
    start = start_model(recipe, face_branch(recipe, out, say), classes)
    data = encode_all(recipe, start, dataset, out, say)
    everything = np.arange(len(data["target_labels"]))
    # no held-out images: the head trains on every one for the fixed epochs; every 16th is "validated" for the log
    model = train_head(recipe, start, data, everything, everything[::16], out / "final", classes)
    return model, data, classes


# ----------------------------------------------------------------------------- steps 5–7
def cv_view_logits(recipe: Recipe, out: Path, data: dict[str, Any], classes) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold raw logits of every CV test image in both views (2, N, K) and their labels,
    from the fold heads in ``out/cv-final/<fold>/head.safetensors``."""
    from .models.registry import load_model

    cv = json.loads((out / "cv.json").read_text())
    views, labels = [], []
    for name, row in sorted(cv["folds"].items()):
        model, _ = load_model(out / "cv-final" / name / "head.safetensors")
        test = np.array(row["test_index"])
        with torch.inference_mode():
            views.append(np.stack([model.forward_head(_as_maps(data["target"][v, test])).double().numpy()
                                   for v in (0, 1)]))
        labels.append(data["target_labels"][test])
    return np.concatenate(views, 1), np.concatenate(labels)


def mahalanobis_from_cv(model, data: dict[str, Any], cv: dict[str, Any], quantile: float) -> dict[str, Any]:
    """The Mahalanobis OOD score of ``model``'s ``pre_logits`` features (the standardised fused
    features of a linear head): the threshold at ``quantile`` of the out-of-fold scores (each CV
    fold's Gaussian fitted on its training images, plain and mirrored, scoring its test images,
    the two views averaged as ``predict`` averages them), and the Gaussian of every image."""
    from .models.calibration import fit_gaussian, mahalanobis_scores

    with torch.inference_mode():
        views = [model.forward_head(_as_maps(data["target"][v]), pre_logits=True).double().numpy() for v in (0, 1)]
    scores = []
    for row in cv["folds"].values():
        test = np.array(row["test_index"])
        train = np.setdiff1d(np.arange(len(views[0])), test)
        gaussian = fit_gaussian(np.concatenate([views[0][train], views[1][train]]))
        scores.append((mahalanobis_scores(views[0][test], **gaussian) + mahalanobis_scores(views[1][test], **gaussian)) / 2)
    gaussian = fit_gaussian(np.concatenate(views))
    return {"ood_threshold": float(np.quantile(np.concatenate(scores), quantile)), **gaussian}


def calibrate_from_cv(recipe: Recipe, out: Path, data: dict[str, Any], classes, weights_sha256: str, command: str,
                      model=None):
    """Step 5: the temperature minimising the out-of-fold NLL (each view a sample, as ``predict``
    scales every pass) and the OOD threshold at the recipe's quantile of the out-of-fold scores
    (averaged over the two views, as ``predict`` averages them): ``energy`` of the logits, or
    ``mahalanobis`` of ``model``'s ``pre_logits`` features (:func:`mahalanobis_from_cv`)."""
    from .models.calibration import (Calibration, energy_scores, expected_calibration_error, fit_temperature,
                                      softmax)

    logits, labels = cv_view_logits(recipe, out, data, classes)
    temperature = fit_temperature(logits.reshape(-1, logits.shape[-1]), np.tile(labels, 2))
    probs_before = (softmax(logits[0]) + softmax(logits[1])) / 2
    probs_after = (softmax(logits[0] / temperature) + softmax(logits[1] / temperature)) / 2
    energy = (energy_scores(logits[0]) + energy_scores(logits[1])) / 2
    fitted = {"model": recipe.name, "weights_sha256": weights_sha256, "fit": recipe.output.fit,
              "tta": recipe.output.tta, "data": "out-of-fold outputs of the recipe's 5-fold CV",
              "n_val": int(len(labels)), "ood_quantile": recipe.output.ood_quantile,
              "val_accuracy": round(float((probs_after.argmax(1) == labels).mean()), 4),
              "val_ece_before": round(expected_calibration_error(probs_before, labels), 4),
              "val_ece_after": round(expected_calibration_error(probs_after, labels), 4),
              "command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if recipe.output.ood == "mahalanobis":
        cv = json.loads((out / "cv.json").read_text())
        ood = mahalanobis_from_cv(model, data, cv, recipe.output.ood_quantile)
        fitted["n_train"] = int(len(data["target_labels"]))
    else:
        ood = {"ood_threshold": float(np.quantile(energy, recipe.output.ood_quantile))}
    return Calibration(temperature=round(float(temperature), 6), ood_kind=recipe.output.ood, fitted=fitted, **ood)


def fit_affect(recipe: Recipe, out: Path, model, say: Progress = _say):
    """Step 6: affect heads on the final model's features of every Emotion6 image (six folders,
    plain and mirrored), chosen on a seeded 15 % validation share and fitted on the rest; returns
    ``(heads, record)`` or ``(None, reason)`` when the labelled images are not Emotion6."""
    from .data import open_dataset
    from .data.locate import KNOWN, dataset_path
    from .training.affect_fit import choose_and_fit, head_predict, scores, subset, targets

    if recipe.data.target != "emotion6" or not recipe.output.affect:
        return None, "affect heads need Emotion6's valence, arousal and votes ([data] target = \"emotion6\")"
    dataset = open_dataset(dataset_path("emotion6") if "emotion6" in KNOWN else recipe.data.target, "emotion6")
    dataset = dataset.subset(lambda s: "valence" in s.meta, name="emotion6-affect")
    cache_file = out / "affect-features.npz"
    if not cache_file.exists():
        encoder = FeatureEncoder(model)
        from .data.arrays import DEFAULT_CACHE

        raw = encode_paths(encoder, [s.path for s in dataset.samples],
                           DEFAULT_CACHE / "features" / branches_digest(model) / f"emotion6-all-{recipe.output.fit}",
                           size=recipe.scene.input_size, fit=recipe.output.fit, views=2, say=say,
                           label="Emotion6 (all six folders)")
        cache = {}  # the features models/affect.py's model_features gives, from the encoded pooled features
        with torch.inference_mode():
            for view, suffix in ((0, ""), (1, "_flip")):
                pooled = torch.from_numpy(raw[view])
                fused = model.fuse(dict(zip(("face", "scene"), pooled.split(
                    [model.branches[n].feature_channels for n in ("face", "scene")], dim=1))))
                cache["fused" + suffix] = fused.numpy().astype(np.float32)
                cache["pre_logits" + suffix] = model.dense(fused).numpy().astype(np.float32)
        with atomic_path(cache_file, suffix=".npz") as tmp:
            np.savez(tmp, **cache)
    with np.load(cache_file) as saved:
        cache = {k: saved[k] for k in saved.files}
    y = targets(dataset)
    rng = np.random.default_rng(0)
    val = np.zeros(len(dataset), bool)
    val[rng.permutation(len(dataset))[:round(0.15 * len(dataset))]] = True
    heads, choice = choose_and_fit(cache, y, {"train": ~val, "val": val})
    val_scores = scores(subset(y, val), head_predict(heads, cache, val))
    return heads, {"choice": {k: v for k, v in choice.items() if k != "grid"},
                   "validation": {k: round(v, 4) for k, v in val_scores.items()},
                   "n_train": int((~val).sum()), "n_val": int(val.sum())}


def model_card(recipe: Recipe, entry: dict[str, Any], cv: dict[str, Any], affect: dict[str, Any] | None,
               calibration) -> str:
    """The model card (Markdown): data, command, metrics with their sources, sha256."""
    def pct(key: str) -> str:
        return f"{100 * cv[key + '_mean']:.1f} ± {100 * cv[key + '_sd']:.1f} %" if key + "_mean" in cv else "—"

    head = recipe.head
    lines = [f"# Model card: `{recipe.name}`", "",
             "Made by `emoadapt train` from a recipe file; every figure below comes from the run folder's "
             "`cv.json` / `run.json` (the sources are named).", "", "| | |", "|---|---|",
             f"| file | `{entry['weights']}` (float16 safetensors; config, classes and recipe in its metadata) |",
             f"| sha256 | `{entry['sha256']}` |",
             f"| command | `{entry['command']}` |",
             f"| recipe | `{entry['recipe_file']}` |",
             f"| classes | {', '.join(entry['classes'])} |",
             f"| input | the image fitted as `{recipe.output.fit}` to {recipe.scene.input_size} × "
             f"{recipe.scene.input_size} px RGB in [0, 1] (emoadapt.data.transforms.FITS); test-time "
             f"`{recipe.output.tta}` averaging |",
             f"| architecture | FusionNet: face branch (`{recipe.face.source}`) ⊕ ImageNet EfficientNet-"
             f"{recipe.scene.variant.capitalize()} scene branch, both frozen; pooled features concatenated and "
             f"standardised, then {head_words(head)} |",
             f"| objective | {objective_words(head)} |",
             f"| training data | {entry['training_data']} |",
             f"| calibration | temperature {calibration.temperature:.3f}, {recipe.output.ood} OOD threshold "
             f"{calibration.ood_threshold:.3f} ({recipe.output.ood_quantile:.0%} of out-of-fold scores); fitted on "
             f"the CV folds' out-of-fold outputs (`{Path(entry['weights']).stem}.calibration.json`) |",
             "", "## Metrics (source: `model.json`; faces: the shipped weights on every FER2013 test face of the "
                 "four mapped expressions, scored as `emoadapt predict` scores)", "",
             "```json", json.dumps(entry.get("metrics", {})), "```",
             "", "## Cross-validation of this recipe (source: `cv.json`)", "",
             "| labelled images, test folds | validation folds | FER2013 PublicTest 4-class | FER2013 PrivateTest 4-class |",
             "|---|---|---|---|",
             f"| {pct('test')} | {pct('val')} | {pct('faces_val')} | {pct('faces_test')} |", "",
             "Mean ± sample standard deviation over the folds (`--cv`, final mode): each fold's head is trained "
             "on every other fold with the recipe's fixed settings and scored as `emoadapt predict` scores.",
             "The shipped head is trained on every labelled image with the same recipe."]
    if "test_mean" in cv:
        faces = (f" and about {100 * cv['faces_test_mean']:.0f} % on FER2013-like face crops of the mapped "
                 "expressions" if "faces_test_mean" in cv else "")
        lines += ["", f"**What to expect on unseen images**: about {100 * cv['test_mean']:.0f} % "
                      f"(± {100 * cv['test_sd']:.0f} points from fold to fold) on unseen photos like the labelled "
                      f"ones{faces}; less on paintings, screenshots, drawings or other kinds of image it never saw."]
    if affect:
        lines += ["", "## Affect heads (source: `run.json`)", "",
                  f"`{Path(entry['weights']).stem}.affect.safetensors`: valence, arousal and the 7-way distribution, "
                  f"chosen {affect['choice']}, validation (n = {affect['n_val']}): "
                  + ", ".join(f"{k} {v}" for k, v in affect["validation"].items())]
    lines += ["", "## Intended use and limits", "",
              "Research on image emotion (what a picture is likely to evoke), not a judgement about people. "
              "Inherits the research-only terms of its training data."]
    return "\n".join(lines) + "\n"


def head_words(head) -> str:
    """The head of a recipe, in words (for the card)."""
    if head.experts:
        return ("domain-gated experts: a scene-only linear head, a face-only linear head and a gate (a logistic "
                "regression telling faces from the labelled images) mixing their probabilities")
    return "a linear classifier" if not head.hidden else f"dense {head.hidden} + ReLU, then a linear classifier"


def objective_words(head) -> str:
    """The loss and optimiser of a recipe, in words (for the card)."""
    loss = (f"CE(labelled images, smoothing {head.label_smoothing}) + {head.alpha}·CE(FER2013 faces, mapped)"
            + (f" + {head.lam}·{head.discrepancy}" if head.discrepancy != "none" and head.lam else ""))
    views = f"{head.train_views or head.views} view(s) per image"
    if head.solver == "lbfgs":
        return f"{loss} + {head.l2}/2·|W|², fitted full batch (L-BFGS; convex), {views}"
    return f"{loss}; AdamW lr {head.lr}, wd {head.weight_decay}, {head.epochs} epochs (fixed), batch {head.batch_size}, {views}"


def ship(recipe: Recipe, out: Path, recipe_file: str, command: str, say: Progress = _say) -> dict[str, Any]:
    """Steps 4 (final) to 7: the final head, calibration, affect heads, then ``out/model.*`` and the
    registry entry ``out/model.json``. Needs ``out/cv.json`` (run ``--cv`` first)."""
    from .models.affect import save_affect, sidecar_path
    from .models.registry import sha256
    from .models.weights import save_weights

    if not (out / "cv.json").exists():
        raise RecipeError(f"{out}/cv.json is missing: run emoadapt train --config {recipe_file} --out {out} --cv "
                          "first (the calibration and the card read it)")
    cv = json.loads((out / "cv.json").read_text())
    weights = out / "model.safetensors"
    if (out / "model.json").exists() and weights.exists():
        entry = json.loads((out / "model.json").read_text())
        if entry.get("sha256") == sha256(weights):
            say(f"[ship] {weights} is already made (sha256 {entry['sha256'][:12]}…)")
            return entry
    model, data, classes = train_final(recipe, out, say)
    extra = {"classes": list(classes), "preset": recipe.name, "tta": recipe.output.tta, "fit": recipe.output.fit,
             "recipe": recipe.to_dict(), "command": command,
             "metrics": {k: v for k, v in cv.items() if k.endswith(("_mean", "_sd"))}}
    save_weights(weights, model, model.config.to_dict(), extra, dtype=torch.float16)
    digest = sha256(weights)
    # the fp16 file is what ships: calibrate and fit the affect heads on the model as it loads
    from .models.registry import load_model

    shipped, _ = load_model(weights)
    faces = face_scores(shipped, data, recipe.output.tta)
    metrics = {f"fer2013_{split}_4class_accuracy": round(faces[key], 4)
               for split, key in (("publictest", "faces_val"), ("privatetest", "faces_test")) if key in faces}
    metrics.update({f"cv_{key}": round(value, 4) for key, value in cv.items() if key.endswith(("_mean", "_sd"))})
    calibration = calibrate_from_cv(recipe, out, data, classes, digest, command, model=shipped)
    calibration.save(out / "model.calibration.json")
    heads, affect = fit_affect(recipe, out, shipped, say)
    entry = {"name": recipe.name, "weights": f"{recipe.name}.safetensors", "sha256": digest,
             "classes": list(classes), "config": shipped.config.to_dict(), "command": command, "source": command,
             "description": f"made by emoadapt train from {recipe_file}: face branch ⊕ ImageNet EfficientNet-"
                            f"{recipe.scene.variant.capitalize()} scene branch ({recipe.output.fit} input, "
                            f"{recipe.scene.input_size} px), {head_words(recipe.head)}",
             "recipe_file": recipe_file, "calibration": f"{recipe.name}.calibration.json",
             "training_data": f"{len(data['target_labels'])} labelled images of {recipe.data.target} (every one: "
                              f"the final fit)" + (f" and {recipe.data.source_limit} FER2013 Training faces of the "
                                                    f"mapped classes" if "faces_train" in data else "")}
    if heads is not None:
        path = save_affect(sidecar_path(weights), heads, digest, {**affect["validation"], "command": command})
        entry["affect_sha256"] = sha256(path)
    entry["metrics"] = metrics
    (out / "model.md").write_text(model_card(recipe, entry, cv, affect if heads is not None else None, calibration))
    atomic_write_json(out / "model.json", entry)
    atomic_write_json(out / "run.json", {"cv": {k: v for k, v in cv.items() if k != "folds"},
                                         "affect": affect, "calibration": calibration.fitted, "entry": entry})
    say(f"[ship] {weights} sha256 {digest[:12]}…; registry entry {out / 'model.json'}")
    return entry


def cv_table(cv: dict[str, Any]) -> str:
    """One Markdown row per fold and the mean ± sd, scenes and faces side by side."""
    keys = [k for k in ("test", "val", "faces_val", "faces_test") if f"{k}_mean" in cv]
    rows = ["| fold | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, row in sorted(cv["folds"].items()):
        rows.append(f"| {name} | " + " | ".join(f"{100 * row[k]:.1f}" for k in keys) + " |")
    rows.append("| mean ± sd | " + " | ".join(f"{100 * cv[k + '_mean']:.1f} ± {100 * cv[k + '_sd']:.1f}"
                                            for k in keys) + " |")
    return "\n".join(rows)


def install(out: Path, entry: dict[str, Any]) -> None:
    """Copy ``out/model.*`` into the package's ``weights/`` under the recipe's name and write the
    registry entry into ``weights/registry.json`` (data, read by :mod:`emoadapt.models.registry`)."""
    import shutil
    from importlib import resources

    from .models.registry import REGISTRY_FILE

    weights_dir = Path(str(resources.files("emoadapt") / "weights"))
    name = entry["name"]
    for suffix in (".safetensors", ".calibration.json", ".affect.safetensors", ".md"):
        source = out / f"model{suffix}"
        if source.exists():
            with atomic_path(weights_dir / f"{name}{suffix}", suffix=suffix) as tmp:
                shutil.copyfile(source, tmp)
    registry = json.loads(REGISTRY_FILE.read_text()) if REGISTRY_FILE.exists() else {}
    registry[name] = {**registry.get(name, {}), **entry}
    atomic_write_json(REGISTRY_FILE, registry)
    _say(f"[install] {name}: weights/{name}.* and {REGISTRY_FILE.name}")
