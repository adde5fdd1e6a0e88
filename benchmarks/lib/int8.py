"""int8 copies of a model for onnxruntime (issue #33): static quantisation in QDQ format with
per-channel weights, calibrated on training images read through the product's own preprocessing.

    from benchmarks.lib.int8 import export_fp32, calibration_paths, quantize_int8
    fp32 = export_fp32(predictor, "model.onnx")                  # the taps predict/explain run
    quantize_int8(fp32, "model.int8.onnx", predictor.preprocess, calibration_paths(150, 150))

Calibration images: Emotion6 images of fold 0's training part of
``benchmarks/results/adaptation/folds.json`` (folds 2, 3, 4; fold 0 is its test and fold 1 its
validation) and FER2013 ``Training`` faces of the four mapped classes, drawn with a fixed seed.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from benchmarks.lib.provenance import REPO

FOLDS = REPO / "benchmarks" / "results" / "adaptation" / "folds.json"
#: folds of ``FOLDS`` that fold 0's training part is made of (0: test, 1: validation)
TRAIN_FOLDS = ("fold2", "fold3", "fold4")
#: FER2013 classes that map onto the 4 IER classes (angry, disgust, happy, sad)
FACE_CLASSES = ("angry", "disgust", "happy", "sad")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_fp32(predictor: Any, path: str | Path) -> Path:
    """Export ``predictor.model`` (a loaded :class:`~emoadapt.predictor.Predictor`) to ``path`` as
    fp32 ONNX with the outputs one prediction pass reads (``logits`` (N, K), plus ``pre_logits``
    when the calibration's OOD score needs them), input ``images`` (N, 3, S, S) in [0, 1]."""
    from emoadapt.models.onnx import export_onnx

    return export_onnx(predictor.model, path, taps=predictor._taps())


def calibration_paths(scenes: int, faces: int, seed: int = 0) -> list[str]:
    """``scenes`` Emotion6 images of fold 0's training folds and ``faces`` FER2013 Training faces of
    :data:`FACE_CLASSES` (equal numbers per class, rounded down), paths in a seeded random order."""
    from emoadapt.data import open_dataset
    from emoadapt.data.locate import dataset_path
    from emoadapt.data.splits import select_splits

    rng = random.Random(seed)
    emotion6 = select_splits(open_dataset(dataset_path("emotion6"), "auto"), FOLDS, list(TRAIN_FOLDS))
    scene_paths = sorted(s.path for s in emotion6.samples)
    fer = open_dataset(dataset_path("fer2013"), "auto")
    face_paths: list[str] = []
    for label in FACE_CLASSES:
        pool = sorted(s.path for s in fer.samples if s.split == "Training" and s.label == label)
        face_paths += rng.sample(pool, min(len(pool), faces // len(FACE_CLASSES)))
    chosen = rng.sample(scene_paths, min(scenes, len(scene_paths))) + face_paths
    rng.shuffle(chosen)
    return chosen


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: ``get_next()`` → ``{input: (B, C, S, S) float32}``
    or ``None`` when the images are used up."""

    def __init__(self, input_name: str, batches: Iterator[np.ndarray]):
        self.input_name, self.batches = input_name, batches

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def _batches(paths: Sequence[str], preprocess: Callable[[str], Any], size: int) -> Iterator[np.ndarray]:
    """(B, C, S, S) float32 batches of ``preprocess(path)`` (each a (C, S, S) tensor in [0, 1])."""
    for start in range(0, len(paths), size):
        yield np.stack([preprocess(p).numpy() for p in paths[start:start + size]]).astype(np.float32)


def quantize_int8(fp32: str | Path, out: str | Path, preprocess: Callable[[str], Any], paths: Sequence[str],
                  *, op_types: Sequence[str] | None = None, exclude_head: bool = True, reduce_range: bool = False,
                  method: str = "minmax", batch: int = 16) -> Path:
    """Write ``out``: ``fp32`` statically quantised by onnxruntime (QDQ, per-channel int8 weights,
    uint8 activations), calibrated on ``paths`` read through ``preprocess``.

    Args:
        op_types: operator types to quantise (``None``: all that onnxruntime supports).
        exclude_head: keep the nodes after the branches' pooling (standardisation, experts, gate,
            log-softmax mixture: a few thousand multiply-adds) in fp32.
        reduce_range: 7-bit weights (onnxruntime's advice for u8s8 on CPUs without VNNI).
        method: ``minmax``, ``percentile`` or ``entropy`` activation ranges.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out)
    prepared = out.with_name(out.stem + ".prep.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    model = onnx.load(str(prepared))
    excluded = head_nodes(model) if exclude_head else []
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    reader = _Reader(model.graph.input[0].name, _batches(list(paths), preprocess, batch))
    quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                    op_types_to_quantize=list(op_types) if op_types else None, nodes_to_exclude=excluded,
                    calibrate_method=methods[method])
    prepared.unlink(missing_ok=True)
    return out


def head_nodes(model: Any) -> list[str]:
    """Names of the nodes downstream of the last global pooling (``ReduceMean`` /
    ``GlobalAveragePool``) of each branch: the head, which :func:`quantize_int8` keeps in fp32."""
    graph = model.graph
    pools = [n for n in graph.node if n.op_type in ("ReduceMean", "GlobalAveragePool")]
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen: set[str] = set()
    frontier = [t for n in pools for t in n.output]
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.name not in seen:
                seen.add(node.name)
                frontier.extend(node.output)
    return sorted(seen)
