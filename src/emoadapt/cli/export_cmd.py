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
    p.add_argument("--int8", action="store_true",
                   help="write the int8 copy instead (onnxruntime static quantisation, QDQ, per-channel weights), "
                        "calibrated on Emotion6 and FER2013 training images (needs both datasets)")
    p.add_argument("--calibration-scenes", type=int, default=150, help="Emotion6 calibration images (--int8)")
    p.add_argument("--calibration-faces", type=int, default=150, help="FER2013 Training faces (--int8)")
    p.add_argument("--calibration-manifest", default=None,
                   help="split manifest whose --calibration-splits the Emotion6 images come from (--int8)")
    p.add_argument("--calibration-splits", default=None, help="comma-separated split names of that manifest")
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
    if args.int8:
        path = _export_int8(args, model, meta, taps, metadata)
    else:
        path = export_onnx(model, args.onnx, taps=taps, metadata=metadata)
    info = {"onnx": str(path), "input": f"images (N, {model.config.in_chans}, {model.config.input_size}, "
                                       f"{model.config.input_size}) float32 RGB in [0, 1]",
            "output": "logits (N, K); softmax for probabilities" + (
                "; pre_logits (N, D) for the OOD score" if len(taps) > 1 else ""), "classes": meta.get("classes")}
    print(json.dumps(info, indent=2))
    return 0


def _export_int8(args: argparse.Namespace, model, meta: dict, taps: tuple[str, ...], metadata: dict):
    """The int8 copy of ``model`` at ``args.onnx``, calibrated through the model's own preprocessing."""
    from ..data.transforms import DEFAULT_FIT, image_to_tensor
    from ..data.decode import decode_image
    from ..models.int8 import build_int8, calibration_paths

    fit = meta.get("fit") or DEFAULT_FIT
    size, channels = model.config.input_size, model.config.in_chans

    def preprocess(path: str):
        return image_to_tensor(decode_image(path, mode="RGB"), size, channels, fit)

    splits = args.calibration_splits.split(",") if args.calibration_splits else None
    paths = calibration_paths(args.calibration_scenes, args.calibration_faces, manifest=args.calibration_manifest,
                              splits=splits)
    metadata = dict(metadata, precision="int8", calibration_images=len(paths))
    return build_int8(model, args.onnx, preprocess, paths, taps=taps, metadata=metadata)
