"""Batch-prediction throughput, torch vs onnxruntime, in one run.

    python benchmarks/predict_speed.py [--model emoadapt-ier] [--images DIR] [--n 300] [--batch-size 32]

End to end as ``emoadapt predict`` does it (decode, resize, model, CSV row), on the first N images
of DIR (default: the Emotion6 images under $EMOADAPT_DATA, else the bundled samples repeated).
Prints a markdown table with images/s per runtime and the ratio.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch

from emoadapt.api import Predictor
from emoadapt.data.folder import expand_inputs
from emoadapt.data.locate import dataset_path
from emoadapt.predict import predict_files


def _images(folder: str | None, n: int) -> list[Path]:
    root = folder or dataset_path("emotion6", required=False)
    paths = expand_inputs([str(root)]) if root else []
    if not paths:
        paths = sorted(Path(str(resources.files("emoadapt") / "samples")).glob("*.jpg"))
    return [paths[i % len(paths)] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--images", default=None)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    paths = _images(args.images, args.n)
    print(f"{len(paths)} images, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| runtime | images/s | seconds | ratio to torch |\n|---|---|---|---|")
    rates = {}
    for runtime in ("torch", "onnx"):
        predictor = Predictor(args.model, runtime=runtime)
        predictor.predict(paths[:2])  # warm-up (and the one-time ONNX export)
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            predict_files(predictor, paths, Path(folder) / "r.csv", batch_size=args.batch_size)
            seconds = time.perf_counter() - started
        rates[runtime] = len(paths) / seconds
        print(f"| {runtime} | {rates[runtime]:.1f} | {seconds:.1f} | {rates[runtime] / rates['torch']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
