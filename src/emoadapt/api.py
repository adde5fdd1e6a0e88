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
from .data.transforms import DEFAULT_FIT, FITS, image_to_tensor
from .errors import EmoadaptError
from .explain import settings
from .models.calibration import Calibration, load_calibration
from .models.onnx import onnx_file_meta, onnx_file_session, onnx_input_shape
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
    ``auto`` (:func:`default_runtime`); ``model`` a shipped name, a ``.safetensors`` file or an
    ``.onnx`` file written by ``emoadapt export`` (then onnxruntime only, no layer-wise
    explanations); ``fit`` how an image becomes the square input (``squash``: the whole image,
    the default; ``pad``; ``centre``: the old centre crop); ``calibrated=False`` ignores the model's
    calibration file (plain softmax; what ``emoadapt calibrate`` refits from).

    Attributes:
        model: the torch model (kept for layer-wise explanations even with the ONNX runtime;
            ``None`` for an ``.onnx`` file).
        classes: output class names.
        input_size, channels: what :meth:`preprocess` produces.
        calibration: temperature, OOD score and thresholds behind ``uncertain``.
    """

    def __init__(self, model: str | Path | None = None, runtime: str = "auto", threads: int | None = None,
                 fit: str = DEFAULT_FIT, calibrated: bool = True):
        if runtime not in ("auto", "torch", "onnx"):
            raise EmoadaptError(f"runtime must be auto, torch or onnx, got {runtime!r}")
        if fit not in FITS:
            raise EmoadaptError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
        #: how an image becomes the square input (:data:`emoadapt.data.transforms.FITS`)
        self.fit = fit
        runtime = default_runtime() if runtime == "auto" else runtime
        if threads:
            torch.set_num_threads(threads)
        self.session = None
        if model is not None and Path(str(model)).suffix == ".onnx":
            self.model, meta = None, onnx_file_meta(Path(str(model)))
            self.session = onnx_file_session(Path(str(model)), threads)
            shape = onnx_input_shape(self.session)
            if shape is None or shape[2] != shape[3]:
                raise EmoadaptError(f"{model}: the ONNX input must be (N, C, S, S) with fixed C and S, got {shape}")
            self.input_size, self.channels, runtime = int(shape[2]), int(shape[1]), "onnx"
        else:
            self.model, meta = resolve_model(model)
            self.model.eval()
            self.input_size = self.model.config.input_size
            self.channels = self.model.config.in_chans
        self.classes: tuple[str, ...] = tuple(meta.get("classes", ()))
        self.meta = meta
        #: test-time augmentation the model card quotes its accuracy with ("flip" or "none")
        self.tta = meta.get("tta", "none")
        self.runtime = runtime
        #: temperature, OOD score and thresholds (:mod:`emoadapt.models.calibration`); a plain
        #: softmax with only the low-confidence rule when the model has no calibration file
        self.calibration = load_calibration(meta) if calibrated else Calibration()
        #: valence/arousal/distribution heads (models/affect.py) when the weights have a sidecar, else None
        self.affect = resolve_affect(model) if self.model is not None else None
        #: the distribution's class names (``dist_<name>``); empty without affect heads
        self.affect_names: tuple[str, ...] = tuple(self.affect.config.names) if self.affect is not None else ()
        if runtime == "onnx" and self.session is None:
            from .models.onnx import onnx_session

            self.session = onnx_session(self.model, threads=threads, taps=self._taps())
        if self.model is None and self.calibration.needs_features and "pre_logits" not in self._session_outputs():
            raise EmoadaptError(f"{model}: its calibration needs pre_logits features, which this ONNX file does not "
                                "output; export with them or remove the calibration file beside it")
        #: what :attr:`forward` returns, for the explainers
        self.output = "logits"

    def preprocess(self, image: ImageLike | torch.Tensor) -> torch.Tensor:
        """(C, S, S) float32 in [0, 1], grey or RGB: the whole image resized to S × S (``fit="squash"``,
        the default), fitted on grey (``pad``) or its short side resized and centre-cropped
        (``centre``); a tensor (C, H, W) is taken as already preprocessed."""
        if torch.is_tensor(image):
            return image
        return image_to_tensor(to_pil(image), self.input_size, self.channels, self.fit)

    def predict_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """(N, C, S, S) in [0, 1] → (N, K) calibrated class probabilities (temperature-scaled
        softmax); with the model's ``tta == "flip"`` the average over the image and its mirror image."""
        return self.predict_outputs(batch)["probs"]

    def assess_tensors(self, batch: torch.Tensor) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Probabilities (N, K) and one verdict per image: ``{"uncertain": bool, "uncertain_reason":
        str | None, "ood_score": float | None}`` (:meth:`Calibration.judge`)."""
        out = self.predict_outputs(batch)
        return out["probs"], out["verdicts"]

    def predict_outputs(self, batch: torch.Tensor) -> dict[str, Any]:
        """One forward pass (two with ``tta == "flip"``, averaged) of (N, C, S, S) in [0, 1]:
        ``probs`` (N, K) float32, calibrated; ``verdicts`` (one dict per image, see
        :meth:`assess_tensors`); with affect heads ``valence`` and ``arousal`` (N,) on 1–9 and
        ``dist`` (N, len(affect_names))."""
        out = self._outputs(batch)
        if self.tta == "flip":
            flipped = self._outputs(batch.flip(3))
            out = {key: (value + flipped[key]) / 2 for key, value in out.items()}
        probs = out.pop("probs").astype(np.float32)
        scores = out.pop("ood", None)
        spread = batch.flatten(2).double().std(dim=2).mean(dim=1).numpy()  # per channel: a flat colour is 0
        return {"probs": probs, "verdicts": self.calibration.judge(probs, scores, spread), **out}

    @torch.inference_mode()
    def _outputs(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """Calibrated ``probs``, the OOD score ``ood`` (when the calibration has one) and the affect
        outputs of one pass."""
        raw = self.raw_outputs(batch)
        out = {"probs": self.calibration.probabilities(raw["logits"])}
        scores = self.calibration.ood_scores(raw["logits"], raw.get("pre_logits"))
        if scores is not None:
            out["ood"] = scores
        if self.affect is not None:
            features = torch.from_numpy(raw[self.affect.config.source].astype(np.float32))
            out.update({key: value.numpy() for key, value in self.affect(features).items()})
        return out

    def _taps(self) -> tuple[str, ...]:
        """The model outputs one pass needs: the logits (first), ``pre_logits`` when the OOD score
        reads them, the affect heads' source features."""
        taps = ["logits"]
        if self.calibration.needs_features:
            taps.append("pre_logits")
        if self.affect is not None and self.affect.config.source not in taps:
            taps.append(self.affect.config.source)
        return tuple(taps)

    @torch.inference_mode()
    def raw_outputs(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """``{tap: float64 array}`` for :meth:`_taps`: uncalibrated logits (N, K) and the features
        the calibration and affect heads need; from onnxruntime when loaded."""
        if self.session is not None:
            return self._run_session(batch)
        taps = self._taps()
        if taps == ("logits",):
            return {"logits": self.model(batch).double().numpy()}
        return {name: value.double().numpy() for name, value in self.model.forward_taps(batch, taps).items()}

    @torch.inference_mode()
    def raw_logits(self, batch: torch.Tensor) -> np.ndarray:
        """(N, C, S, S) → uncalibrated logits (N, K) float64, from onnxruntime when loaded."""
        if self.session is not None:
            return self._run_session(batch)["logits"]
        return self.model(batch).double().numpy()

    def _session_outputs(self) -> list[str]:
        return [output.name for output in self.session.get_outputs()]

    def _run_session(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """``{output name: float64 array}``; when no output is called ``logits`` (an exported file
        with other names), the first one not called ``pre_logits`` is taken as the logits."""
        names = self._session_outputs()
        values = self.session.run(None, {self.session.get_inputs()[0].name: batch.numpy().astype(np.float32)})
        named = {name: np.asarray(value, dtype=np.float64) for name, value in zip(names, values)}
        if "logits" not in named:
            named["logits"] = next(v for n, v in named.items() if n != "pre_logits")
        return named

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
        """``{"emotion": {class: p}, "dominant_emotion", "uncertain", "uncertain_reason", "ood_score"}``
        for one image (see :meth:`assess_tensors`); with affect heads also ``valence`` and
        ``arousal`` (1–9) and ``distribution`` ({name: p} over 7 emotions). Raises
        ``ModelOutputError`` on broken outputs."""
        from .errors import ModelOutputError
        from .predict import check_probabilities

        out = self.predict_outputs(self.preprocess(image)[None])
        problem = check_probabilities(out["probs"][0])
        if problem is not None:
            raise ModelOutputError(f"image 0: {problem}")
        emotion = {name: float(p) for name, p in zip(self.classes, out["probs"][0])}
        return {"emotion": emotion, "dominant_emotion": max(emotion, key=emotion.get), **out["verdicts"][0],
                **affect_fields(self, out, 0)}

    def image_map(self, image: ImageLike, explanation: Any) -> np.ndarray:
        """``explanation.map`` (over the square input) at ``image``'s own resolution (H, W): the
        attribution per original pixel (the analysed part keeps its sum), NaN where this
        predictor's ``fit`` did not analyse the image (outside the centre square for ``centre``)."""
        from .data.transforms import square_map_to_image

        width, height = to_pil(image).size
        return square_map_to_image(explanation.map, self.fit, width, height)

    @property
    def forward(self) -> Any:
        """What explainers run: the onnxruntime session when loaded, else the torch model; with a
        calibration temperature ≠ 1, a function returning the scaled logits (so an explanation's
        probability is the one :meth:`analyze` reports)."""
        if self.calibration.temperature == 1.0 and self.session is None:
            return self.model
        return _TemperatureScaled(self)

    def explainer(self, depth: int = settings.DEPTH, baseline: Any = settings.BASELINE,
                  batch_size: int = settings.BATCH_SIZE, variant: str = settings.VARIANT,
                  max_evals: int | None = settings.MAX_EVALS, context: str = settings.CONTEXT):
        """A :class:`~emoadapt.explain.DnCShap` over this model (onnxruntime when loaded)."""
        return _explainer(self, depth, baseline, batch_size, variant, max_evals, context, output=self.output)

    def explain(self, images: Any, *, target: int | str | None = None, **options: Any):
        """DnCShap explanation (:class:`emoadapt.explain.Explanation`) of ``target`` (a class name or
        index; default: the predicted class), or a list of them for a batch (a list of images, a
        tensor (N, C, H, W) or an array (N, H, W, C)). Options: ``depth``, ``baseline``,
        ``batch_size``, ``variant``, ``max_evals`` (a cap on model evaluations; ``None``: the whole
        tree), ``context`` — defaults in :mod:`emoadapt.explain.settings`."""
        return _explain_all(self, images, target, options)

    def explain_layers(self, image: ImageLike, taps: Sequence[str] | None = None, *, depth: int = settings.DEPTH,
                       target: int | str | None = None, batch_size: int = settings.BATCH_SIZE,
                       on_tap: Any = None) -> dict:
        """Layer-wise DnCShap at each tap (default: all spatial taps of the model); ``on_tap(tap,
        done, total)`` is called after each one (progress)."""
        from .explain import explain_layers

        if self.model is None:
            raise EmoadaptError("layer-wise explanations need the torch model: pass the .safetensors file or a "
                                "shipped model name, not an .onnx file")

        return explain_layers(self.model, self.preprocess(image), taps, depth=settings.check_depth(depth),
                              target=self._target_index(target), batch_size=settings.check_batch_size(batch_size),
                              class_names=self.classes, on_tap=on_tap)

    def _target_index(self, target: int | str | None) -> int | None:
        return settings.check_target(target, self.classes)


class _TemperatureScaled:
    """Images (N, C, H, W) → logits / T of a :class:`Predictor` (torch or onnxruntime)."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        return self.predictor.raw_logits(images) / self.predictor.calibration.temperature


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
            model = onnx_file_session(Path(model))
        config = getattr(model, "config", None)
        shape = onnx_input_shape(model)
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
        return image_to_tensor(to_pil(image), int(size[0] if isinstance(size, (tuple, list)) else size), self.channels,
                               DEFAULT_FIT)

    def _target_index(self, target: int | str | None) -> int | None:
        return settings.check_target(target, self.classes or None)


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
