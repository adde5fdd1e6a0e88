"""The benchmarks' int8 copies of the default model (issue #33): the product's quantisation
(:mod:`emoadapt.models.int8`: onnxruntime static QDQ, per-channel int8 weights, head in fp32)
calibrated on the benchmarks' fixed image set.

    from benchmarks.lib.int8 import export_fp32, calibration_paths, quantize_int8
    fp32 = export_fp32(predictor, "model.onnx")                  # the outputs predict/explain read
    quantize_int8(fp32, "model.int8.onnx", predictor.preprocess, calibration_paths(150, 150))

Calibration images: Emotion6 images of fold 0's training part of
``benchmarks/results/adaptation/folds.json`` (folds 2, 3, 4; fold 0 is its test and fold 1 its
validation) and FER2013 ``Training`` faces of the four mapped classes, drawn with a fixed seed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks.lib.provenance import REPO

FOLDS = REPO / "benchmarks" / "results" / "adaptation" / "folds.json"
#: folds of ``FOLDS`` that fold 0's training part is made of (0: test, 1: validation)
TRAIN_FOLDS = ("fold2", "fold3", "fold4")


#: the int8 copies the benchmarks compare: name → options of :func:`emoadapt.models.int8.quantize_int8`
#: (all: QDQ, per-channel weights, uint8 activations, MinMax ranges, the head in fp32)
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
    """``scenes`` Emotion6 images of :data:`TRAIN_FOLDS` and ``faces`` FER2013 Training faces."""
    from emoadapt.models.int8 import calibration_paths as paths

    return paths(scenes, faces, manifest=FOLDS, splits=TRAIN_FOLDS, seed=seed)


def quantize_int8(fp32: str | Path, out: str | Path, preprocess: Callable[[str], Any], paths: Sequence[str],
                  **options: Any) -> Path:
    """``fp32``'s int8 copy at ``out``, calibrated on ``paths`` read through ``preprocess``; ``options``
    of :func:`emoadapt.models.int8.quantize_int8` (``reduce_range``, ``resized_fp32``, ``method``)."""
    from emoadapt.models.int8 import image_batches, quantize_int8 as quantize

    return quantize(fp32, out, image_batches(paths, preprocess), **options)
