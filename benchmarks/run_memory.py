"""Peak memory of ``make run``'s job (issue #34): ``emoadapt demo`` (predict + explain the bundled
samples, one layer grid) run as a child process, its peak resident set size read from
``getrusage(RUSAGE_CHILDREN)`` (the kernel's high-water mark, as ``/usr/bin/time -v`` reports it).

    python benchmarks/run_memory.py [--repeats 2] [--out benchmarks/results/run_memory.json]

Writes the peak (MiB) and wall seconds of each run with provenance (model and weights sha256); a
fresh process per run, so each peak is its own. Target: under 1.5 GB (1,536 MiB).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402

TARGET_MIB = 1536


def one_run() -> dict:
    """Run ``emoadapt demo`` once in a child process; its peak RSS (MiB) and wall seconds."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "emoadapt", "demo", "--out", out], check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
    # RUSAGE_CHILDREN holds the largest peak of any child waited for so far: one child per process run
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs, each in a fresh child of a fresh process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="benchmarks/results/run_memory.json", help="results JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run()))
        return
    runs = []
    for _ in range(args.repeats):  # a new measuring process per run: RUSAGE_CHILDREN only ever grows
        done = subprocess.run([sys.executable, __file__, "--child"], check=True, capture_output=True, text=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    from emoadapt.models.registry import DEFAULT_MODEL, get_preset

    result = {**provenance(DEFAULT_MODEL, get_preset(DEFAULT_MODEL).sha256), "job": "emoadapt demo (make run)",
              "runs": runs, "max_peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "target_mib": TARGET_MIB}
    result["under_target"] = result["max_peak_rss_mib"] < TARGET_MIB
    write_json(args.out, result)
    peaks = ", ".join(f"{r['peak_rss_mib']:,.0f}" for r in runs)
    print(f"emoadapt demo: peak RSS {peaks} MiB (target < {TARGET_MIB:,}) -> {args.out}")


if __name__ == "__main__":
    main()
