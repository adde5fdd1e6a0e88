"""``emoadapt models``: the registry's presets, which of them ship weights, and what each is."""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "list the model presets (names for --model / --init)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP,
                       description="List the registry's presets: name, classes, input, whether weights ship "
                                   "with emoadapt, a one-line description and, for shipped weights, their "
                                   "training data, licence and sha256.")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..models.registry import get_preset, list_models

    for name in list_models():
        preset = get_preset(name)
        config = preset.config
        channels = "grey" if config.get("in_chans") == 1 else "RGB"
        shipped = "shipped weights" if preset.weights else "no weights"
        if preset.extra.get("int8", {}).get("fp32_sha256") == preset.sha256 and preset.weights:
            shipped += " + an int8 copy for explanations on VNNI CPUs"
        print(f"{name:14s} {len(preset.classes)} classes, {config.get('input_size')} px {channels}, {shipped}")
        print(f"{'':14s} {preset.description}")
        if preset.weights:
            print(f"{'':14s} trained on: {preset.training_data}")
            print(f"{'':14s} licence: {preset.licence}; sha256 {preset.sha256}")
    return 0
