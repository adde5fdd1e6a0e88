"""``emoadapt export``: write a model as ONNX (dynamic batch axis) for onnxruntime."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "export a model to ONNX (input images in [0, 1], output logits)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--model", "--weights", dest="model", default=None,
                   help="a .safetensors file or a shipped model name (default: the shipped IER model)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..models.onnx import export_onnx
    from ..models.registry import resolve_model

    model, meta = resolve_model(args.model)
    from ..models.calibration import Calibration

    metadata = {"classes": list(meta.get("classes", ())), "name": meta.get("name")}
    taps = ("logits",)
    if meta.get("calibration_path"):  # carried inside the file, with the features its OOD score needs
        calibration = Calibration.load(meta["calibration_path"])
        metadata["calibration"] = calibration.to_dict()
        taps = ("logits", "pre_logits") if calibration.needs_features else taps
    path = export_onnx(model, args.onnx, taps=taps, metadata=metadata)
    info = {"onnx": str(path), "input": f"images (N, {model.config.in_chans}, {model.config.input_size}, "
                                       f"{model.config.input_size}) float32 RGB in [0, 1]",
            "output": "logits (N, K); softmax for probabilities" + (
                "; pre_logits (N, D) for the OOD score" if len(taps) > 1 else ""), "classes": meta.get("classes")}
    print(json.dumps(info, indent=2))
    return 0
