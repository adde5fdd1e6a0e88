"""Batch-prediction throughput, torch vs onnxruntime, in one run.

    python benchmarks/predict_speed.py [--model emoadapt-ier] [--images DIR] [--n 300] [--batch-size 32]

End to end as ``emoadapt predict`` does it (decode, resize, model, CSV row), on the first N images
of DIR (default: the Emotion6 images under $EMOADAPT_DATA, else the bundled samples repeated).
Prints a markdown table with images/s per runtime (median and min–max of ``--repeats`` rounds) and the
ratio, and writes ``--out`` (default ``benchmarks/results/predict_speed.json``) with every round and the
provenance (model name, weights sha256).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch

from emoadapt.api import Predictor
from emoadapt.data.folder import expand_inputs
from emoadapt.data.locate import dataset_path
from emoadapt.predict import predict_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.speed import model_identity, spread  # noqa: E402


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
    parser.add_argument("--repeats", type=int, default=3, help="rounds per runtime (median and min–max reported)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "predict_speed.json"))
    args = parser.parse_args()
    paths = _images(args.images, args.n)
    print(f"{len(paths)} images, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| runtime | images/s, median (min–max) | ratio to torch (medians) |\n|---|---|---|")
    rates: dict[str, list[float]] = {}
    for runtime in ("torch", "onnx"):
        predictor = Predictor(args.model, runtime=runtime)
        predictor.predict(paths[:2])  # warm-up (and the one-time ONNX export)
        rates[runtime] = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                started = time.perf_counter()
                predict_files(predictor, paths, Path(folder) / "r.csv", batch_size=args.batch_size)
                rates[runtime].append(len(paths) / (time.perf_counter() - started))
        mid = statistics.median(rates[runtime])
        print(f"| {runtime} | {mid:.1f} ({min(rates[runtime]):.1f}–{max(rates[runtime]):.1f}) | "
              f"{mid / statistics.median(rates['torch']):.2f} |", flush=True)
    name, sha = model_identity(args.model)
    write_json(args.out, {"what": "emoadapt predict end to end per runtime (decode, resize, model, CSV row)",
                          "n_images": len(paths), "batch_size": args.batch_size, "repeats": args.repeats,
                          "runtimes": {r: {"images_per_s": spread(v)} for r, v in rates.items()},
                          **provenance(model=name, weights_sha256=sha)})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
