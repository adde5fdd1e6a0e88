"""Options and helpers shared by the commands that read images with a model (predict, explain, demo)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--weights", dest="model", default=None,
                   help="a .safetensors file or a shipped model name (default: the shipped IER model)")
    p.add_argument("--runtime", choices=("auto", "torch", "onnx"), default="auto",
                   help="inference engine (default auto: onnxruntime when installed, else torch)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")


def add_dncshap_options(p: argparse.ArgumentParser) -> None:
    """``--depth`` and ``--max-evals``: the partition depth and evaluation budget of DnCShap."""
    from ..api import EXPLAIN_DEPTH, EXPLAIN_MAX_EVALS

    p.add_argument("--depth", type=_count("depth", 0), default=EXPLAIN_DEPTH,
                   help=f"DnCShap partition depth T: at most 2^T regions (default {EXPLAIN_DEPTH})")
    p.add_argument("--max-evals", type=_budget, default=EXPLAIN_MAX_EVALS,
                   help="DnCShap budget of model evaluations: regions with the largest scores are split first "
                        f"(default {EXPLAIN_MAX_EVALS or 'full'}; 'full': the whole tree, 2^(T+1) evaluations)")


def _count(name: str, minimum: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be at least {minimum}, got {number}")
        return number
    return parse


def _budget(value: str) -> int | None:
    return None if value == "full" else _count("max-evals", 2)(value)


def add_target_options(p: argparse.ArgumentParser, manifest_help: str) -> None:
    """``--target``, ``--layout``, ``--manifest`` and ``--source``: the generic images and FER2013 faces
    of the commands that work across the two domains (adapt, embed)."""
    p.add_argument("--target", required=True, help="labelled generic images (Emotion6, FI, folder, CSV…)")
    p.add_argument("--layout", default="auto", help="target layout (default: auto-detect)")
    p.add_argument("--manifest", default=None, help=manifest_help)
    p.add_argument("--source", default=None, help="FER2013 folder (default: $EMOADAPT_DATA/fer2013)")


def load_predictor(args: argparse.Namespace):
    from ..api import Predictor

    return Predictor(args.model, runtime=args.runtime, threads=args.threads or None)


def expand_inputs(items: list[str]) -> list[Path]:
    """:func:`emoadapt.data.folder.expand_inputs` (imported when a command runs, not for ``--help``)."""
    from ..data.folder import expand_inputs as expand

    return expand(items)


def unique_stem(path: Path, used: set[str]) -> str:
    """``path``'s stem, made unique among ``used`` with -2, -3… (and recorded there)."""
    stem, index = path.stem, 2
    while stem in used:
        stem, index = f"{path.stem}-{index}", index + 1
    used.add(stem)
    return stem
