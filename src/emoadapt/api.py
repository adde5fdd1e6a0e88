"""The Python API for notebooks: one call to read an image's emotion, one to explain it.

>>> import emoadapt
>>> emoadapt.analyze("photo.jpg")
{'emotion': {'happy': 0.71, 'sad': 0.12, 'hate': 0.05, 'anger': 0.12}, 'dominant_emotion': 'happy'}
>>> emoadapt.top_emotion("photo.jpg")
('happy', 0.71)
>>> explanation = emoadapt.explain("photo.jpg")             # DnCShap (depth 6); .map is (H, W)

Images may be a path, the bytes of a file, a ``PIL.Image`` or a NumPy array (H, W, 3) **in RGB
order** (OpenCV users: convert from BGR first) or (H, W) grey, uint8 0–255 or float 0–1.
The default model is the shipped IER model (:data:`emoadapt.models.registry.DEFAULT_MODEL`);
pass ``model=`` a preset name or a ``.safetensors`` path for another.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from PIL import Image

from .data.decode import decode_image
from .data.transforms import image_to_tensor
from .errors import EmoadaptError
from .models.registry import resolve_model

ImageLike = Union[str, Path, bytes, Image.Image, np.ndarray]

#: DnCShap defaults of ``explain``, ``predict --explain``, ``demo`` and the web app: the partition
#: depth (6: 64 regions, 128 model evaluations — as faithful by deletion/insertion as depth 8 at a
#: quarter of the cost, docs/benchmarks.md §3) and the budget of model evaluations (``None``: the
#: full tree, 2**(depth+1)).
EXPLAIN_DEPTH = 6
EXPLAIN_MAX_EVALS: int | None = None


def to_pil(image: ImageLike) -> Image.Image:
    """Any supported image input → an RGB ``PIL.Image``, through the one decoder every input type
    shares (:func:`emoadapt.data.decode.decode_image`: size limits, EXIF orientation, alpha
    composited on white, 16-bit rescaled), so a picture gives the same result as a path, bytes, a
    ``PIL.Image`` or an array. Raises :class:`~emoadapt.errors.ImageDecodeError` (a ``ValueError``)."""
    return decode_image(image, mode="RGB")


def default_runtime() -> str:
    """``onnx`` when onnxruntime is installed (4–7× faster for the default MobileNetV2 on a 2-core
    CPU, see docs/benchmarks.md; probabilities agree with torch within 1e-4), else ``torch``."""
    import importlib.util

    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"


class Predictor:
    """A loaded model with its preprocessing; ``runtime`` is ``torch``, ``onnx`` (onnxruntime) or
    ``auto`` (:func:`default_runtime`).

    Attributes:
        model: the torch model (kept for layer-wise explanations even with the ONNX runtime).
        classes: output class names.
        input_size, channels: what :meth:`preprocess` produces.
    """

    def __init__(self, model: str | Path | None = None, runtime: str = "auto", threads: int | None = None):
        if runtime not in ("auto", "torch", "onnx"):
            raise EmoadaptError(f"runtime must be auto, torch or onnx, got {runtime!r}")
        runtime = default_runtime() if runtime == "auto" else runtime
        if threads:
            torch.set_num_threads(threads)
        self.model, meta = resolve_model(model)
        self.model.eval()
        self.classes: tuple[str, ...] = tuple(meta.get("classes", ()))
        self.meta = meta
        #: test-time augmentation the model card quotes its accuracy with ("flip" or "none")
        self.tta = meta.get("tta", "none")
        self.input_size = self.model.config.input_size
        self.channels = self.model.config.in_chans
        self.runtime = runtime
        self.session = None
        if runtime == "onnx":
            from .models.onnx import onnx_session

            self.session = onnx_session(self.model, threads=threads)

    def preprocess(self, image: ImageLike) -> torch.Tensor:
        """(C, S, S) float32 in [0, 1]: short side resized to S, centre crop, grey or RGB."""
        return image_to_tensor(to_pil(image), self.input_size, self.channels)

    def predict_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """(N, C, S, S) in [0, 1] → (N, K) class probabilities; with the model's ``tta == "flip"``
        the average over the image and its mirror image."""
        probs = self._probs(batch)
        return (probs + self._probs(batch.flip(3))) / 2 if self.tta == "flip" else probs

    @torch.inference_mode()
    def _probs(self, batch: torch.Tensor) -> np.ndarray:
        if self.session is not None:
            logits = self.session.run(None, {self.session.get_inputs()[0].name: batch.numpy().astype(np.float32)})[0]
            return _softmax(np.asarray(logits, dtype=np.float64)).astype(np.float32)
        return self.model(batch).softmax(1).numpy()

    def predict(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Class probabilities (N, K) for a list of images; :class:`~emoadapt.errors.ModelOutputError`
        when the model returns NaN, inf or values that are not probabilities (broken weights)."""
        from .errors import ModelOutputError
        from .predict import check_probabilities

        probs = self.predict_tensors(torch.stack([self.preprocess(image) for image in images]))
        for index, row in enumerate(probs):
            problem = check_probabilities(row)
            if problem is not None:
                raise ModelOutputError(f"image {index}: {problem}")
        return probs

    def analyze(self, image: ImageLike) -> dict[str, Any]:
        probs = self.predict([image])[0]
        emotion = {name: float(p) for name, p in zip(self.classes, probs)}
        return {"emotion": emotion, "dominant_emotion": max(emotion, key=emotion.get)}

    def explainer(self, depth: int = EXPLAIN_DEPTH, baseline: Any = "zero", batch_size: int = 128,
                  variant: str = "clean", max_evals: int | None = EXPLAIN_MAX_EVALS):
        """A :class:`~emoadapt.explain.DnCShap` over this model (onnxruntime when loaded)."""
        from .explain import DnCShap

        forward = self.session if self.session is not None else self.model
        return DnCShap(forward, depth=depth, baseline=baseline, batch_size=batch_size, variant=variant,
                       class_names=self.classes, max_evals=max_evals)

    def explain(self, image: ImageLike, *, depth: int = EXPLAIN_DEPTH, baseline: Any = "zero",
                target: int | str | None = None, batch_size: int = 128, variant: str = "clean",
                max_evals: int | None = EXPLAIN_MAX_EVALS):
        """DnCShap explanation (see :class:`emoadapt.explain.Explanation`) of ``target`` (a class
        name or index; default: the predicted class); ``max_evals`` caps the model evaluations
        (regions with the largest scores are split first; ``None``: the full tree, 2**(depth+1))."""
        explainer = self.explainer(depth, baseline, batch_size, variant, max_evals)
        return explainer.attribute(self.preprocess(image), self._target_index(target))

    def explain_layers(self, image: ImageLike, taps: Sequence[str] | None = None, *, depth: int = 6,
                       target: int | str | None = None, batch_size: int = 128) -> dict:
        """Layer-wise DnCShap at each tap (default: all spatial taps of the model)."""
        from .explain import explain_layers

        return explain_layers(self.model, self.preprocess(image), taps, depth=depth,
                              target=self._target_index(target), batch_size=batch_size, class_names=self.classes)

    def _target_index(self, target: int | str | None) -> int | None:
        if isinstance(target, str):
            if target not in self.classes:
                raise EmoadaptError(f"unknown class {target!r}; the model's classes are {', '.join(self.classes)}")
            return self.classes.index(target)
        return target


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@functools.lru_cache(maxsize=4)
def get_predictor(model: str | None = None, runtime: str = "auto") -> Predictor:
    """A cached :class:`Predictor` (loading a model once per process)."""
    return Predictor(model, runtime)


def analyze(image: ImageLike, model: str | None = None) -> dict[str, Any]:
    """``{"emotion": {label: probability 0–1}, "dominant_emotion": label}`` for one image."""
    return get_predictor(None if model is None else str(model)).analyze(image)


def top_emotion(image: ImageLike, model: str | None = None) -> tuple[str, float]:
    """``(label, probability)`` of the most likely emotion."""
    result = analyze(image, model)
    label = result["dominant_emotion"]
    return label, result["emotion"][label]


def explain(image: ImageLike, model: str | None = None, **options: Any):
    """DnCShap explanation of one image (options: depth, baseline, target, batch_size, variant, max_evals)."""
    return get_predictor(None if model is None else str(model)).explain(image, **options)
