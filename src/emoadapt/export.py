"""ONNX export (dynamic batch) and onnxruntime sessions for fast CPU inference."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from .errors import EmoadaptError
from .fileio import atomic_path


def export_onnx(model: torch.nn.Module, path: str | Path, opset: int = 17) -> Path:
    """Write ``model`` (input (N, C, S, S) in [0, 1] → logits (N, K)) as ONNX with a dynamic batch axis."""
    model.eval()
    size, channels = model.config.input_size, model.config.in_chans
    example = torch.rand(1, channels, size, size)
    with atomic_path(path, suffix=".onnx") as tmp:
        torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    return Path(path)


def onnx_session(model: torch.nn.Module, threads: int | None = None, cache_dir: str | Path | None = None):
    """An onnxruntime session of ``model``, exported once into a cache keyed by its weights."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise EmoadaptError("the onnx runtime needs onnxruntime: pip install 'emoadapt[onnx]'") from None
    from .data.arrays import DEFAULT_CACHE

    digest = hashlib.sha256()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    digest.update(buffer.getvalue())
    digest.update(repr(model.config).encode())
    path = Path(cache_dir or DEFAULT_CACHE) / "onnx" / f"{digest.hexdigest()[:16]}.onnx"
    if not path.exists():
        export_onnx(model, path)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
