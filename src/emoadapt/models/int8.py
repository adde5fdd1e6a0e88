"""The int8 copy of a model that explanations evaluate their masked images with (issue #33).

An explanation of the default model evaluates ~124 masked copies of the image; those passes are
nearly all of its time. The int8 copy is the fp32 ONNX export statically quantised by onnxruntime
(QDQ, per-channel int8 weights, uint8 activations, activation ranges calibrated on training
images read through the model's own preprocessing; the head after the branches' global poolings
stays in fp32). Predictions — the class, its probability, "uncertain" — always come from the fp32
model; only the masked evaluations of an explanation use int8, and only where the int8 arithmetic
is exact: on CPUs with VNNI instructions (:func:`cpu_has_vnni`). Without VNNI, onnxruntime's
u8s8 kernels add pairs of products in 16 bits, which saturates with 8-bit weights
(docs/dncshap.md §11), so those machines explain in fp32.

Built by ``emoadapt quantize --config configs/int8/emoadapt-ier.toml`` (:func:`emoadapt.quantize.build_int8`);
shipped as ``weights/<model>.int8.onnx`` with its sha256 and the sha256 of the fp32 weights it was
made from in the model's registry entry (``int8``), so a retrained model never explains with a
stale copy.
"""

from __future__ import annotations

import random
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import EmoadaptError

