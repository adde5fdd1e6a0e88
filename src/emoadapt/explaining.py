"""Explaining any model, one image or a batch: the plumbing behind :func:`emoadapt.explain` and
:meth:`emoadapt.predictor.Predictor.explain`.

A *source* is anything with ``forward`` (what the explainer runs), ``output`` (``"logits"``,
``"probs"`` or ``"auto"``), ``classes``, ``preprocess(image) -> (C, H, W)`` and
``target_index(target)``: a :class:`~emoadapt.predictor.Predictor` for shipped models and
``.safetensors`` files, an :class:`AnyModel` for the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .data.decode import decode_image
from .data.transforms import DEFAULT_FIT, image_to_tensor, image_to_uint8, uint8_to_tensor
from .errors import EmoadaptError
from .attribution import settings
from .models.onnx import onnx_file_session, onnx_input_shape


class TemperatureScaled:
    """Images (N, C, H, W) → logits / T of a :class:`~emoadapt.predictor.Predictor` (torch or
    onnxruntime): anything with ``raw_logits(images)`` and ``calibration.temperature``; with
    ``session`` (an onnxruntime session, e.g. the predictor's int8 copy), that session's logits."""

    def __init__(self, predictor: Any, session: Any = None):
        self.predictor, self.session = predictor, session

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        if self.session is None:
            logits = self.predictor.raw_logits(images)
        else:
            logits = self.predictor.run_session(images, self.session)["logits"]
        return logits / self.predictor.calibration.temperature


class AnyModel:
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
        size, picture = self.input_size, decode_image(image, mode="RGB")
        if isinstance(size, (tuple, list)) and len(size) == 2 and size[0] != size[1]:  # (H, W): resized as is
            picture = picture.convert("L" if self.channels == 1 else "RGB").resize((int(size[1]), int(size[0])))
            return uint8_to_tensor(image_to_uint8(picture))
        side = int(size[0] if isinstance(size, (tuple, list)) else size)
        return image_to_tensor(picture, side, self.channels, DEFAULT_FIT)

    def target_index(self, target: int | str | None) -> int | None:
        """The class index of ``target`` (a name or index), or ``None`` for the predicted class."""
        return settings.check_target(target, self.classes or None)


def build_explainer(source: Any, depth: Any, baseline: Any, batch_size: Any, variant: Any, max_evals: Any,
                    context: Any, output: str = "auto", regions: Any = settings.REGION):
    """A :class:`~emoadapt.attribution.DnCShap` over ``source.forward``, every option checked by
    :mod:`emoadapt.attribution.settings`."""
    from .attribution import DnCShap

    return DnCShap(source.forward, depth=settings.check_depth(depth), baseline=baseline,
                   batch_size=settings.check_batch_size(batch_size), variant=variant, context=context,
                   output=output, class_names=source.classes or None, max_evals=settings.check_max_evals(max_evals),
                   regions=regions)


#: The options of ``explain(...)`` and their defaults (from :mod:`emoadapt.attribution.settings`).
EXPLAIN_DEFAULTS = {"depth": settings.DEPTH, "baseline": settings.BASELINE, "batch_size": settings.BATCH_SIZE,
                    "variant": settings.VARIANT, "max_evals": settings.MAX_EVALS, "context": settings.CONTEXT,
                    "regions": settings.REGION}


def explain_images(source: Any, images: Any, target: int | str | None, options: dict[str, Any]):
    """One :class:`~emoadapt.attribution.Explanation` of ``target`` per image of ``images`` (a list for a
    batch, see :func:`as_batch`), with ``options`` over :data:`EXPLAIN_DEFAULTS`."""
    unknown = sorted(set(options) - set(EXPLAIN_DEFAULTS))
    if unknown:
        raise EmoadaptError(f"unknown explain option(s) {', '.join(unknown)}; known: {', '.join(EXPLAIN_DEFAULTS)}")
    explainer = build_explainer(source, **{**EXPLAIN_DEFAULTS, **options}, output=getattr(source, "output", "auto"))
    target = source.target_index(target)
    batch, items = as_batch(images)
    results = [explain_one(source, explainer, item, target) for item in items]
    return results if batch else results[0]


def explain_one(source: Any, explainer: Any, item: Any, target: int | None = None):
    """The explanation of one image — of ``target``, by default the class the model predicts as
    ``predict`` does (a :class:`Predictor`'s test-time augmentation included); for a model with an
    input fit and an image that is not a tensor, its ``map`` is at the image's own resolution
    (:func:`at_image_resolution`), as every surface shows it."""
    fit = getattr(source, "fit", None)
    picture = None if fit is None or torch.is_tensor(item) else decode_image(item, mode="RGB")
    x = source.preprocess(item if picture is None else picture)
    if target is None and hasattr(source, "predict_tensors"):  # the class predict reports (its TTA included)
        target = int(source.predict_tensors(x[None])[0].argmax())
    explanation = explainer.attribute(x, target)
    return explanation if picture is None else at_image_resolution(explanation, fit, *picture.size)


def at_image_resolution(explanation: Any, fit: str, width: int, height: int):
    """``explanation`` with ``map`` drawn back over a ``width`` × ``height`` image that ``fit`` made the
    input from (attribution per original pixel, the analysed part keeping its sum; NaN where the
    fit did not analyse the image) and ``input_map`` the map over the input."""
    from dataclasses import replace

    from .data.transforms import square_map_to_image

    if explanation.input_map is not None:
        return explanation
    return replace(explanation, map=square_map_to_image(explanation.map, fit, width, height),
                   input_map=explanation.map)


def as_batch(images: Any) -> tuple[bool, list]:
    """(is a batch, the images): a list or tuple, a tensor (N, C, H, W) or an array (N, H, W, C) is a batch."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise EmoadaptError("explain got an empty batch of images")
        return True, list(images)
    if (torch.is_tensor(images) or isinstance(images, np.ndarray)) and images.ndim == 4:
        return True, list(images)
    return False, [images]
