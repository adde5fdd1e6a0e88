"""int8 copies of exported models (issue #33): onnxruntime static quantisation in QDQ format,
per-channel int8 weights and uint8 activations, calibrated on training images read through the
product's own preprocessing.

``emoadapt export --int8`` builds the shipped default's int8 file with :func:`build_int8`;
:class:`~emoadapt.predictor.Predictor` runs it when the registry names one (``precision``).
The head after the branches' global pooling (standardisation, experts, gate, log-softmax
mixture: a few thousand multiply-adds) stays in fp32: it costs nothing and int8 gains nothing there.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

#: FER2013 classes that map onto the 4 IER classes (angry, disgust, happy, sad)
FACE_CLASSES = ("angry", "disgust", "happy", "sad")


def calibration_paths(scenes: int, faces: int, *, manifest: str | Path | None = None,
                      splits: Sequence[str] | None = None, seed: int = 0) -> list[str]:
    """``scenes`` Emotion6 images of the four IER classes (of ``splits`` of ``manifest`` when given)
    and ``faces`` FER2013 ``Training`` faces of :data:`FACE_CLASSES` (equal numbers per class,
    rounded down), in a seeded random order. Needs both datasets under ``EMOADAPT_DATA``."""
    from ..data import open_dataset
    from ..data.locate import dataset_path
    from ..data.splits import select_splits

    rng = random.Random(seed)
    emotion6 = select_splits(open_dataset(dataset_path("emotion6"), "auto").to_ier_dataset(), manifest,
                             list(splits) if splits else None)
    scene_paths = sorted(s.path for s in emotion6.samples)
    fer = open_dataset(dataset_path("fer2013"), "auto")
    face_paths: list[str] = []
    for label in FACE_CLASSES:
        pool = sorted(s.path for s in fer.samples if s.split == "Training" and s.label == label)
        face_paths += rng.sample(pool, min(len(pool), faces // len(FACE_CLASSES)))
    chosen = rng.sample(scene_paths, min(scenes, len(scene_paths))) + face_paths
    rng.shuffle(chosen)
    return chosen


def image_batches(paths: Sequence[str], preprocess: Callable[[str], Any], size: int = 16) -> Iterator[np.ndarray]:
    """(B, C, S, S) float32 batches of ``preprocess(path)`` (each a (C, S, S) tensor in [0, 1])."""
    for start in range(0, len(paths), size):
        yield np.stack([preprocess(p).numpy() for p in paths[start:start + size]]).astype(np.float32)


class _Reader:
    """onnxruntime's ``CalibrationDataReader`` protocol: ``get_next()`` → ``{input: batch}`` or ``None``."""

    def __init__(self, input_name: str, batches: Iterator[np.ndarray]):
        self.input_name, self.batches = input_name, batches

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def quantize_int8(fp32: str | Path, out: str | Path, batches: Iterator[np.ndarray], *, exclude_head: bool = True,
                  resized_fp32: bool = False, reduce_range: bool = False, method: str = "minmax") -> Path:
    """Write ``out``: the ``fp32`` ONNX file statically quantised by onnxruntime (QDQ, per-channel
    int8 weights, uint8 activations), activation ranges calibrated on ``batches`` (N, C, S, S).

    Args:
        exclude_head: keep the nodes downstream of the global poolings (:func:`head_nodes`) in fp32.
        resized_fp32: keep the branch that reads a resized input (:func:`resized_branch_nodes`: the
            fusion model's face branch at 96 px, ~1/5 of its multiply-adds) in fp32 too.
        reduce_range: 7-bit weights (onnxruntime's advice for u8s8 on CPUs without VNNI, if
            accuracy suffers from saturation).
        method: ``minmax``, ``percentile`` or ``entropy`` activation ranges.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        reader = _Reader(model.graph.input[0].name, batches)
        excluded = (head_nodes(model) if exclude_head else []) + (resized_branch_nodes(model) if resized_fp32 else [])
        quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                        nodes_to_exclude=excluded, calibrate_method=methods[method])
    return Path(out)


def head_nodes(model: Any) -> list[str]:
    """Names of the nodes downstream of the global poolings (``ReduceMean`` / ``GlobalAveragePool``)
    of an ONNX model: the head (EfficientNet-Lite has no squeeze-excite, so these are the branches'
    last poolings only)."""
    pools = [n for n in model.graph.node if n.op_type in ("ReduceMean", "GlobalAveragePool")]
    return _downstream(model, pools, set())


def _downstream(model: Any, starts: list[Any], stop: set[str]) -> list[str]:
    """Names of the nodes fed, directly or not, by the outputs of ``starts``, not going past ``stop``."""
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen: set[str] = set()
    frontier = [t for n in starts for t in n.output]
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.name not in seen and node.name not in stop:
                seen.add(node.name)
                frontier.extend(node.output)
    return sorted(seen)


def resized_branch_nodes(model: Any) -> list[str]:
    """Names of the nodes between a ``Resize`` of the input and the head (:func:`head_nodes`): the
    branch of a fusion model that reads the image at its own, smaller size (the face branch)."""
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    return _downstream(model, resizes, set(head_nodes(model)))


def build_int8(model: Any, out: str | Path, preprocess: Callable[[str], Any], paths: Sequence[str], *,
               taps: tuple[str, ...] = ("logits",), metadata: dict | None = None, **options: Any) -> Path:
    """Export torch ``model`` to fp32 ONNX (outputs ``taps``) in a temporary folder and write its
    int8 copy to ``out`` (:func:`quantize_int8` with ``options``, calibrated on ``paths`` through
    ``preprocess``), with ``metadata`` stored as the fp32 export stores it."""
    from .onnx import add_metadata, export_onnx

    with tempfile.TemporaryDirectory() as folder:
        fp32 = export_onnx(model, Path(folder) / "fp32.onnx", taps=taps)
        quantize_int8(fp32, out, image_batches(paths, preprocess), **options)
    if metadata:
        add_metadata(Path(out), metadata)
    return Path(out)
