"""ONNX export (dynamic batch) and onnxruntime sessions for fast CPU inference."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from ..errors import EmoadaptError
from ..fileio import atomic_path


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
    if taps != ("logits",):
        digest.update(repr(taps).encode())
    path = Path(cache_dir or DEFAULT_CACHE) / "onnx" / f"{digest.hexdigest()[:16]}.onnx"
    if not path.exists():
        export_onnx(model, path, taps=taps)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
