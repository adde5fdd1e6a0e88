"""The reliability table of docs/reliability.md, measured: every file of the generated corpus
(tests/corpus.py) through the CLI (folder → CSV, file list → CSV, folder → JSONL), the Python API and
the web app, plus interruption trials (a results file cut at a random byte, then ``--resume``; and
real ``kill -9`` of a running ``emoadapt predict``), compared with the uninterrupted run.

    python benchmarks/reliability.py [--model M] [--cuts 40] [--kills 3] [--work DIR]

Prints markdown: the per-kind table, the per-surface counts (cases, crashes, results lost, silently
wrong) and the trials passed. Default model: a tiny random EmoNet (fast; the checks concern input
handling, not accuracy); ``--model emoadapt-ier`` runs the shipped one.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

import corpus  # noqa: E402


def kill_trials(folder: Path, weights: Path, work: Path, trials: int, seed: int = 0) -> tuple[int, int]:
    """Start ``emoadapt predict`` on ``folder`` (batch size 1), ``kill -9`` it once it has written a
    random number of rows, resume in-process and compare with an uninterrupted run."""
    import numpy as np

    rng = np.random.default_rng(seed)
    reference = work / "kill-reference.csv"
    status, err = corpus._cli(["predict", str(folder), "--out", str(reference), "--model", str(weights),
                               "--runtime", "torch", "--no-progress", "--batch-size", "1"])
    expected = corpus._comparable(corpus.read_rows(reference))
    code = "import sys; from emoadapt.cli import main; sys.exit(main())"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    passed = 0
    for trial in range(trials):
        out = work / f"kill{trial}.csv"
        target_rows = int(rng.integers(1, max(2, len(expected) - 1)))
        process = subprocess.Popen([sys.executable, "-c", code, "predict", str(folder), "--out", str(out), "--model",
                                    str(weights), "--runtime", "torch", "--no-progress", "--batch-size", "1",
                                    "--threads", "1"], env=env, stderr=subprocess.DEVNULL)
        while process.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") > target_rows:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        process.wait()
        status, err = corpus._cli(["predict", str(folder), "--out", str(out), "--model", str(weights),
                                   "--runtime", "torch", "--no-progress", "--resume", "--batch-size", "1"])
        rows = corpus.read_rows(out) if status in (0, 1) else []
        passed += int(len(rows) == len(expected) and corpus._comparable(rows) == expected)
    return trials, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="weights or shipped model name (default: a tiny random EmoNet)")
    parser.add_argument("--cuts", type=int, default=40, help="cut-and-resume trials per format (CSV, JSONL)")
    parser.add_argument("--kills", type=int, default=3, help="kill -9 + resume trials")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="emoadapt-reliability-") as scratch:
        work = Path(args.work or scratch)
        folder = work / "corpus"
        cases = corpus.build(folder)
        if args.model is None:
            from conftest import save_tiny_model

            weights = save_tiny_model(work / "tiny.safetensors")
        else:
            weights = Path(args.model)  # a path or a shipped model name: both are passed on as text
        started = time.perf_counter()
        outcomes = corpus.run_surfaces(cases, folder, weights, work / "out")
        cut_total, cut_passed = corpus.resume_trials(folder, weights, work / "resume", args.cuts)
        kill_total, kill_passed = kill_trials(folder, weights, work / "kill", args.kills) if args.kills else (0, 0)
        seconds = time.perf_counter() - started

    table = collections.OrderedDict()
    for outcome in outcomes:
        table.setdefault((outcome.case.group, outcome.case.kind, outcome.case.expect), {})[outcome.surface] = outcome
    print("| group | kind | expected | " + " | ".join(corpus.SURFACES) + " |")
    print("|---|---|---|" + "---|" * len(corpus.SURFACES))
    for (group, kind, expect), by_surface in table.items():
        cells = []
        for surface in corpus.SURFACES:
            o = by_surface.get(surface)
            mark = "" if o is None or not (o.crash or o.lost or o.wrong) else " **✗**"
            cells.append("—" if o is None else o.result + mark)
        print(f"| {group} | {kind} | {expect} | " + " | ".join(cells) + " |")
    print()
    print("| surface | cases tried | results | error rows / 4xx | not applicable | crashes | results lost | silently wrong |")
    print("|---|---|---|---|---|---|---|---|")
    for surface in corpus.SURFACES:
        mine = [o for o in outcomes if o.surface == surface]
        tried = [o for o in mine if not o.result.startswith("not ")]
        print(f"| {surface} | {len(tried)} | {sum(o.result == 'ok' for o in tried)} | "
              f"{sum(o.result.startswith('error') for o in tried)} | {len(mine) - len(tried)} | "
              f"{sum(o.crash for o in mine)} | {sum(o.lost for o in mine)} | {sum(o.wrong for o in mine)} |")
    print()
    print(f"cut at a random byte + --resume = uninterrupted run: {cut_passed} of {cut_total} trials (CSV and JSONL)")
    print(f"kill -9 during the run + --resume = uninterrupted run: {kill_passed} of {kill_total} trials")
    print(f"{len(cases)} corpus files, {seconds:.0f} s")


if __name__ == "__main__":
    main()
