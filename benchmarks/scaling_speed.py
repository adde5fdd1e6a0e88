"""Sharded predict and data-parallel training with 1…N processes on this machine (issue #20).

    python benchmarks/scaling_speed.py [--ranks 1 2] [--n 200] [--train-limit 1024] [--out FILE]

1. ``torchrun --nproc_per_node R -m emoadapt predict`` over the N generated JPEGs of
   benchmarks/pipeline_speed.py (runs/pipeline-images/; generated if missing), then
   ``emoadapt merge``: wall seconds of the whole job (start-up included) and images/s.
2. ``torchrun --nproc_per_node R -m emoadapt train-fer --model fer-cpu --limit L --epochs 1`` on
   FER2013 (when found under $EMOADAPT_DATA): training images/s of the epoch (log.jsonl, summed
   over the ranks) and the wall seconds of the job.

Every rank gets cores / R torch threads and decode threads; training also runs 1 rank × 1 thread,
since torch's thread pool can cost more than it gives on a busy machine. Prints a table per part
and writes both as JSON (``--out``, default ``benchmarks/results/scaling_speed.json``) with the
provenance: command, date, machine (cores, load average at the start), commit, and the weights
sha256 of the default model (predict) and of fer-cpu (train-fer).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline_speed import ROOT, generate

from emoadapt.data.locate import dataset_path

OUT = ROOT / "benchmarks" / "results" / "scaling_speed.json"
sys.path.insert(0, str(ROOT))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, weights_identity, write_json  # noqa: E402


def torchrun(ranks: int, *args: str) -> float:
    """Wall seconds of ``torchrun --standalone --nproc_per_node ranks -m emoadapt ARGS``."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
                    "-m", "emoadapt", *args], check=True, capture_output=True, cwd=ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // ranks))})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--train-limit", type=int, default=1024)
    parser.add_argument("--folder", default=str(ROOT / "runs" / "pipeline-images"))
    parser.add_argument("--out", default=str(OUT), help=f"results file (default: {OUT.relative_to(ROOT)})")
    args = parser.parse_args()
    from emoadapt.models.registry import DEFAULT_MODEL

    shas = {name: weights_identity(name)["weights_sha256"] for name in (DEFAULT_MODEL, "fer-cpu")}
    made = provenance(model=f"{DEFAULT_MODEL} (predict), fer-cpu (train-fer)", weights_sha256=shas)
    data = {"what": "sharded predict (torchrun + merge) and DDP train-fer with 1..N ranks on this machine",
            "n_images": args.n, "image_size": "640x427", "train_limit": args.train_limit, "predict": [], "train": None}
    paths = generate(Path(args.folder), args.n)
    listed = Path(args.folder).parent / "pipeline-list"
    listed.mkdir(exist_ok=True)
    for old in listed.iterdir():
        old.unlink()
    for path in paths:  # exactly N images, whatever else the folder holds
        (listed / path.name).symlink_to(path.resolve())
    print(f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"| sharded predict, {len(paths)} JPEGs 640×427 | wall s (with start-up and merge) | images/s |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for ranks in args.ranks:
            out = f"{folder}/r{ranks}.csv"
            seconds = torchrun(ranks, "predict", str(listed), "--out", out, "--no-progress")
            if ranks > 1:  # one rank writes OUT itself (no parts)
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "emoadapt", "merge", "--out", out, "--inputs", str(listed)],
                               check=True, capture_output=True)
                seconds += time.perf_counter() - started
            print(f"| {ranks} rank(s) | {seconds:.1f} | {len(paths) / seconds:.1f} |", flush=True)
            data["predict"].append({"ranks": ranks, "threads_per_rank": max(1, (os.cpu_count() or 1) // ranks),
                                    "wall_s": seconds, "images_per_s": len(paths) / seconds})
    fer = dataset_path("fer2013", required=False)
    if not fer:
        print("\nFER2013 not found: training part skipped")
        print(f"wrote {write_json(args.out, {**data, **made})}")
        return
    data["train"] = []
    print(f"\n| train-fer fer-cpu, {args.train_limit} images, 1 epoch | train images/s | wall s |\n|---|---|---|")
    cores = os.cpu_count() or 1
    runs = [(ranks, max(1, cores // ranks)) for ranks in args.ranks] + [(1, 1)]  # (1, 1): one thread, for scale
    with tempfile.TemporaryDirectory() as folder:
        for ranks, threads in runs:
            out = f"{folder}/t{ranks}-{threads}"
            seconds = torchrun(ranks, "train-fer", "--out", out, "--model", "fer-cpu", "--limit", str(args.train_limit),
                               "--epochs", "1", "--no-progress", "--device", "cpu", "--threads", str(threads))
            rate = json.loads(Path(out, "log.jsonl").read_text().splitlines()[-1])["train_img_per_s"]
            print(f"| {ranks} rank(s) × {threads} thread(s) | {rate:.1f} | {seconds:.1f} |", flush=True)
            data["train"].append({"ranks": ranks, "threads_per_rank": threads, "train_images_per_s": rate,
                                  "wall_s": seconds})
    print(f"wrote {write_json(args.out, {**data, **made})}")


if __name__ == "__main__":
    main()