#: /proc/cpuinfo flags of the instruction sets whose u8s8 dot products accumulate in 32 bits
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: what ``precision`` may be (Predictor, CLI ``--precision``)
PRECISIONS = ("auto", "fp32", "int8")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of the first processor listed in ``cpuinfo`` (empty when unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_vnni(flags: set[str] | None = None) -> bool:
    """Whether the CPU (or ``flags``) has a VNNI instruction set (:data:`VNNI_FLAGS`)."""
    return bool(set(VNNI_FLAGS) & (cpu_flags() if flags is None else flags))


def use_int8(precision: str, entry: dict | None, flags: set[str] | None = None) -> bool:
    """Whether explanations evaluate with the int8 copy ``entry`` (a registry ``int8`` entry or
    ``None``): ``fp32`` never; ``auto`` when there is one and the CPU has VNNI; ``int8`` whenever
    there is one (an error otherwise)."""
    if precision not in PRECISIONS:
        raise EmoadaptError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and entry is None:
        raise EmoadaptError("precision int8: this model ships no int8 copy (only shipped models can have one; "
                            "build it with emoadapt quantize)")
    return entry is not None and (precision == "int8" or (precision == "auto" and cpu_has_vnni(flags)))


def int8_explain_session(meta: dict[str, Any], precision: str, runtime: str, threads: int | None = None) -> Any:
    """The onnxruntime session of the int8 copy that explanations of the model ``meta`` (as
    :func:`~emoadapt.models.registry.resolve_model` returns it; ``{}`` for an .onnx file) evaluate
    masked images with under ``precision`` (:func:`use_int8`), or ``None``: fp32."""
    from .onnx import onnx_file_session
    from .registry import shipped_int8

    entry = shipped_int8(meta) if meta else None
    if not use_int8(precision, entry):
        return None
    if runtime != "onnx":
        if precision == "int8":
            raise EmoadaptError("precision int8 needs the onnx runtime (onnxruntime)")
        return None
    return onnx_file_session(entry["path"], threads)


# --------------------------------------------------------------------------------------- the config


@dataclass(frozen=True)
class CalibrationSource:
    """``images`` images drawn (seeded) from ``splits`` of ``dataset`` (a name :func:`dataset_path`
    resolves, or a folder), the splits read from ``manifest`` when given, restricted to labels ``classes`` (the
    dataset's own names) when given — equal numbers per class then, rounded down."""

    dataset: str
    images: int
    splits: tuple[str, ...] = ()
    manifest: str | None = None
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Int8Config:
    """What ``emoadapt quantize`` builds: the int8 copy of shipped model ``model``, calibrated on
    ``sources`` drawn with ``seed``."""

    model: str
    sources: tuple[CalibrationSource, ...]
    seed: int = 0
    path: str = ""


def load_int8_config(path: str | Path) -> Int8Config:
    """Read an int8 config (TOML: ``model``, ``seed``, ``[[calibration]]`` tables, see
    configs/int8/emoadapt-ier.toml); a one-line error naming the key when one is wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EmoadaptError(f"{path}: not a readable TOML file ({exc})") from None
    if not isinstance(data.get("model"), str):
        raise EmoadaptError(f"{path}: needs model = \"<a shipped model name>\"")
    tables = data.get("calibration")
    if not isinstance(tables, list) or not tables:
        raise EmoadaptError(f"{path}: needs at least one [[calibration]] table (dataset, images, splits)")
    sources = []
    for index, table in enumerate(tables):
        unknown = sorted(set(table) - {"dataset", "images", "splits", "manifest", "classes"})
        if unknown or not isinstance(table.get("dataset"), str) or not isinstance(table.get("images"), int) \
                or table["images"] < 1:
            raise EmoadaptError(f"{path}: [[calibration]] #{index + 1} needs dataset (a name) and images (≥ 1)"
                                + (f"; unknown keys {', '.join(unknown)}" if unknown else ""))
        sources.append(CalibrationSource(table["dataset"], table["images"], tuple(table.get("splits", ())),
                                         table.get("manifest"), tuple(table.get("classes", ()))))
    return Int8Config(data["model"], tuple(sources), int(data.get("seed", 0)), str(path))


def calibration_paths(config: Int8Config, root: Path | None = None) -> list[str]:
    """The calibration images of ``config``, every source drawn with ``config.seed``, shuffled
    together; manifests are read relative to ``root`` (default: the current directory)."""
    from ..data import open_dataset
    from ..data.locate import dataset_path
    from ..data.splits import select_splits

    rng = random.Random(config.seed)
    chosen: list[str] = []
    for source in config.sources:
        folder = Path(source.dataset)
        dataset = open_dataset(folder if folder.is_dir() else dataset_path(source.dataset), "auto")
        manifest = None if source.manifest is None else (root or Path.cwd()) / source.manifest
        if manifest is not None or source.splits:
            dataset = select_splits(dataset, manifest, list(source.splits) or None)
        if source.classes:
            per_class = source.images // len(source.classes)
            for label in source.classes:
                pool = sorted(s.path for s in dataset.samples if s.label == label)
                chosen += rng.sample(pool, min(per_class, len(pool)))
        else:
            pool = sorted(s.path for s in dataset.samples)
            chosen += rng.sample(pool, min(source.images, len(pool)))
    rng.shuffle(chosen)
    return chosen


# ------------------------------------------------------------------------------------- quantisation


def image_batches(paths: Sequence[str], preprocess: Callable[[str], Any], size: int = 16) -> Iterator[np.ndarray]:
    """(B, C, S, S) float32 batches of ``preprocess(path)`` (each a (C, S, S) tensor in [0, 1])."""
    for start in range(0, len(paths), size):
        yield np.stack([preprocess(p).numpy() for p in paths[start:start + size]]).astype(np.float32)


class _Reader:
    """onnxruntime's ``CalibrationDataReader`` protocol: ``get_next()`` → ``{input: batch}`` or ``None``."""

    def __init__(self, input_name: str, batches: Iterator[np.ndarray], progress: Callable[[int], None] | None):
        self.input_name, self.batches, self.progress, self.done = input_name, batches, progress, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        if batch is None:
            return None
        self.done += len(batch)
        if self.progress:
            self.progress(self.done)
        return {self.input_name: batch}


def quantize_onnx(fp32: str | Path, out: str | Path, batches: Iterator[np.ndarray], *,
                  reduce_range: bool = False, method: str = "minmax",
                  exclude: Callable[[Any], list[str]] | None = None,
                  progress: Callable[[int], None] | None = None) -> Path:
    """Write ``out``: the ``fp32`` ONNX file statically quantised (QDQ, per-channel int8 weights,
    uint8 activations; the head after the global poolings, :func:`head_nodes`, kept in fp32),
    activation ranges calibrated on ``batches`` ((B, C, S, S) float32). ``reduce_range``: 7-bit
    weights (no saturation without VNNI, but less precise); ``method``: ``minmax``, ``percentile``
    or ``entropy`` ranges; ``exclude(onnx model)``: names of more nodes to keep in fp32 (benchmarks).
    ``progress(images done)`` is called per batch."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise EmoadaptError(f"calibration method must be one of {', '.join(methods)}, got {method!r}")
    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        reader = _Reader(model.graph.input[0].name, batches, progress)
        quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                        nodes_to_exclude=head_nodes(model) + (exclude(model) if exclude else []),
                        calibrate_method=methods[method])
    return Path(out)


def downstream_nodes(model: Any, starts: list[Any], stop: set[str] = frozenset()) -> list[str]:
    """Names of the nodes fed, directly or not, by the outputs of ``starts``, not going past ``stop``."""
    from .onnx import graph_consumers

    consumers = graph_consumers(model.graph)
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
    of an ONNX model: the head (standardisation, experts, gate: a few thousand multiply-adds, where
    int8 gains nothing). EfficientNet-Lite has no squeeze-excite, so these are the branches' last
    poolings only."""
    pools = [n for n in model.graph.node if n.op_type in ("ReduceMean", "GlobalAveragePool")]
    return downstream_nodes(model, pools)

