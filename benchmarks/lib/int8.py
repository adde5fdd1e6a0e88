"""int8 copies of the default model for the benchmarks (issue #33): onnxruntime static
quantisation in QDQ format, per-channel int8 weights and uint8 activations, calibrated on training
images read through the product's own preprocessing. Measured, not shipped: on this CPU (AVX2, no
VNNI) no copy kept accuracy within 0.5 points (docs/dncshap.md §11).

    from benchmarks.lib.int8 import export_fp32, calibration_paths, quantize_int8
    fp32 = export_fp32(predictor, "model.onnx")                  # the outputs predict/explain read
    quantize_int8(fp32, "model.int8.onnx", predictor.preprocess, calibration_paths(150, 150))

Calibration images: Emotion6 images of fold 0's training part of
``benchmarks/results/adaptation/folds.json`` (folds 2, 3, 4; fold 0 is its test and fold 1 its
validation) and FER2013 ``Training`` faces of the four mapped classes, drawn with a fixed seed.
The head after the branches' global pooling (standardisation, experts, gate, log-softmax mixture:
a few thousand multiply-adds) stays in fp32: int8 gains nothing there.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from benchmarks.lib.provenance import REPO

FOLDS = REPO / "benchmarks" / "results" / "adaptation" / "folds.json"
#: folds of ``FOLDS`` that fold 0's training part is made of (0: test, 1: validation)
TRAIN_FOLDS = ("fold2", "fold3", "fold4")
#: FER2013 classes that map onto the 4 IER classes (angry, disgust, happy, sad)
FACE_CLASSES = ("angry", "disgust", "happy", "sad")
#: the int8 copies the benchmarks compare: name → options of :func:`quantize_int8`
VARIANTS: dict[str, dict[str, Any]] = {
    "int8": {},
    "int8 7-bit": {"reduce_range": True},  # no u8s8 saturation on AVX2 without VNNI
    "int8 7-bit, face fp32": {"reduce_range": True, "resized_fp32": True},  # the 96 px face branch in fp32
}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_fp32(predictor: Any, path: str | Path) -> Path:
    """Export ``predictor.model`` (a :class:`~emoadapt.predictor.Predictor` on onnxruntime) to
    ``path`` as fp32 ONNX with the outputs its own session has (``logits`` (N, K), plus
    ``pre_logits`` when the calibration's OOD score needs them), input ``images`` (N, 3, S, S) in [0, 1]."""
    from emoadapt.models.onnx import export_onnx

    taps = tuple(output.name for output in predictor.session.get_outputs())
    return export_onnx(predictor.model, path, taps=taps)


def calibration_paths(scenes: int, faces: int, seed: int = 0) -> list[str]:
    """``scenes`` Emotion6 images of :data:`TRAIN_FOLDS` and ``faces`` FER2013 ``Training`` faces of
    :data:`FACE_CLASSES` (equal numbers per class, rounded down), in a seeded random order."""
    from emoadapt.data import open_dataset
    from emoadapt.data.locate import dataset_path
    from emoadapt.data.splits import select_splits

    rng = random.Random(seed)
    emotion6 = select_splits(open_dataset(dataset_path("emotion6"), "auto").to_ier_dataset(), FOLDS,
                             list(TRAIN_FOLDS))
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


def quantize_int8(fp32: str | Path, out: str | Path, preprocess: Callable[[str], Any], paths: Sequence[str], *,
                  exclude_head: bool = True, resized_fp32: bool = False, reduce_range: bool = False,
                  method: str = "minmax") -> Path:
    """Write ``out``: the ``fp32`` ONNX file statically quantised by onnxruntime (QDQ, per-channel
    int8 weights, uint8 activations), activation ranges calibrated on ``paths`` read through
    ``preprocess`` (batches of 16).

    Args:
        exclude_head: keep the nodes downstream of the global poolings (:func:`head_nodes`) in fp32.
        resized_fp32: keep the branch that reads a resized input (:func:`resized_branch_nodes`: the
            fusion model's face branch at 96 px, ~1/5 of its multiply-adds) in fp32 too.
        reduce_range: 7-bit weights (onnxruntime's advice for u8s8 on CPUs without VNNI, whose
            16-bit intermediate sums saturate).
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
        reader = _Reader(model.graph.input[0].name, image_batches(paths, preprocess))
        excluded = (head_nodes(model) if exclude_head else []) + (resized_branch_nodes(model) if resized_fp32 else [])
        quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                        nodes_to_exclude=excluded, calibrate_method=methods[method])
    return Path(out)


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


def head_nodes(model: Any) -> list[str]:
    """Names of the nodes downstream of the global poolings (``ReduceMean`` / ``GlobalAveragePool``)
    of an ONNX model: the head (EfficientNet-Lite has no squeeze-excite, so these are the branches'
    last poolings only)."""
    pools = [n for n in model.graph.node if n.op_type in ("ReduceMean", "GlobalAveragePool")]
    return _downstream(model, pools, set())


def resized_branch_nodes(model: Any) -> list[str]:
    """Names of the nodes between a ``Resize`` of the input and the head (:func:`head_nodes`): the
    branch of a fusion model that reads the image at its own, smaller size (the face branch)."""
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    return _downstream(model, resizes, set(head_nodes(model)))
