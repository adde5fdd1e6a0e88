"""``emoadapt quantize``: build the int8 copy of a shipped model that explanations evaluate their
masked images with on CPUs with VNNI (predictions stay fp32; docs/dncshap.md §11).

    emoadapt quantize --config configs/int8/emoadapt-ier.toml --out runs/emoadapt-ier.int8.onnx
    emoadapt quantize --config configs/int8/emoadapt-ier.toml --install   # into the package + registry

The calibration images come from the datasets the config names (found as ``emoadapt data`` finds
them); the file records the sha256 of the fp32 weights it was made from, and the registry entry
its own sha256.
"""

from __future__ import annotations

import argparse

from ._shared import user_description

NAME = "quantize"
HELP = "build a shipped model's int8 copy for faster explanations (onnxruntime static quantisation)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=user_description(__doc__))
    p.add_argument("--config", required=True, help="int8 config (TOML), e.g. configs/int8/emoadapt-ier.toml")
    p.add_argument("--out", default=None,
                   help="output .onnx file (default with --install: the package's weights/<model>.int8.onnx)")
    p.add_argument("--install", action="store_true",
                   help="write it into the package's weights/ and its entry (int8) into weights/registry.json")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..errors import EmoadaptError
    from ..models.int8 import load_int8_config
    from ..quantize import build_int8, install_int8

    config = load_int8_config(args.config)
    if args.out is None and not args.install:
        raise EmoadaptError("give --out FILE.onnx, or --install to write it into the package")
    if args.install:
        from ..models.registry import REGISTRY_FILE, list_models

        if config.model not in list_models():
            raise EmoadaptError(f"--install: {config.model!r} is not a shipped model (only those get an int8 copy "
                                "in the package); use --out")
        out = REGISTRY_FILE.parent / f"{config.model}.int8.onnx" if args.out is None else Path(args.out)
    else:
        out = Path(args.out)
    if out.suffix != ".onnx":
        raise EmoadaptError(f"--out must end in .onnx, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    entry = build_int8(config, out)
    entry["command"] = f"emoadapt quantize --config {args.config}" + (" --install" if args.install else "")
    if args.install:
        install_int8(config.model, out, entry)
    print(json.dumps({"onnx": str(out), **entry}, indent=2))
    return 0
