"""Adaptation ablation on Emotion6 (4 IER classes): one launcher, one module per experiment.

    python benchmarks/adaptation.py --part mobilenet [--seeds 0 1 2] [--size 160]   # adapt_mobilenet.py
    python benchmarks/adaptation.py --part emonet --fer runs/fer-cpu/best.safetensors  # adapt_emonet.py
    python benchmarks/adaptation.py --part kfold --config "+source-CE +mmd"          # adapt_kfold.py
    python benchmarks/adaptation.py --part finetune     # stage s5 fine-tuned on cached s4 views: adapt_finetune.py
    python benchmarks/adaptation.py --part distill --teacher T.safetensors   # EmoNet + distillation: adapt_distill.py
    make numbers                                       # the docs' tables from the saved JSON (benchmarks/docnumbers_tables.py)

Protocol: one stratified train/val/test split of the available Emotion6 images (seed 0, 70/15/15,
manifest in OUT/split.json, :mod:`emotion6`); every configuration trains with seeds 0,1,2 on
train, picks its best epoch on val, and is scored on test (:mod:`adapt_common`). Results go to
OUT/<part><tag>.json. ``python benchmarks/adaptation.py --part P --help`` lists part P's options.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
from pathlib import Path

import torch

from emoadapt.fileio import atomic_write_json

PARTS = {"mobilenet": "adapt_mobilenet", "emonet": "adapt_emonet", "kfold": "adapt_kfold",
         "finetune": "adapt_finetune", "distill": "adapt_distill"}


def build_parser(part: str | None) -> argparse.ArgumentParser:
    """The options every part takes, plus those of ``part`` (when given)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=tuple(PARTS), required=True)
    parser.add_argument("--out", default="benchmarks/results/adaptation")
    parser.add_argument("--resume", action="store_true",
                        help="continue runs whose folder in OUT/runs already holds a checkpoint")
    parser.add_argument("--tag", default="", help="results go to OUT/<part><tag>.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--source-limit", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=0)
    if part in PARTS:
        experiment(part).add_arguments(parser)
    return parser


def experiment(part: str):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    return importlib.import_module(PARTS[part])


def part_named(argv: list[str]) -> str | None:
    for index, word in enumerate(argv):
        if word == "--part" and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith("--part="):
            return word.split("=", 1)[1]
    return None


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(part_named(argv)).parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = experiment(args.part).run(args, out)
    results.update({"command": shlex.join(["python"] + sys.argv), "seconds": time.time() - started,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch_threads": torch.get_num_threads()})
    atomic_write_json(out / f"{args.part}{args.tag}.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
