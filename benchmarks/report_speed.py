"""How long ``emoadapt report`` takes (issue #34): the default model on the Emotion6 test split of
``benchmarks/results/adaptation/split.json`` (158 images), ``--explain-budget 4``, every other
option at its default, run as a child process, timed end to end.

    python benchmarks/report_speed.py [--repeats 1] [--explain-budget 4] [--out benchmarks/results/report_speed.json]

Writes the wall seconds of each run, the report's own figures (images, accuracy, explanations and
their seconds) and provenance. Target: under 60 s on an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 60


def report_command(data: str, out: str, explain_budget: int) -> list[str]:
    return [sys.executable, "-m", "emoadapt", "report", "--data", f"{data}/emotion6", "--layout", "emotion6",
            "--split", "test", "--manifest", "benchmarks/results/adaptation/split.json", "--out", out,
            "--explain-budget", str(explain_budget), "--no-progress"]


def one_run(data: str, explain_budget: int) -> dict:
    """One report in a temporary folder: wall seconds and what its report.json says of itself."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run(report_command(data, out, explain_budget), check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        report = json.loads((Path(out) / "report.json").read_text())
    model = report["models"][0]
    explained = [e for e in model["examples"] if e.get("explanation")]
    return {"seconds": round(seconds, 1), "report_seconds": report.get("seconds"), "images": report["data"]["images"],
            "accuracy": model["metrics"]["accuracy"], "explanations": len(explained),
            "explanation_seconds": [e["explanation"].get("seconds") for e in explained]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=".cache/data", help="the folder holding emotion6/ (default .cache/data)")
    parser.add_argument("--explain-budget", type=int, default=4, help="explained examples (default 4)")
    parser.add_argument("--repeats", type=int, default=1, help="runs (default 1)")
    parser.add_argument("--out", default="benchmarks/results/report_speed.json", help="results JSON")
    args = parser.parse_args()
    runs = [one_run(args.data, args.explain_budget) for _ in range(args.repeats)]
    from emoadapt.models.registry import DEFAULT_MODEL, get_preset

    seconds = sorted(r["seconds"] for r in runs)
    result = {**provenance(DEFAULT_MODEL, get_preset(DEFAULT_MODEL).sha256),
              "report_command": " ".join(report_command(args.data, "OUT", args.explain_budget)[1:]),
              "runs": runs, "median_seconds": seconds[len(seconds) // 2], "target_seconds": TARGET_S}
    result["under_target"] = result["median_seconds"] < TARGET_S
    write_json(args.out, result)
    print(f"emoadapt report: {', '.join(str(s) for s in seconds)} s (target < {TARGET_S} s) -> {args.out}")


if __name__ == "__main__":
    main()
