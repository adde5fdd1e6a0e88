"""The :class:`Predictor`: a loaded model (torch or onnxruntime) with its preprocessing, its
calibration and its affect heads — one forward pass gives probabilities, verdicts and affect.
:mod:`emoadapt.api` wraps it in one-call functions for notebooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from PIL import Image

from .data.decode import decode_image
from .data.transforms import DEFAULT_FIT, FITS, image_to_tensor
from .errors import EmoadaptError
from .attribution import settings
from .explaining import TemperatureScaled, build_explainer, explain_images
from .faces.options import MAX_FACES, MIN_FACE
from .models.calibration import Calibration, load_calibration
from .models.int8 import int8_explain_session
from .models.onnx import onnx_file_meta, onnx_file_session, onnx_input_shape
from .models.registry import resolve_affect, resolve_model

ImageLike = Union[str, Path, bytes, Image.Image, np.ndarray]


def to_pil(image: ImageLike) -> Image.Image:
    """Any supported image input → an RGB ``PIL.Image``, through the one decoder every input type
    shares (:func:`emoadapt.data.decode.decode_image`: size limits, EXIF orientation, alpha
    composited on white, 16-bit rescaled), so a picture gives the same result as a path, bytes, a
    ``PIL.Image`` or an array. Raises :class:`~emoadapt.errors.ImageDecodeError` (a ``ValueError``)."""
    return decode_image(image, mode="RGB")


def default_runtime() -> str:
    """``onnx`` when onnxruntime is installed (faster than torch on a CPU, measured in
    docs/results/speed.md; probabilities agree with torch within 1e-4), else ``torch``."""
    import importlib.util

    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"


class Predictor:
    """A loaded model with its preprocessing; ``runtime`` is ``torch``, ``onnx`` (onnxruntime) or
    ``auto`` (:func:`default_runtime`); ``model`` a shipped name, a ``.safetensors`` file or an
    ``.onnx`` file written by ``emoadapt export`` (then onnxruntime only, no layer-wise
    explanations); ``fit`` how an image becomes the square input (default: the model's own, from
    its metadata; ``squash``: the whole image; ``pad``; ``centre``; ``crop``: 87.5 % centre crop); ``calibrated=False`` ignores the model's
    calibration file (plain softmax; what ``emoadapt calibrate`` refits from); ``precision`` what
    an explanation's masked images are evaluated in — ``auto``: the model's shipped int8 copy
    (:mod:`emoadapt.models.int8`) on CPUs with VNNI, else fp32; ``fp32``; ``int8`` (predictions are
    always fp32).

    Attributes:
        model: the torch model (kept for layer-wise explanations even with the ONNX runtime;
            ``None`` for an ``.onnx`` file).
        classes: output class names.
        input_size, channels: what :meth:`preprocess` produces.
        calibration: temperature, OOD score and thresholds behind ``uncertain``.
    """

    def __init__(self, model: str | Path | None = None, runtime: str = "auto", threads: int | None = None,
                 fit: str | None = None, calibrated: bool = True, precision: str = "auto"):
        if runtime not in ("auto", "torch", "onnx"):
            raise EmoadaptError(f"runtime must be auto, torch or onnx, got {runtime!r}")
        if fit is not None and fit not in FITS:
            raise EmoadaptError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
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
        #: how an image becomes the square input (:data:`emoadapt.data.transforms.FITS`): ``fit``, else
        #: the model's own (its metadata's ``fit``, from its training recipe), else ``DEFAULT_FIT``
        self.fit = fit or meta.get("fit") or DEFAULT_FIT
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
        #: the int8 copy (:mod:`emoadapt.models.int8`) explanations evaluate masked images with, or
        #: ``None`` (fp32): ``precision`` ``auto`` takes it where the model ships one and the CPU has VNNI
        self.explain_session = int8_explain_session(self.meta if self.model is not None else {}, precision,
                                                    runtime, threads)
        #: what :attr:`forward` returns, for the explainers
        self.output = "logits"

    def preprocess(self, image: ImageLike | torch.Tensor) -> torch.Tensor:
        """(C, S, S) float32 in [0, 1], grey or RGB: the image fitted to S × S by :attr:`fit` — the
        whole image resized (``squash``), fitted on grey (``pad``) or its short side resized and centre-cropped
        (``centre``); a tensor (C, H, W) is taken as already preprocessed."""
        if torch.is_tensor(image):
            return image
        return image_to_tensor(to_pil(image), self.input_size, self.channels, self.fit)

    def predict_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """(N, C, S, S) in [0, 1] → (N, K) calibrated class probabilities (temperature-scaled
        softmax); with the model's ``tta == "flip"`` the average over the image and its mirror image."""
        return self.predict_outputs(batch)["probs"]

    def predict_outputs(self, batch: torch.Tensor) -> dict[str, Any]:
        """One forward pass (two with ``tta == "flip"``, averaged) of (N, C, S, S) in [0, 1]:
        ``probs`` (N, K) float32, calibrated (with a temperature ≠ 1 also ``probs_uncalibrated``, the
        same softmax before it); ``verdicts``, one per image: ``{"uncertain": bool,
        "uncertain_reason": str | None, "ood_score": float | None}`` (:meth:`Calibration.judge`);
        with affect heads ``valence`` and ``arousal`` (N,) on 1–9 and ``dist`` (N, len(affect_names))."""
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
        if self.calibration.temperature != 1.0:  # the same pass before the temperature (reliability curves)
            out["probs_uncalibrated"] = Calibration().probabilities(raw["logits"])
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
            return self.run_session(batch)
        taps = self._taps()
        if taps == ("logits",):
            return {"logits": self.model(batch).double().numpy()}
        return {name: value.double().numpy() for name, value in self.model.forward_taps(batch, taps).items()}

    @torch.inference_mode()
    def raw_logits(self, batch: torch.Tensor) -> np.ndarray:
        """(N, C, S, S) → uncalibrated logits (N, K) float64, from onnxruntime when loaded."""
        if self.session is not None:
            return self.run_session(batch)["logits"]
        return self.model(batch).double().numpy()

    def _session_outputs(self) -> list[str]:
        return [output.name for output in self.session.get_outputs()]

    def run_session(self, batch: torch.Tensor, session: Any = None) -> dict[str, np.ndarray]:
        """``{output name: float64 array}`` of ``session`` (default: :attr:`session`); when no output
        is called ``logits`` (an exported file with other names), the first one not called
        ``pre_logits`` is taken as the logits."""
        session = session or self.session
        names = [output.name for output in session.get_outputs()]
        values = session.run(None, {session.get_inputs()[0].name: batch.numpy().astype(np.float32)})
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

    def analyze(self, image: ImageLike, faces: bool = False, min_face: int = MIN_FACE,
                max_faces: int = MAX_FACES) -> dict[str, Any]:
        """``{"emotion": {class: p}, "dominant_emotion", "uncertain", "uncertain_reason", "ood_score"}``
        for one image (see :meth:`predict_outputs`); with affect heads also ``valence`` and
        ``arousal`` (1–9) and ``distribution`` ({name: p} over 7 emotions); with ``faces=True`` also
        ``faces`` (:meth:`read_faces`). Raises ``ModelOutputError`` on broken outputs."""
        from .errors import ModelOutputError
        from .predict import check_probabilities

        picture = to_pil(image) if faces and not torch.is_tensor(image) else image
        out = self.predict_outputs(self.preprocess(picture)[None])
        problem = check_probabilities(out["probs"][0])
        if problem is not None:
            raise ModelOutputError(f"image 0: {problem}")
        emotion = {name: float(p) for name, p in zip(self.classes, out["probs"][0])}
        result = {"emotion": emotion, "dominant_emotion": max(emotion, key=emotion.get), **out["verdicts"][0],
                  **affect_fields(self, out, 0)}
        if faces:
            result["faces"] = self.read_faces(picture, min_face, max_faces)
        return result

    def read_faces(self, image: ImageLike, min_face: int = MIN_FACE, max_faces: int = MAX_FACES) -> dict[str, Any]:
        """Every face of ``image``, located and read (:func:`emoadapt.faces.read.read_faces`):
        ``{"faces": [{"box": [x, y, w, h] px, "score", "emotion", "expressions", …}], "count",
        "skipped_small", "skipped_over_limit", "note"}``; ``note`` says "no faces found" when none is
        read. ``min_face`` px (≥ 20) and ``max_faces`` bound the work. No identity is kept."""
        from .faces.read import read_faces

        if torch.is_tensor(image):
            raise EmoadaptError("read_faces needs the picture itself (a path, bytes, PIL image or array), "
                                "not a preprocessed tensor")
        return read_faces(self, to_pil(image), min_face, max_faces)

    @property
    def explain_precision(self) -> str:
        """``"int8"`` when explanations evaluate masked images with the int8 copy, else ``"fp32"``."""
        return "fp32" if self.explain_session is None else "int8"

    @property
    def forward(self) -> Any:
        """What explainers run: the onnxruntime session when loaded (its int8 copy,
        :attr:`explain_session`, when one is used), else the torch model; with a calibration
        temperature ≠ 1, a function returning the scaled logits (so an explanation's probability is
        the one :meth:`analyze` reports)."""
        if self.explain_session is not None:
            return TemperatureScaled(self, self.explain_session)
        if self.calibration.temperature == 1.0 and self.session is None:
            return self.model
        return TemperatureScaled(self)

    def explainer(self, depth: int = settings.DEPTH, baseline: Any = settings.BASELINE,
                  batch_size: int = settings.BATCH_SIZE, variant: str = settings.VARIANT,
                  max_evals: int | None = settings.MAX_EVALS, context: str = settings.CONTEXT,
                  regions: str = settings.REGION):
        """A :class:`~emoadapt.attribution.DnCShap` over this model (onnxruntime when loaded)."""
        return build_explainer(self, depth, baseline, batch_size, variant, max_evals, context, output=self.output,
                               regions=regions)

    def explain(self, images: Any, *, target: int | str | None = None, **options: Any):
        """DnCShap explanation (:class:`emoadapt.attribution.Explanation`) of ``target`` (a class name or
        index; default: the predicted class), or a list of them for a batch (a list of images, a
        tensor (N, C, H, W) or an array (N, H, W, C)). Options: ``depth``, ``baseline``,
        ``batch_size``, ``variant``, ``max_evals`` (a cap on model evaluations; ``None``: the whole
        tree), ``context``, ``regions`` (``"grid"`` or ``"content"``) — defaults in
        :mod:`emoadapt.attribution.settings`."""
        return explain_images(self, images, target, options)

    def explain_layers(self, image: ImageLike, taps: Sequence[str] | None = None, *, depth: int = settings.DEPTH,
                       target: int | str | None = None, batch_size: int = settings.BATCH_SIZE,
                       on_tap: Any = None) -> dict:
        """Layer-wise DnCShap at each tap (default: all spatial taps of the model); ``on_tap(tap,
        done, total)`` is called after each one (progress)."""
        from .attribution import explain_layers

        if self.model is None:
            raise EmoadaptError("layer-wise explanations need the torch model: pass the .safetensors file or a "
                                "shipped model name, not an .onnx file")

        return explain_layers(self.model, self.preprocess(image), taps, depth=settings.check_depth(depth),
                              target=self.target_index(target), batch_size=settings.check_batch_size(batch_size),
                              class_names=self.classes, on_tap=on_tap)

    def target_index(self, target: int | str | None) -> int | None:
        """The class index of ``target`` (a name or index), or ``None`` for the predicted class."""
        return settings.check_target(target, self.classes)


def affect_fields(predictor: Any, outputs: dict[str, np.ndarray], index: int) -> dict[str, Any]:
    """``{"valence", "arousal", "distribution": {name: p}}`` of image ``index`` of
    :meth:`Predictor.predict_outputs`, or ``{}`` for a model without affect heads."""
    if "valence" not in outputs:
        return {}
    return {"valence": float(outputs["valence"][index]), "arousal": float(outputs["arousal"][index]),
            "distribution": {name: float(p) for name, p in zip(predictor.affect_names, outputs["dist"][index])}}
