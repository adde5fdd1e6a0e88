"""End-to-end ``emoadapt predict`` throughput against the model alone, in one run (issue #20).

    python benchmarks/pipeline_speed.py [--n 500] [--repeats 3] [--model emoadapt-ier] [--photos DIR]

1. Generates N JPEGs of 640×427 (random crops, flips and brightness of the bundled public-domain
   samples, seeded; never dataset images) under runs/pipeline-images/.
2. Model only: batched onnxruntime (batch 32) on tensors decoded beforehand.
3. ``predict_files`` as ``emoadapt predict`` runs it: serial decoding (``workers=0``, the old loop)
   and decode threads (1, 2 and the default); each repeated, interleaved with the model-only run, so
   every ratio compares peers measured side by side.
4. Start-up: wall time of ``python -m emoadapt --help`` and of a one-image ``predict`` (subprocesses).
5. JPEG draft mode: the change of the probabilities vs full decoding when the short side is kept
   ≥ 1× and ≥ 2× (``--draft``) the input size, on the bundled photos, the generated JPEGs and the
   photos of ``--photos``; and the decode + preprocess time of a large JPEG (2560×1707, an
   upscaled sample) with and without draft mode.

``--old-code`` measures only the model alone against ``predict_files`` with its defaults, for a
checkout from before this pipeline (the "before" row of docs/benchmarks.md §9)::

    git archive 9a75f4c src | tar -x -C runs/before
    PYTHONPATH=runs/before/src python benchmarks/pipeline_speed.py --old-code

Prints markdown tables and writes ``--out`` (default ``benchmarks/results/pipeline_speed.json``; with
``--old-code`` only when given): every round's images/s and ratio with their median and min–max, the
start-up times, the draft-mode changes and the provenance (model name and weights sha256). The tables
of docs/results/speed.md are generated from that file by ``make numbers``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.speed import model_identity, spread  # noqa: E402
from PIL import Image, ImageEnhance

from emoadapt.api import Predictor
from emoadapt.data.decode import decode_image
from emoadapt.data.folder import expand_inputs
from emoadapt.predict import predict_files

ROOT = Path(__file__).resolve().parents[1]
SIZE = (640, 427)


def generate(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` JPEGs of 640×427 from the bundled samples (crop, flip, brightness, quality jitter)."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = sorted(Path(str(resources.files("emoadapt") / "samples")).glob("*.jpg"))
    sources = [Image.open(p).convert("RGB") for p in samples]
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"img{i:05d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        image = sources[i % len(sources)]
        w, h = image.size
        scale = rng.uniform(0.6, 1.0)
        cw, ch = int(w * scale), int(min(h, w * scale * SIZE[1] / SIZE[0]))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = image.crop((left, top, left + cw, top + ch)).resize(SIZE, Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
        out.save(path, quality=int(rng.integers(80, 96)))
    return paths


def model_only(predictor: Predictor, tensors: torch.Tensor, batch_size: int) -> float:
    """Images/s of batched inference on pre-decoded tensors (N, C, S, S)."""
    started = time.perf_counter()
    for start in range(0, len(tensors), batch_size):
        predictor.predict_tensors(tensors[start:start + batch_size])
    return len(tensors) / (time.perf_counter() - started)


def end_to_end(predictor: Predictor, paths: list[Path], batch_size: int, workers: int | None, draft: bool) -> float:
    """Images/s of ``predict_files`` (``workers`` None: its defaults, as on an older checkout)."""
    options = {} if workers is None else {"workers": workers, "draft": draft}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        counts = predict_files(predictor, paths, Path(folder) / "r.csv", batch_size=batch_size, **options)
        seconds = time.perf_counter() - started
    assert counts["done"] == len(paths), counts
    return len(paths) / seconds


def wall(command: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return times


def draft_change(predictor: Predictor, paths: list[Path], factor: int) -> tuple[float, float, float, int]:
    """(max |Δp|, mean |Δp|, share of images whose top class changes, n) of draft vs full decoding,
    the short side kept ≥ ``factor`` × the input size."""
    side = factor * predictor.input_size
    deltas, flips = [], 0
    for start in range(0, len(paths), 32):
        chunk = paths[start:start + 32]
        full = predictor.predict_tensors(torch.stack([predictor.preprocess(p) for p in chunk]))
        fast = predictor.predict_tensors(torch.stack(
            [predictor.preprocess(decode_image(p, mode="RGB", reduce_to=side)) for p in chunk]))
        deltas.append(np.abs(full - fast))
        flips += int((full.argmax(1) != fast.argmax(1)).sum())
    d = np.concatenate(deltas)
    return float(d.max()), float(d.mean()), flips / len(d), len(d)


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="decode threads (default: the pipeline's)")
    parser.add_argument("--old-code", action="store_true", help="model only vs predict_files' defaults, nothing else")
    parser.add_argument("--photos", default=None, help="a folder of real photos for the draft-mode change")
    parser.add_argument("--folder", default=str(ROOT / "runs" / "pipeline-images"))
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/pipeline_speed.json; "
                                                    "none with --old-code)")
    args = parser.parse_args()
    out = args.out or (None if args.old_code else str(ROOT / "benchmarks" / "results" / "pipeline_speed.json"))
    if args.old_code:
        workers = 0
    else:
        from emoadapt.pipeline import default_workers

        workers = default_workers() if args.workers is None else args.workers
    paths = generate(Path(args.folder), args.n)
    predictor = Predictor(args.model, runtime="onnx")
    print(f"{len(paths)} JPEGs {SIZE[0]}x{SIZE[1]}, model {predictor.meta.get('name', args.model or 'default')} "
          f"(input {predictor.input_size} px), onnxruntime, batch {args.batch_size}, {workers} decode threads, "
          f"{torch.get_num_threads()} torch threads, {platform.machine()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    tensors = torch.stack([predictor.preprocess(p) for p in paths])
    predictor.predict_tensors(tensors[:args.batch_size])  # warm-up
    peers = {"model only (pre-decoded)": lambda: model_only(predictor, tensors, args.batch_size),
             "predict, decode in the main thread (--workers 0)": lambda: end_to_end(predictor, paths, args.batch_size, 0,
                                                                              False),
             **{f"predict, {n} decode thread{'s' if n > 1 else ''}{' (default)' if n == workers else ''}":
                (lambda n=n: end_to_end(predictor, paths, args.batch_size, n, False)) for n in sorted({1, 2, workers})}}
    if args.old_code:
        peers = {"model only (pre-decoded)": peers["model only (pre-decoded)"],
                 "predict with the checkout's defaults": lambda: end_to_end(predictor, paths, args.batch_size, None,
                                                                            False)}
    rates: dict[str, list[float]] = {name: [] for name in peers}
    ratios: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(args.repeats):
        round_rates = {name: run() for name, run in peers.items()}
        for name, rate in round_rates.items():
            rates[name].append(rate)
            ratios[name].append(rate / round_rates["model only (pre-decoded)"])
    print("| run | images/s, median (min–max) | ratio to model only, median (min–max) |\n|---|---|---|")
    for name in peers:
        low, mid, high = min(ratios[name]), statistics.median(ratios[name]), max(ratios[name])
        print(f"| {name} | {fmt(rates[name])} | {mid:.2f} ({low:.2f}–{high:.2f}) |")
    name, sha = model_identity(args.model)
    results = {"what": "emoadapt predict end to end against the model alone (issue #20); images/s and ratio per "
                       "round, rounds interleaved", "n_images": len(paths), "image_size": f"{SIZE[0]}x{SIZE[1]}",
               "input_size": predictor.input_size, "runtime": "onnxruntime", "batch_size": args.batch_size,
               "decode_threads": workers, "repeats": args.repeats,
               "throughput": {n: {"images_per_s": spread(rates[n]), "ratio": spread(ratios[n])} for n in peers},
               **provenance(model=name, weights_sha256=sha)}
    if out:
        write_json(out, results)
    if args.old_code:
        return
    from emoadapt.pipeline import DRAFT_FACTOR
    one = str(paths[0])
    with tempfile.TemporaryDirectory() as folder:
        python = [sys.executable, "-m", "emoadapt"]
        help_s = wall([*python, "--help"], args.repeats)
        first_s = wall([*python, "predict", one, "--out", f"{folder}/one.csv", "--no-progress"], args.repeats)
        all_s = wall([*python, "predict", args.folder, "--out", f"{folder}/all.csv", "--no-progress"], 1)[0]
    print(f"\n| start-up | wall seconds, median (min–max) of {args.repeats} |\n|---|---|")
    print(f"| `emoadapt --help` | {statistics.median(help_s):.2f} ({min(help_s):.2f}–{max(help_s):.2f}) |")
    print(f"| `emoadapt predict one.jpg` (first result) | {statistics.median(first_s):.2f} "
          f"({min(first_s):.2f}–{max(first_s):.2f}) |")
    print(f"| `emoadapt predict` {len(paths)} JPEGs, whole command | {all_s:.1f} ({len(paths) / all_s:.1f} img/s "
          "with start-up) |")
    results["startup"] = {"`emoadapt --help`": spread(help_s), "`emoadapt predict one.jpg` (first result)": spread(first_s),
                          f"`emoadapt predict` {len(paths)} JPEGs, whole command": spread([all_s])}
    results["draft"] = []
    print("\n| draft mode vs full decode | short side kept | max abs Δp | mean abs Δp | top class changed | images |"
          "\n|---|---|---|---|---|---|")
    samples = sorted(Path(str(resources.files("emoadapt") / "samples")).glob("*.jpg"))
    sets = {"bundled photos (451–640 px)": samples, "generated 640×427": paths}
    if args.photos:
        sets[f"photos in {args.photos}"] = expand_inputs([args.photos])
    for name, chosen in sets.items():
        for factor in (1, DRAFT_FACTOR):
            big, mean, flipped, n = draft_change(predictor, chosen, factor)
            results["draft"].append({"images": name, "short_side_factor": factor, "max_abs_dp": big, "mean_abs_dp": mean,
                                     "top_class_changed": flipped, "n": n})
            print(f"| {name} | ≥ {factor}× input | {big:.4f} | {mean:.5f} | {flipped:.1%} | {n} |")
    large = Path(args.folder).parent / "pipeline-large.jpg"
    Image.open(samples[0]).convert("RGB").resize((2560, 1707), Image.Resampling.BICUBIC).save(large, quality=90)
    full = min(timed(lambda: predictor.preprocess(large)) for _ in range(5))
    side = DRAFT_FACTOR * predictor.input_size
    fast = min(timed(lambda: predictor.preprocess(decode_image(large, mode="RGB", reduce_to=side))) for _ in range(5))
    print(f"\n2560×1707 JPEG, decode + preprocess: full {full * 1e3:.0f} ms, --draft {fast * 1e3:.0f} ms "
          f"({full / fast:.1f}× faster; best of 5)")
    results["large_jpeg_decode_ms"] = {"full": full * 1e3, "draft": fast * 1e3, "statistic": "best of 5"}
    if out:
        write_json(out, results)
        print(f"\nwrote {out}")


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
