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
from typing import Any, Sequence, Union

import numpy as np
import torch
from PIL import Image

from .data.decode import decode_image
from .data.transforms import image_to_tensor
from .errors import EmoadaptError
from .explain import settings
from .models.registry import resolve_affect, resolve_model

ImageLike = Union[str, Path, bytes, Image.Image, np.ndarray]

#: DnCShap defaults of ``explain``, ``predict --explain``, ``demo`` and the web app, kept in
#: :mod:`emoadapt.explain.settings` (torch-free): the partition depth and the evaluation budget.
EXPLAIN_DEPTH = settings.DEPTH
EXPLAIN_MAX_EVALS: int | None = settings.MAX_EVALS


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
        #: valence/arousal/distribution heads (models/affect.py) when the weights have a sidecar, else None
        self.affect = resolve_affect(model)
        #: the distribution's class names (``dist_<name>``); empty without affect heads
        self.affect_names: tuple[str, ...] = tuple(self.affect.config.names) if self.affect is not None else ()
        self.session = None
        if runtime == "onnx":
            from .models.onnx import onnx_session

            # with affect heads the export also returns the features they read; logits stay first
            taps = ("logits",) if self.affect is None else ("logits", self.affect.config.source)
            self.session = onnx_session(self.model, threads=threads, taps=taps)

    def preprocess(self, image: ImageLike | torch.Tensor) -> torch.Tensor:
        """(C, S, S) float32 in [0, 1]: short side resized to S, centre crop, grey or RGB; a tensor
        (C, H, W) is taken as already preprocessed."""
        if torch.is_tensor(image):
            return image
        return image_to_tensor(to_pil(image), self.input_size, self.channels)

    def predict_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """(N, C, S, S) in [0, 1] → (N, K) class probabilities; with the model's ``tta == "flip"``
        the average over the image and its mirror image."""
        return self.predict_outputs(batch)["probs"]

    def predict_outputs(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """One forward pass: ``probs`` (N, K) and, with affect heads, ``valence`` and ``arousal``
        (N,) on 1–9 and ``dist`` (N, len(affect_names)); flip-averaged when ``tta == "flip"``."""
        out = self._outputs(batch)
        if self.tta == "flip":
            flipped = self._outputs(batch.flip(3))
            out = {k: (v + flipped[k]) / 2 for k, v in out.items()}
        return out

    @torch.inference_mode()
    def _outputs(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        if self.session is not None:
            results = self.session.run(None, {self.session.get_inputs()[0].name: batch.numpy().astype(np.float32)})
            out = {"probs": _softmax(np.asarray(results[0], dtype=np.float64)).astype(np.float32)}
            features = torch.from_numpy(np.asarray(results[1], dtype=np.float32)) if self.affect is not None else None
        elif self.affect is not None:
            from .models.affect import model_features

            taps = model_features(self.model, batch)
            out, features = {"probs": taps["logits"].softmax(1).numpy()}, taps[self.affect.config.source]
        else:
            return {"probs": self.model(batch).softmax(1).numpy()}
        if features is not None:
            out.update({k: v.numpy() for k, v in self.affect(features).items()})
        return out

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
        """``{"emotion": {class: p}, "dominant_emotion": class}``; with affect heads also
        ``valence`` and ``arousal`` (1–9) and ``distribution`` ({name: p} over 7 emotions)."""
        out = self.predict_outputs(self.preprocess(image)[None])
        self._check(out["probs"])
        emotion = {name: float(p) for name, p in zip(self.classes, out["probs"][0])}
        return {"emotion": emotion, "dominant_emotion": max(emotion, key=emotion.get), **affect_fields(self, out, 0)}

    def _check(self, probs: np.ndarray) -> None:
        from .errors import ModelOutputError
        from .predict import check_probabilities

        for index, row in enumerate(probs):
            problem = check_probabilities(row)
            if problem is not None:
                raise ModelOutputError(f"image {index}: {problem}")

    @property
    def forward(self) -> Any:
        """What explainers run: the onnxruntime session when loaded, else the torch model."""
        return self.session if self.session is not None else self.model

    def explainer(self, depth: int = settings.DEPTH, baseline: Any = settings.BASELINE,
                  batch_size: int = settings.BATCH_SIZE, variant: str = settings.VARIANT,
                  max_evals: int | None = settings.MAX_EVALS, context: str = settings.CONTEXT):
        """A :class:`~emoadapt.explain.DnCShap` over this model (onnxruntime when loaded)."""
        return _explainer(self, depth, baseline, batch_size, variant, max_evals, context)

    def explain(self, images: Any, *, target: int | str | None = None, **options: Any):
        """DnCShap explanation (:class:`emoadapt.explain.Explanation`) of ``target`` (a class name or
        index; default: the predicted class), or a list of them for a batch (a list of images, a
        tensor (N, C, H, W) or an array (N, H, W, C)). Options: ``depth``, ``baseline``,
        ``batch_size``, ``variant``, ``max_evals`` (a cap on model evaluations; ``None``: the whole
        tree), ``context`` — defaults in :mod:`emoadapt.explain.settings`."""
        return _explain_all(self, images, target, options)

    def explain_layers(self, image: ImageLike, taps: Sequence[str] | None = None, *, depth: int = settings.DEPTH,
                       target: int | str | None = None, batch_size: int = settings.BATCH_SIZE) -> dict:
        """Layer-wise DnCShap at each tap (default: all spatial taps of the model)."""
        from .explain import explain_layers

        return explain_layers(self.model, self.preprocess(image), taps, depth=settings.check_depth(depth),
                              target=self._target_index(target), batch_size=settings.check_batch_size(batch_size),
                              class_names=self.classes)

    def _target_index(self, target: int | str | None) -> int | None:
        return settings.check_target(target, self.classes)


def affect_fields(predictor: Any, outputs: dict[str, np.ndarray], index: int) -> dict[str, Any]:
    """``{"valence", "arousal", "distribution": {name: p}}`` of image ``index`` of
    :meth:`Predictor.predict_outputs`, or ``{}`` for a model without affect heads."""
    if "valence" not in outputs:
        return {}
    return {"valence": float(outputs["valence"][index]), "arousal": float(outputs["arousal"][index]),
            "distribution": {name: float(p) for name, p in zip(predictor.affect_names, outputs["dist"][index])}}


class _AnyModel:
    """A model the registry does not know, for :func:`explain`: an ``nn.Module``, an onnxruntime
    session (or ``.onnx`` file) or a batch function (N, C, H, W) → (N, K) probabilities.

    Images that are not tensors are resized to ``input_size`` (int or (H, W)) with ``channels``
    (1 or 3), taken from the model when it says (``model.config``, the ONNX input shape)."""

    def __init__(self, model: Any, class_names: Sequence[str] | None = None, input_size: Any = None,
                 channels: int | None = None, output: str = "auto"):
        if isinstance(model, (str, Path)):
            model = _onnx_file_session(Path(model))
        config = getattr(model, "config", None)
        shape = _onnx_input_shape(model)
        self.forward, self.output = model, output
        self.classes = tuple(class_names) if class_names is not None else tuple(getattr(model, "classes", ()) or ())
        self.input_size = input_size or getattr(config, "input_size", None) or (shape[2:] if shape else None)
        self.channels = channels or getattr(config, "in_chans", None) or (shape[1] if shape else None) or 3

    def preprocess(self, image: Any) -> torch.Tensor:
        if torch.is_tensor(image):
            return image
        if not self.input_size:
            raise EmoadaptError("this model does not say its input size: pass explain(..., input_size=S) or a "
                                "preprocessed tensor (C, H, W) in [0, 1]")
        size = self.input_size
        if isinstance(size, (tuple, list)) and len(size) == 2 and size[0] != size[1]:
            pil = to_pil(image).convert("L" if self.channels == 1 else "RGB").resize((int(size[1]), int(size[0])))
            array = np.asarray(pil, dtype=np.float32) / 255.0
            return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())
        return image_to_tensor(to_pil(image), int(size[0] if isinstance(size, (tuple, list)) else size), self.channels)

    def _target_index(self, target: int | str | None) -> int | None:
        return settings.check_target(target, self.classes or None)


def _onnx_file_session(path: Path):
    if path.suffix != ".onnx" or not path.is_file():
        raise EmoadaptError(f"{path}: not an .onnx file (models by path: a .safetensors file or an .onnx file)")
    try:
        import onnxruntime as ort
    except ImportError:
        raise EmoadaptError(f"{path}: ONNX models need onnxruntime: pip install 'emoadapt[onnx]'") from None
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _onnx_input_shape(model: Any) -> tuple | None:
    """(N, C, H, W) of an onnxruntime session's first input when C, H and W are fixed numbers."""
    if not callable(getattr(model, "get_inputs", None)):
        return None
    shape = tuple(model.get_inputs()[0].shape)
    return shape if len(shape) == 4 and all(isinstance(d, int) for d in shape[1:]) else None


def _explainer(source: Any, depth: Any, baseline: Any, batch_size: Any, variant: Any, max_evals: Any,
               context: Any, output: str = "auto"):
    from .explain import DnCShap

    return DnCShap(source.forward, depth=settings.check_depth(depth), baseline=baseline,
                   batch_size=settings.check_batch_size(batch_size), variant=variant, context=context,
                   output=output, class_names=source.classes or None, max_evals=settings.check_max_evals(max_evals))


_EXPLAIN_OPTIONS = ("depth", "baseline", "batch_size", "variant", "max_evals", "context")


def _explain_all(source: Any, images: Any, target: int | str | None, options: dict[str, Any]):
    unknown = sorted(set(options) - set(_EXPLAIN_OPTIONS))
    if unknown:
        raise EmoadaptError(f"unknown explain option(s) {', '.join(unknown)}; known: {', '.join(_EXPLAIN_OPTIONS)}")
    defaults = {"depth": settings.DEPTH, "baseline": settings.BASELINE, "batch_size": settings.BATCH_SIZE,
                "variant": settings.VARIANT, "max_evals": settings.MAX_EVALS, "context": settings.CONTEXT}
    explainer = _explainer(source, **{**defaults, **options}, output=getattr(source, "output", "auto"))
    target = source._target_index(target)
    batch, items = _as_batch(images)
    results = [explainer.attribute(source.preprocess(item), target) for item in items]
    return results if batch else results[0]


def _as_batch(images: Any) -> tuple[bool, list]:
    """(is a batch, the images): a list or tuple, a tensor (N, C, H, W) or an array (N, H, W, C) is a batch."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise EmoadaptError("explain got an empty batch of images")
        return True, list(images)
    if (torch.is_tensor(images) or isinstance(images, np.ndarray)) and images.ndim == 4:
        return True, list(images)
    return False, [images]


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
        options: ``depth``, ``baseline``, ``batch_size``, ``variant``, ``max_evals``, ``context``
            (defaults in :mod:`emoadapt.explain.settings`).
    """
    if model is None or (isinstance(model, (str, Path)) and Path(model).suffix != ".onnx"):
        if class_names is not None or input_size is not None or channels is not None or output != "auto":
            raise EmoadaptError("class_names, input_size, channels and output are for models the registry does not "
                                "know; shipped models and .safetensors files carry their own")
        source = get_predictor(None if model is None else str(model))
    else:
        source = _AnyModel(model, class_names, input_size, channels, output)
    return _explain_all(source, images, target, options)
