"""The Python API for notebooks: one call to read an image's emotion, one to explain it.

>>> import emoadapt
>>> emoadapt.analyze("photo.jpg")
{'emotion': {'happy': 0.71, 'sad': 0.12, 'hate': 0.05, 'anger': 0.12}, 'dominant_emotion': 'happy'}
>>> emoadapt.top_emotion("photo.jpg")
('happy', 0.71)
>>> explanation = emoadapt.explain("photo.jpg")             # DnCShap; .map is (H, W)
>>> emoadapt.explain(["a.jpg", "b.jpg"], model=my_module)    # any model; a batch -> a list

Images may be a path, the bytes of a file, a ``PIL.Image`` or a NumPy array (H, W, 3) **in RGB
order** (OpenCV users: convert from BGR first) or (H, W) grey, uint8 0–255 or float 0–1.
A torch tensor (C, H, W) is taken as a preprocessed model input in [0, 1]. The default model is
the shipped IER model (:data:`emoadapt.models.registry.DEFAULT_MODEL`); pass ``model=`` a preset
name or a ``.safetensors`` path for another (``explain`` also takes an ``nn.Module``, an ``.onnx``
file, an onnxruntime session or a batch function images → probabilities).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

from .errors import EmoadaptError
from .attribution import settings
from .explaining import AnyModel, explain_images
from .faces.options import MAX_FACES, MIN_FACE
from .predictor import ImageLike, Predictor, affect_fields, default_runtime, to_pil

__all__ = ["ImageLike", "Predictor", "affect_fields", "analyze", "default_runtime", "explain", "get_predictor",
           "to_pil", "top_emotion", "EXPLAIN_DEPTH", "EXPLAIN_MAX_EVALS"]

#: DnCShap defaults of ``explain``, ``predict --explain``, ``demo`` and the web app, kept in
#: :mod:`emoadapt.attribution.settings` (torch-free): the partition depth and the evaluation budget.
EXPLAIN_DEPTH = settings.DEPTH
EXPLAIN_MAX_EVALS: int | None = settings.MAX_EVALS


@functools.lru_cache(maxsize=4)
def get_predictor(model: str | None = None, runtime: str = "auto") -> Predictor:
    """A cached :class:`Predictor` (loading a model once per process)."""
    return Predictor(model, runtime)


def analyze(image: ImageLike, model: str | None = None, *, faces: bool = False, min_face: int = MIN_FACE,
            max_faces: int = MAX_FACES) -> dict[str, Any]:
    """``{"emotion": {label: probability 0–1}, "dominant_emotion": label, …}`` for one image; with
    ``faces=True`` also ``faces``: every face located and read (box x, y, w, h in px, detection
    score, 4 classes, 7 expressions), ``note`` "no faces found" when there is none, faces under
    ``min_face`` px or beyond ``max_faces`` skipped and counted (:meth:`Predictor.read_faces`)."""
    return get_predictor(None if model is None else str(model)).analyze(image, faces=faces, min_face=min_face,
                                                                        max_faces=max_faces)


def top_emotion(image: ImageLike, model: str | None = None) -> tuple[str, float]:
    """``(label, probability)`` of the most likely emotion."""
    result = analyze(image, model)
    label = result["dominant_emotion"]
    return label, result["emotion"][label]


def explain(images: Any, model: Any = None, *, target: int | str | None = None, class_names: Sequence[str] | None = None,
            input_size: Any = None, channels: int | None = None, output: str = "auto", **options: Any):
    """DnCShap explanation of one image, or a list of explanations for a batch.

    Args:
        images: one image (see the module docstring) or a tensor (C, H, W) in [0, 1]; or a batch:
            a list of those, a tensor (N, C, H, W) or an array (N, H, W, C) → a list.
        model: ``None`` (the shipped IER model), a preset name, a ``.safetensors`` or ``.onnx``
            file, an ``nn.Module``, an onnxruntime session, or a batch function images (N, C, H, W)
            → probabilities (N, K).
        target: class name or index to explain (default: each image's predicted class).
        class_names, input_size, channels, output: for models the registry does not know: their
            class names, input size (int or (H, W), to resize images that are not tensors), 1 or 3
            channels, and what they return (``"auto"``: logits for modules and ONNX, probabilities
            for functions; or ``"probs"`` / ``"logits"``).
        options: ``depth``, ``baseline``, ``batch_size``, ``variant``, ``max_evals``, ``context``,
            ``regions`` (defaults in :mod:`emoadapt.attribution.settings`).
    """
    if model is None or (isinstance(model, (str, Path)) and Path(model).suffix != ".onnx"):
        if class_names is not None or input_size is not None or channels is not None or output != "auto":
            raise EmoadaptError("class_names, input_size, channels and output are for models the registry does not "
                                "know; shipped models and .safetensors files carry their own")
        source = get_predictor(None if model is None else str(model))
    else:
        source = AnyModel(model, class_names, input_size, channels, output)
    return explain_images(source, images, target, options)
