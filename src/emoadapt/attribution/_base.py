"""What every explainer shares: one normalised model function, one signature, one result object.

* :class:`BatchFunction` turns a torch ``nn.Module``, an onnxruntime ``InferenceSession`` or any
  callable into ``images (N, C, H, W) float32 -> probabilities (N, K) float64`` and counts the
  images it evaluates.
* :class:`Explainer` is the base class: ``Explainer(forward, *, batch_size, output, class_names)``
  and ``attribute(inputs, target=None) -> Explanation``.
* :class:`Explanation` is the plain result: region scores, region boxes, a full-resolution map,
  the target, the values of the game, the cost and the settings; saved as JSON + ``.npy``.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..fileio import atomic_path, atomic_write_json

OUTPUTS = ("auto", "probs", "logits")


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode (batch-norm statistics frozen) and restore its mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _is_onnx_session(forward: Any) -> bool:
    return callable(getattr(forward, "run", None)) and callable(getattr(forward, "get_inputs", None))


class BatchFunction:
    """One batch function over any supported model, counting model evaluations.

    ``forward`` is a torch ``nn.Module`` (run under ``inference_mode`` in eval mode, on the
    module's device), an onnxruntime ``InferenceSession`` (fed float32 NumPy; a fixed batch
    dimension is honoured by running fixed-size pieces) or any callable ``images -> scores``
    returning a torch tensor or a NumPy array.

    ``output`` says what ``forward`` returns: ``"probs"`` (used as is), ``"logits"`` (a softmax
    is applied, in float64) or ``"auto"``: logits for modules and ONNX sessions (what exported
    classifiers return), probabilities for plain callables.

    Attributes:
        evaluations: number of images evaluated so far (one per image, whatever the batching).
    """

    def __init__(self, forward: Any, output: str = "auto"):
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if isinstance(forward, torch.nn.Module):
            self.kind = "torch"
        elif _is_onnx_session(forward):
            self.kind = "onnx"
        elif callable(forward):
            self.kind = "callable"
        else:
            raise TypeError(f"forward must be an nn.Module, an onnxruntime InferenceSession or a callable, "
                            f"got {type(forward).__name__}")
        self.forward = forward
        self.output = output if output != "auto" else ("probs" if self.kind == "callable" else "logits")
        self.evaluations = 0

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """(N, C, H, W) float32 → (N, K) float64 class probabilities (softmax of logits if needed)."""
        scores = np.asarray(self._raw(images), dtype=np.float64).reshape(len(images), -1)
        self.evaluations += len(images)
        if self.output == "logits":
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        return scores

    def _raw(self, images: torch.Tensor) -> np.ndarray:
        if self.kind == "torch":
            param = next(self.forward.parameters(), None)
            device = param.device if param is not None else images.device
            with eval_mode(self.forward), torch.inference_mode():
                return self.forward(images.to(device)).double().cpu().numpy()
        if self.kind == "onnx":
            return self._run_onnx(images.detach().cpu().numpy().astype(np.float32, copy=False))
        with torch.inference_mode():
            out = self.forward(images)
        return out.detach().double().cpu().numpy() if torch.is_tensor(out) else np.asarray(out)

    def _run_onnx(self, batch: np.ndarray) -> np.ndarray:
        spec = self.forward.get_inputs()[0]
        step = spec.shape[0] if isinstance(spec.shape[0], int) and spec.shape[0] > 0 else len(batch)
        return np.concatenate([self.forward.run(None, {spec.name: batch[i:i + step]})[0]
                               for i in range(0, len(batch), step)])


class Explainer:
    """Base class: the constructor takes the model, ``attribute`` returns an :class:`Explanation`.

    Args:
        forward: see :class:`BatchFunction`.
        batch_size: images per model call (one name for batching everywhere).
        output: ``"auto"``, ``"probs"`` or ``"logits"`` (see :class:`BatchFunction`).
        class_names: optional names of the K outputs, used for ``Explanation.target_name``.
    """

    def __init__(self, forward: Any, *, batch_size: int = 64, output: str = "auto",
                 class_names: Sequence[str] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.function = BatchFunction(forward, output=output)
        self.batch_size = batch_size
        self.class_names = tuple(class_names) if class_names is not None else None

    def attribute(self, inputs: torch.Tensor, target: int | None = None) -> "Explanation":
        """Explain ``inputs`` (C, H, W) or (1, C, H, W) for class ``target`` (default: the predicted one)."""
        raise NotImplementedError

    def class_name(self, target: int) -> str | None:
        return self.class_names[target] if self.class_names is not None else None


@dataclass
class Explanation:
    """The result of one explanation.

    Attributes:
        values: (R,) float64 region scores φ, in probability units of the target; R = 2**depth
            for the full tree, fewer under a ``max_evals`` budget.
        boxes: (R, 4) int64 region boxes (top, left, bottom, right), bottom/right exclusive, in
            input-image pixels (layer-wise: the tap's cells scaled to the image).
        map: (H, W) float32 per-pixel attribution: each region's score spread evenly over its
            pixels, so ``map.sum() == values.sum()`` (up to float32 rounding).
        target: explained class index; ``target_name`` its name when class names are known.
        probability: the model's probability of ``target`` on the unmasked input.
        base_value: v(baseline), the value with every region absent.
        full_value: v(x), the value with every region present (equal to ``probability`` for
            pixel explanations; layer-wise it is the tap's value function on the unedited tap).
        evaluations: model evaluations used (images run through the model).
        seconds: wall time of the explanation.
        depth: effective partition depth; ``requested_depth`` the one asked for (depth is capped
            so that every region keeps at least one pixel or cell).
        variant: ``"clean"`` or ``"reference"``; ``context``: the clean variant's context rule.
        baseline: description of the baseline (``"zero"``, ``"mean"``, ``"blur(sigma=4.8)"``…).
        tap: layer name for layer-wise explanations, else ``None``.
        max_evals: the evaluation budget asked for (``None``: the full tree). Under a budget the
            regions have several sizes and ``depth`` is the deepest level reached.
        grid: layer-wise only: the tap's (h, w) cells, the resolution its regions are made of.
        input_map: when ``map`` was drawn back at the original image's resolution (explanations of
            an image file or picture by a shipped model: (height, width), attribution per original
            pixel, NaN where the input fit did not analyse the image), the (S, S) map over the model
            input it came from; else ``None`` (``map`` is over the input).
    """

    values: np.ndarray
    boxes: np.ndarray
    map: np.ndarray
    target: int
    target_name: str | None
    probability: float
    base_value: float
    full_value: float
    evaluations: int
    seconds: float
    depth: int
    requested_depth: int
    variant: str
    context: str
    baseline: str
    tap: str | None = None
    max_evals: int | None = None
    grid: tuple[int, int] | None = None
    input_map: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, int]:
        """(S, S): the model input's size, which ``boxes`` are in."""
        return tuple((self.map if self.input_map is None else self.input_map).shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of everything except the maps (values and boxes as lists)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("map", "input_map")}
        data["values"] = self.values.tolist()
        data["boxes"] = self.boxes.tolist()
        data["map_shape"] = list(self.map.shape)
        return data

    def save(self, dir_or_prefix: str | Path) -> Path:
        """Write ``PREFIX.json`` and ``PREFIX.npy`` (the map) atomically; returns the JSON path.

        An existing directory means ``DIR/explanation``; a ``.json`` suffix is dropped from a prefix.
        """
        prefix = _prefix(dir_or_prefix)
        json_path, npy_path = prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".npy")
        with atomic_path(npy_path, suffix=".npy") as tmp:
            np.save(tmp, self.map.astype(np.float32))
        atomic_write_json(json_path, dict(self.to_dict(), map_file=npy_path.name))
        return json_path

    @classmethod
    def load(cls, dir_or_prefix: str | Path) -> "Explanation":
        """Read what :meth:`save` wrote (give the directory, the prefix or the ``.json`` path)."""
        prefix = _prefix(dir_or_prefix)
        json_path = prefix.with_name(prefix.name + ".json")
        data = json.loads(json_path.read_text())
        data["map"] = np.load(json_path.with_name(data.pop("map_file")))
        data.pop("map_shape")
        data["values"] = np.asarray(data["values"], dtype=np.float64)
        data["boxes"] = np.asarray(data["boxes"], dtype=np.int64).reshape(-1, 4)
        return cls(**data)


def _prefix(dir_or_prefix: str | Path) -> Path:
    path = Path(dir_or_prefix)
    if path.is_dir():
        return path / "explanation"
    return path.with_suffix("") if path.suffix == ".json" else path


def paint(values: np.ndarray, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(R,) scores on (R, 4) boxes → (height, width) float32 map, each score divided by its area."""
    out = np.zeros((height, width), dtype=np.float64)
    for value, (top, left, bottom, right) in zip(values, boxes):
        out[top:bottom, left:right] = value / ((bottom - top) * (right - left))
    return out.astype(np.float32)


def one_image(inputs: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(C, H, W) or (1, C, H, W) → (C, H, W) float32 tensor."""
    x = torch.as_tensor(inputs)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"expected one image (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    return x.float()
