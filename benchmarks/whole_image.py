"""Which whole-image preprocessing the default model should use (issue #22), chosen on validation.

    nice python benchmarks/whole_image.py [--model emoadapt-ier] [--threads 1]

Scores the shipped model on the Emotion6 validation images of the holdout split
(``benchmarks/results/adaptation/split.json``, ``val``: 158 images of the 4 IER classes) with each
way of turning an image into the square input: ``centre`` (short side resized, centre square: the
old default, loses the rest), ``squash`` (whole image resized to S × S), ``pad`` (whole image on a
mid-grey square) and ``tiles3`` (probabilities averaged over 3 squares along the long side; it
covers the image but costs 3 passes and has no single map to explain). The test split is not read.
Writes ``benchmarks/results/whole_image.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from emoadapt.api import Predictor
from emoadapt.data import open_dataset
from emoadapt.data.decode import decode_image
from emoadapt.data.locate import dataset_path
from emoadapt.data.splits import read_manifest, sample_key
from emoadapt.data.transforms import fit_square, image_to_uint8, uint8_to_tensor
from emoadapt.fileio import atomic_write_json

ROOT = Path(__file__).resolve().parent
SPLIT = ROOT / "results" / "adaptation" / "split.json"
OUT = ROOT / "results" / "whole_image.json"
VARIANTS = ("centre", "squash", "pad", "tiles3")


def split_samples(split: str) -> list[tuple[Path, int]]:
    """(path, IER label index) of the Emotion6 images the holdout manifest puts in ``split``."""
    dataset = open_dataset(dataset_path("emotion6"), "emotion6").to_ier_dataset()
    assigned = read_manifest(SPLIT).assignments
    return [(Path(s.path), dataset.classes.index(s.label)) for s in dataset.samples
            if assigned[sample_key(s, dataset.root)] == split]


def tiles(image: Image.Image, size: int, count: int = 3) -> list[Image.Image]:
    """``count`` squares (short side → ``size``) evenly spaced along the long side, ends included."""
    width, height = image.size
    scale = size / min(width, height)
    image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.Resampling.BILINEAR)
    width, height = image.size
    spare = max(width, height) - size
    offsets = [round(spare * i / (count - 1)) for i in range(count)]
    return [image.crop((o, 0, o + size, size)) if width > height else image.crop((0, o, size, o + size)) for o in offsets]


def tensor(image: Image.Image) -> torch.Tensor:
    return uint8_to_tensor(image_to_uint8(image))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="preset name or .safetensors (default: the shipped default)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor(args.model, runtime="torch")
    size = predictor.input_size
    samples = split_samples("val")
    correct = {v: 0 for v in VARIANTS}
    started = time.perf_counter()
    for path, label in samples:
        image = decode_image(path, mode="RGB")
        batch = [tensor(fit_square(image, size, v)) for v in ("centre", "squash", "pad")] + [tensor(t) for t in tiles(image, size)]
        probs = predictor.predict_tensors(torch.stack(batch))
        guesses = {"centre": probs[0], "squash": probs[1], "pad": probs[2], "tiles3": probs[3:].mean(0)}
        for variant, p in guesses.items():
            correct[variant] += int(np.argmax(p) == label)
    accuracy = {v: round(correct[v] / len(samples), 4) for v in VARIANTS}
    single_pass = {v: a for v, a in accuracy.items() if v != "tiles3"}
    chosen = max(single_pass, key=lambda v: (single_pass[v], v != "centre"))
    result = {"model": args.model or "emoadapt-ier", "split": str(SPLIT.relative_to(ROOT.parent)), "n_val": len(samples),
              "val_accuracy": accuracy, "chosen": chosen,
              "rule": "highest validation accuracy among the single-pass whole-image fits (squash, pad) and centre",
              "seconds": round(time.perf_counter() - started, 1),
              "command": "python benchmarks/whole_image.py --threads 1", "machine": "2-core CPU, shared"}
    atomic_write_json(OUT, result)
    print(result)


if __name__ == "__main__":
    main()
