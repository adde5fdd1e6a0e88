"""ONNX export (dynamic batch) and onnxruntime sessions for fast CPU inference."""

from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import EmoadaptError
from ..fileio import atomic_path


#: Bumped when the exported graph of the same weights changes, so cached exports are redone
#: (2: constant "same" pads, issue #33; 3: those pads folded into their convs).
EXPORT_VERSION = 3


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
    was_training = model.training
    model.eval()
    size, channels = model.config.input_size, model.config.in_chans
    example = torch.rand(1, channels, size, size)
    exported = model if taps == ("logits",) else _Taps(model, taps)
    with atomic_path(path, suffix=".onnx") as tmp:
        try:
            torch.onnx.export(exported, (example,), str(tmp), input_names=["images"], output_names=list(taps),
                              dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in taps}},
                              opset_version=opset, dynamo=False)
        finally:  # torch's exporter leaves the model in training mode (batch-statistics BN) otherwise
            model.train(was_training)
        fold_pads(tmp)
        if metadata:
            add_metadata(tmp, metadata)
    return Path(path)


def fold_pads(path: Path) -> int:
    """Rewrite the ONNX file ``path`` in place: each zero ``Pad`` that feeds one ``Conv`` becomes that
    conv's own (possibly asymmetric) ``pads``; returns how many were folded (0 without onnxruntime,
    or when onnxruntime cannot load the graph: the file is then left as it is).

    EfficientNet-Lite pads its stride-2 convs TensorFlow-style, one more pixel after than before,
    which a torch ``Conv2d`` cannot express, so the export has a ``Pad`` before each of them. ONNX's
    ``Conv`` can: folded, the outputs are identical, and the int8 copy (:mod:`emoadapt.models.int8`)
    no longer leaves the integer domain around each pad (docs/dncshap.md §11). The pads'
    arithmetic is constant-folded first by onnxruntime's basic, standard-operator optimisations."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import helper, numpy_helper
    except ImportError:
        return 0
    with tempfile.TemporaryDirectory() as folder:
        folded_constants = Path(folder) / "basic.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded_constants)
        options.log_severity_level = 3
        try:
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime's own exception types: a graph it cannot run is exported as it is
            return 0
        proto = onnx.load(str(folded_constants))
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in proto.graph.initializer}
    consumers = graph_consumers(proto.graph)
    folded = []
    for pad in (node for node in proto.graph.node if node.op_type == "Pad"):
        conv = _foldable_conv(pad, constants, consumers)
        if conv is None:
            continue
        pads = constants[pad.input[1]].tolist()  # (N, C, H, W) begins, then ends
        kept = next((a for a in conv.attribute if a.name == "pads"), None)
        before_after = list(kept.ints) if kept else [0, 0, 0, 0]  # (H, W) begins, then ends
        if kept:
            conv.attribute.remove(kept)
        conv.attribute.append(helper.make_attribute("pads", [before_after[0] + pads[2], before_after[1] + pads[3],
                                                             before_after[2] + pads[6], before_after[3] + pads[7]]))
        conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        proto.graph.node.remove(pad)
    used = {name for node in proto.graph.node for name in node.input}
    for tensor in [t for t in proto.graph.initializer if t.name not in used]:  # the pads' constants
        proto.graph.initializer.remove(tensor)
    onnx.save(proto, str(path))
    return len(folded)


def graph_consumers(graph: Any) -> dict[str, list[Any]]:
    """{tensor name: the nodes of an ONNX ``graph`` that read it}."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _foldable_conv(pad: Any, constants: dict[str, Any], consumers: dict[str, list[Any]]) -> Any:
    """The ``Conv`` a constant zero spatial ``Pad`` node feeds alone, else ``None``."""
    mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
    users = consumers.get(pad.output[0], [])
    if mode != b"constant" or len(pad.input) < 2 or pad.input[1] not in constants or len(users) != 1:
        return None
    if len(pad.input) > 2 and pad.input[2] and (pad.input[2] not in constants or constants[pad.input[2]].any()):
        return None
    pads = constants[pad.input[1]].tolist()
    if users[0].op_type != "Conv" or len(pads) != 8 or pads[0] or pads[1] or pads[4] or pads[5] or min(pads) < 0:
        return None
    if any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in users[0].attribute):
        return None
    return users[0]


def add_metadata(path: Path, metadata: dict) -> None:
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
