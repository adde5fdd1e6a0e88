"""``emoadapt quantize``'s work: build a shipped model's int8 copy from its fp32 weights and the
images of an int8 config, install it into the package (file, registry entry, model card section).
The quantisation itself and when the copy is used: :mod:`emoadapt.models.int8`."""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import EmoadaptError
from .fileio import atomic_path, atomic_write_json, atomic_write_text
from .models.int8 import Int8Config, calibration_paths, image_batches, quantize_onnx
from .models.weights import sha256


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_int8(config: Int8Config, out: str | Path, root: Path | None = None,
               progress: Callable[[str], None] = _to_stderr) -> dict[str, Any]:
    """Write the int8 copy of ``config.model`` to ``out`` (with its ``emoadapt`` metadata: classes,
    name, the fp32 weights' sha256, ``"int8": true``) and return its registry entry: ``file``,
    ``sha256``, ``fp32_sha256``, ``config``, ``calibration`` (images, the sha256 of their sorted
    relative paths)."""
    from .data.locate import data_home
    from .models.onnx import add_metadata, export_onnx
    from .predictor import Predictor

    predictor = Predictor(config.model, runtime="torch", calibrated=False)
    paths = calibration_paths(config, root)
    progress(f"[int8] {config.model}: {len(paths)} calibration images")
    listed = "\n".join(sorted(str(Path(p).relative_to(data_home())) if Path(p).is_relative_to(data_home()) else p
                              for p in paths))
    meta = predictor.meta
    with tempfile.TemporaryDirectory() as folder, atomic_path(out, suffix=".onnx") as tmp:
        fp32 = export_onnx(predictor.model, Path(folder) / "fp32.onnx")
        quantize_onnx(fp32, tmp, image_batches(paths, predictor.preprocess), progress=lambda done: progress(
                      f"[int8] read {done}/{len(paths)} calibration images") if done == len(paths) else None)
        add_metadata(Path(tmp), {"classes": list(predictor.classes), "name": meta.get("name"), "int8": True,
                                  "fp32_sha256": meta.get("weights_sha256")})
    return {"file": Path(out).name, "sha256": sha256(out), "fp32_sha256": meta.get("weights_sha256"),
            "config": config.path, "format": "onnxruntime QDQ, per-channel int8 weights, uint8 activations, MinMax "
                                             "ranges; head after the global poolings in fp32",
            "calibration": {"images": len(paths), "paths_sha256": hashlib.sha256(listed.encode()).hexdigest(),
                            "seed": config.seed}}


def install_int8(model: str, built: Path, entry: dict[str, Any]) -> Path:
    """Put ``built`` into the package's ``weights/`` (as ``entry["file"]``, unless it is there
    already) and ``entry`` into ``weights/registry.json`` under ``model``'s ``int8`` key."""
    import json
    import shutil

    from .models.registry import REGISTRY_FILE

    registry = json.loads(REGISTRY_FILE.read_text())
    if model not in registry:
        raise EmoadaptError(f"{model!r} is not in {REGISTRY_FILE}: only shipped models get an int8 copy")
    target = REGISTRY_FILE.parent / entry["file"]
    if Path(built).resolve() != target.resolve():
        with atomic_path(target, suffix=".onnx") as tmp:
            shutil.copyfile(built, tmp)
    registry[model]["int8"] = entry
    atomic_write_json(REGISTRY_FILE, registry)
    card = REGISTRY_FILE.parent / f"{model}.md"
    if card.exists():
        atomic_write_text(card, with_card_section(card.read_text(), card_section(entry)))
    return target


CARD_HEADING = "## int8 copy for explanations"


def card_section(entry: dict[str, Any]) -> str:
    """The model card's section on the int8 copy of registry entry ``entry``."""
    return (f"{CARD_HEADING}\n\n`{entry['file']}` (sha256 `{entry['sha256']}`), made from the fp32 weights with "
            f"sha256 `{entry['fp32_sha256']}` by `{entry.get('command', 'emoadapt quantize')}`: {entry['format']}, "
            f"calibrated on {entry['calibration']['images']} training images of `{entry['config']}`. Explanations "
            "evaluate their masked images with it on CPUs with VNNI; predictions are always the fp32 model's. "
            "Speed, accuracy parity and faithfulness: docs/dncshap.md §11.\n")


def with_card_section(card: str, section: str) -> str:
    """``card`` with its int8 section replaced by ``section`` (added before "## Intended use", or at the end)."""
    start = card.find(CARD_HEADING)
    if start >= 0:
        end = card.find("\n## ", start + len(CARD_HEADING))
        card = card[:start] + card[end + 1:] if end >= 0 else card[:start]
    anchor = card.find("## Intended use")
    if anchor < 0:
        return card.rstrip("\n") + "\n\n" + section
    return card[:anchor] + section + "\n" + card[anchor:]
