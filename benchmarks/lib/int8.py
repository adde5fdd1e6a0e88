"""int8 copies of the default model for the benchmarks (issue #33), made by the product's
:mod:`emoadapt.models.int8` (onnxruntime static quantisation, QDQ, per-channel int8 weights, uint8
activations) from the product's fp32 export, calibrated on the images of the product's config
(configs/int8/emoadapt-ier.toml). The shipped copy is :data:`SHIPPED`; the others are the variants
measured in session 15 on a CPU without VNNI (docs/dncshap.md §11).

    from benchmarks.lib.int8 import export_fp32, calibration_paths, quantize_int8
    fp32 = export_fp32(predictor, "model.onnx")                  # the outputs predict/explain read
    quantize_int8(fp32, "model.int8.onnx", predictor.preprocess, calibration_paths())
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks.lib.provenance import REPO

from emoadapt.models.weights import sha256 as file_sha256  # noqa: F401 (the scripts' name for it)
from emoadapt.models.int8 import (calibration_paths as config_paths, downstream_nodes, head_nodes, image_batches,
                                  load_int8_config, quantize_onnx)

#: the product's int8 config, and the split manifest its Emotion6 images come from
CONFIG = REPO / "configs" / "int8" / "emoadapt-ier.toml"
FOLDS = REPO / "benchmarks" / "results" / "adaptation" / "folds.json"
#: the name of the shipped copy among the candidates
SHIPPED = "int8 (shipped)"
#: the int8 copies the benchmarks compare: name → options of :func:`quantize_int8` (``None``: the shipped file)
VARIANTS: dict[str, dict[str, Any] | None] = {
    SHIPPED: None,
    "int8": {},
    "int8 7-bit": {"reduce_range": True},  # no u8s8 saturation on AVX2 without VNNI
    "int8 7-bit, face fp32": {"reduce_range": True, "resized_fp32": True},  # the 96 px face branch in fp32
    "int8, pads not folded": {"unfolded": True},  # the shipped recipe on the export before fold_pads
}


def export_fp32(predictor: Any, path: str | Path) -> Path:
    """Export ``predictor.model`` (a :class:`~emoadapt.predictor.Predictor` on onnxruntime) to
    ``path`` as fp32 ONNX with the outputs its own session has (``logits`` (N, K), plus
    ``pre_logits`` when the calibration's OOD score needs them), input ``images`` (N, 3, S, S) in [0, 1]."""
    from emoadapt.models.onnx import export_onnx

    taps = tuple(output.name for output in predictor.session.get_outputs())
    return export_onnx(predictor.model, path, taps=taps)


def calibration_paths() -> list[str]:
    """The calibration images of the product's config (:data:`CONFIG`)."""
    return config_paths(load_int8_config(CONFIG), REPO)


def shipped_int8_path(model: str | None = None) -> Path:
    """The shipped int8 file of ``model`` (default: the default model), checked against the registry."""
    from emoadapt.models.registry import resolve_model, shipped_int8

    entry = shipped_int8(resolve_model(model)[1])
    if entry is None:
        raise SystemExit(f"{model or 'the default model'} ships no int8 copy matching its weights: "
                         "emoadapt quantize --config configs/int8/emoadapt-ier.toml --install")
    return entry["path"]


def quantize_int8(fp32: str | Path, out: str | Path, preprocess: Callable[[str], Any], paths: Sequence[str], *,
                  resized_fp32: bool = False, reduce_range: bool = False, method: str = "minmax") -> Path:
    """``out``: ``fp32`` quantised by :func:`emoadapt.models.int8.quantize_onnx` on ``paths`` read
    through ``preprocess``; ``resized_fp32`` keeps the branch that reads a resized input
    (:func:`resized_branch_nodes`, the 96 px face branch) in fp32 too."""
    return quantize_onnx(fp32, out, image_batches(paths, preprocess), reduce_range=reduce_range, method=method,
                         exclude=resized_branch_nodes if resized_fp32 else None)


def variant_file(name: str, fp32: Path, out: Path, preprocess: Callable[[str], Any], paths: Sequence[str],
                 unfolded: Path | None = None) -> Path:
    """The .onnx file of candidate ``name`` of :data:`VARIANTS`: the shipped file, or ``fp32`` (the
    ``unfolded`` export for the variants that ask for it) quantised into ``out``."""
    options = dict(VARIANTS[name] or {})
    if VARIANTS[name] is None:
        return shipped_int8_path()
    source = unfolded if options.pop("unfolded", False) else fp32
    if source is None:
        raise SystemExit(f"{name}: needs the export without folded pads")
    return quantize_int8(source, out, preprocess, paths, **options)


def resized_branch_nodes(model: Any) -> list[str]:
    """Names of the nodes between a ``Resize`` of the input and the head (:func:`head_nodes`): the
    branch of a fusion model that reads the image at its own, smaller size (the face branch)."""
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    return downstream_nodes(model, resizes, set(head_nodes(model)))
