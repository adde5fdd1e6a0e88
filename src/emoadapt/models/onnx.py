"""ONNX export (dynamic batch) and onnxruntime sessions for fast CPU inference."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from ..errors import EmoadaptError
from ..fileio import atomic_path


#: Bumped when the exported graph of the same weights changes, so cached exports are redone
#: (2: constant "same" pads, issue #33).
EXPORT_VERSION = 2


class _Taps(torch.nn.Module):
    """``model`` with the named taps as its outputs, for export."""

    def __init__(self, model: torch.nn.Module, taps: tuple[str, ...]):
        super().__init__()
        self.model, self.taps = model, taps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.forward_taps(x, self.taps)
        return tuple(out[name] for name in self.taps)


def export_onnx(model: torch.nn.Module, path: str | Path, opset: int = 17,
                taps: tuple[str, ...] = ("logits",), metadata: dict | None = None) -> Path:
    """Write ``model`` (input ``images`` (N, C, S, S) in [0, 1]) as ONNX with a dynamic batch axis;
    its outputs are the named ``taps`` (default: ``logits`` (N, K)), e.g. ``("pre_logits", "logits")``.
    ``metadata`` (e.g. ``{"classes": [...], "name": ...}``) is stored as JSON under the model's
    ``emoadapt`` metadata key, where ``Predictor("file.onnx")`` reads it."""
    model.eval()
    size, channels = model.config.input_size, model.config.in_chans
    example = torch.rand(1, channels, size, size)
    exported = model if taps == ("logits",) else _Taps(model, taps)
    with atomic_path(path, suffix=".onnx") as tmp:
        torch.onnx.export(exported, (example,), str(tmp), input_names=["images"], output_names=list(taps),
                          dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in taps}},
                          opset_version=opset, dynamo=False)
        if metadata:
            _add_metadata(tmp, metadata)
    return Path(path)


def _add_metadata(path: Path, metadata: dict) -> None:
    import json

    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "emoadapt", json.dumps(metadata)
    onnx.save(proto, str(path))


def onnx_session(model: torch.nn.Module, threads: int | None = None, cache_dir: str | Path | None = None,
                 taps: tuple[str, ...] = ("logits",)):
    """An onnxruntime session of ``model`` (outputs: ``taps``), exported once into a cache keyed by
    its weights and the taps."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise EmoadaptError("the onnx runtime needs onnxruntime: pip install 'emoadapt[onnx]'") from None
    from ..data.arrays import DEFAULT_CACHE

    digest = hashlib.sha256()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    digest.update(buffer.getvalue())
    digest.update(repr(model.config).encode())
    digest.update(f"export {EXPORT_VERSION}".encode())
    if taps != ("logits",):
        digest.update(repr(taps).encode())
    path = Path(cache_dir or DEFAULT_CACHE) / "onnx" / f"{digest.hexdigest()[:16]}.onnx"
    if not path.exists():
        export_onnx(model, path, taps=taps)
    return ort.InferenceSession(str(_optimized(ort, path)), session_options(ort, threads),
                                providers=["CPUExecutionProvider"])


def session_options(ort, threads: int | None = None):
    """onnxruntime options of every emoadapt session: ``threads`` intra-op threads (``None``: one per
    core) that sleep between runs instead of spin-waiting, so the decode threads of
    :mod:`emoadapt.pipeline` get the cores while a batch is being loaded (docs/benchmarks.md §9)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _optimized(ort, path: Path) -> Path:
    """``path`` with onnxruntime's hardware-independent graph optimizations (level EXTENDED: constant
    folding, fusions) applied once and cached beside it, per onnxruntime version, so that each new
    session starts ~0.6 s sooner (1.2 → 0.6 s for the default model on 2 cores); the
    hardware-specific ones still run at session creation. ``path`` itself when that fails."""
    optimized = path.with_name(f"{path.stem}.ort-{ort.__version__}.onnx")
    if optimized.exists():
        return optimized
    try:
        with atomic_path(optimized, suffix=".onnx") as tmp:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            options.optimized_model_filepath = str(tmp)
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:  # a read-only cache, an unusual graph: the plain model works as well
        return path
    return optimized


def onnx_file_meta(path: Path) -> dict[str, Any]:
    """``classes`` and ``name`` of an exported ``.onnx`` file: from its ``emoadapt`` metadata
    (written by ``emoadapt export``), else the four IER classes for a 4-output model (files
    exported before the metadata existed); plus ``calibration_path`` when one lies beside it."""
    import json

    from ..data.labels import IER_CLASSES
    from .calibration import calibration_path_for

    meta: dict[str, Any] = {"name": path.stem}
    try:
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        meta.update(json.loads(props.get("emoadapt", "{}")))
    except (ImportError, ValueError, OSError):
        pass
    meta.setdefault("classes", list(IER_CLASSES))
    sibling = calibration_path_for(path)
    if sibling.exists():
        meta["calibration_path"] = str(sibling)
        meta.pop("calibration", None)  # the file beside it wins over the copy inside
    return meta


def onnx_file_session(path: Path, threads: int | None = None):
    """An onnxruntime session of an ``.onnx`` file; a one-line ``EmoadaptError`` when it is not one."""
    if path.suffix != ".onnx" or not path.is_file():
        raise EmoadaptError(f"{path}: not an .onnx file (models by path: a .safetensors file or an .onnx file)")
    try:
        import onnxruntime as ort
    except ImportError:
        raise EmoadaptError(f"{path}: ONNX models need onnxruntime: pip install 'emoadapt[onnx]'") from None
    try:
        return ort.InferenceSession(str(path), session_options(ort, threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for broken files
        raise EmoadaptError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None


def onnx_input_shape(model: Any) -> tuple | None:
    """(N, C, H, W) of an onnxruntime session's first input when C, H and W are fixed numbers."""
    if not callable(getattr(model, "get_inputs", None)):
        return None
    shape = tuple(model.get_inputs()[0].shape)
    return shape if len(shape) == 4 and all(isinstance(d, int) for d in shape[1:]) else None
