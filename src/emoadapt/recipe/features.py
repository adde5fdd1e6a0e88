"""Step 3 of ``emoadapt train``: the frozen branches' pooled features of every training view, cached."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.labels import IER_CLASSES
from ..fileio import atomic_path
from .config import Progress, Recipe, print_progress
from .branches import branches_digest
from .inputs import sample_keys, source_face_samples


def view_images(path: str, size: int, fit: str, views: int, boxes: np.ndarray | None) -> list[np.ndarray]:
    """The views of one image as float32 (3, size, size) in [0, 1]: the input fit (view 0), its
    mirror image (view 1), then random resized crops of the original picture (``boxes`` (V−2, 5)
    from :func:`emoadapt.adapt.views.crop_boxes`), each resized to size × size (bilinear)."""
    from PIL import Image

    from ..data.decode import decode_image
    from ..data.transforms import image_to_tensor

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
        from ..models.onnx import onnx_session

        self.session = onnx_session(model, threads=threads, taps=("features",))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.session.get_inputs()[0].name: batch.astype(np.float32)})[0]


def encode_paths(encoder: FeatureEncoder, paths: list[str], cache: Path, *, size: int, fit: str, views: int,
                 seed: int = 0, chunk: int = 64, say: Progress = print_progress, label: str = "images") -> np.ndarray:
    """(V, N, C) float32 features of ``paths`` in ``views`` views, cached under ``cache`` one chunk
    of ``chunk`` images per file (an interrupted encoding resumes at the first missing chunk)."""
    from ..adapt.views import crop_boxes

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


def encode_all(recipe: Recipe, model, dataset, out: Path, say: Progress = print_progress) -> dict[str, Any]:
    """Step 3: every feature the head steps need, cached under ``$EMOADAPT_CACHE/features/<branches
    hash>`` (shared by the runs of an ablation).

    Returns ``{"target": (V, N, C), "target_labels": (N,), "keys": [...],
    "faces_train": (2, Ns, C), "faces_train_labels", "faces_val": (2, Nv, C), …, "faces_test" …}``
    (faces: IER labels; ``val`` = PublicTest, ``test`` = PrivateTest; absent without source faces)."""
    from ..data.arrays import DEFAULT_CACHE

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


