"""The reliability table of docs/reliability.md, measured: every file of the generated corpus
(tests/corpus.py) through the CLI (folder → CSV, file list → CSV, folder → JSONL), the Python API and
the web app, plus interruption trials (a results file cut at a random byte, then ``--resume``; and
real ``kill -9`` of a running ``emoadapt predict``), compared with the uninterrupted run.

    python benchmarks/reliability.py [--model M] [--cuts 40] [--kills 3] [--work DIR] [--out FILE]

Writes ``benchmarks/results/reliability.json`` (``--out``): the per-kind table, the per-surface
counts (cases, crashes, results lost, silently wrong), the interruption trials passed, the corpus
size, the seconds and the provenance (command, date, machine, commit, the model and, for a shipped
one, its weights sha256); prints the same as markdown. ``python -m benchmarks.docnumbers`` renders
docs/reliability.md's tables from that file (generator ``reliability``, :func:`kinds_table`,
:func:`surfaces_table`). Default model: a tiny random EmoNet (fast; the checks concern input
handling, not accuracy); ``--model emoadapt-ier`` runs the shipped one.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "reliability.json"
TINY_MODEL = "tiny random EmoNet (tests/conftest.py save_tiny_model, seed 0)"
SEED = 0  #: the corpus, the cut offsets and the kill points

# what docs/reliability.md imports (benchmarks/docnumbers_tables.py) needs neither torch nor the corpus:
# tests/ and src/ go on sys.path only when the benchmark runs (:func:`_corpus`)


def _corpus():
    """tests/corpus.py (and the emoadapt of this checkout)."""
    for folder in (ROOT / "src", ROOT / "tests"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    import corpus

    return corpus


def kill_trials(folder: Path, weights: Path, work: Path, trials: int, seed: int = 0) -> tuple[int, int]:
    """Start ``emoadapt predict`` on ``folder`` (batch size 1), ``kill -9`` it once it has written a
    random number of rows, resume in-process and compare with an uninterrupted run."""
    import numpy as np

    corpus = _corpus()
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


def results(outcomes: list, surfaces: tuple[str, ...]) -> dict[str, Any]:
    """The per-kind table, the per-surface counts and the totals of :func:`corpus.run_surfaces`' outcomes."""
    kinds: dict[tuple[str, str, str], dict[str, Any]] = {}
    for o in outcomes:
        key = (o.case.group, o.case.kind, o.case.expect)
        row = kinds.setdefault(key, {"group": key[0], "kind": key[1], "expected": key[2], "outcomes": {}})
        row["outcomes"][o.surface] = {"result": o.result, "crash": bool(o.crash), "lost": bool(o.lost),
                                        "wrong": bool(o.wrong)}
    counts = {}
    for surface in surfaces:
        mine = [o for o in outcomes if o.surface == surface]
        tried = [o for o in mine if not o.result.startswith("not ")]
        counts[surface] = {"cases_tried": len(tried), "results": sum(o.result == "ok" for o in tried),
                           "error_rows": sum(o.result.startswith("error") for o in tried),
                           "not_applicable": len(mine) - len(tried), "crashes": sum(bool(o.crash) for o in mine),
                           "results_lost": sum(bool(o.lost) for o in mine),
                           "silently_wrong": sum(bool(o.wrong) for o in mine)}
    totals = {key: sum(c[key] for c in counts.values()) for key in ("crashes", "results_lost", "silently_wrong")}
    return {"surfaces": list(surfaces), "kinds": list(kinds.values()), "per_surface": counts, "totals": totals}


def kinds_table(data: dict[str, Any]) -> str:
    """The per-kind markdown table (outcome on each surface; **✗** marks a crash, a lost or a wrong result)."""
    surfaces = data["surfaces"]
    lines = ["| group | kind | expected | " + " | ".join(surfaces) + " |", "|---|---|---|" + "---|" * len(surfaces)]
    for row in data["kinds"]:
        cells = []
        for surface in surfaces:
            o = row["outcomes"].get(surface)
            mark = "" if o is None or not (o["crash"] or o["lost"] or o["wrong"]) else " **✗**"
            cells.append("—" if o is None else o["result"] + mark)
        lines.append(f"| {row['group']} | {row['kind']} | {row['expected']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def surfaces_table(data: dict[str, Any]) -> str:
    """The per-surface markdown table: cases tried, results, error rows, crashes, results lost, silently wrong."""
    lines = ["| surface | cases tried | results | error rows / 4xx | not applicable | crashes | results lost | silently wrong |",
             "|---|---|---|---|---|---|---|---|"]
    for surface in data["surfaces"]:
        c = data["per_surface"][surface]
        lines.append(f"| {surface} | {c['cases_tried']} | {c['results']} | {c['error_rows']} | {c['not_applicable']} | "
                     f"{c['crashes']} | {c['results_lost']} | {c['silently_wrong']} |")
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    """What the benchmark prints: both tables, the interruption trials, corpus size and seconds."""
    cut, kill = data["interruptions"]["cut_resume"], data["interruptions"]["kill_resume"]
    return "\n".join([kinds_table(data), "", surfaces_table(data), "",
                      f"cut at a random byte + --resume = uninterrupted run: {cut['passed']} of {cut['total']} trials "
                      f"({cut['per_format']} each: {', '.join(cut['formats'])})",
                      f"kill -9 during the run + --resume = uninterrupted run: {kill['passed']} of {kill['total']} trials",
                      f"{data['corpus']['files']} corpus files, {data['seconds']['total']:.0f} s"])


def model_provenance(model: str | None) -> dict[str, Any]:
    """``model`` and ``weights_sha256`` for :func:`benchmarks.lib.provenance.provenance`: a shipped model by
    its name and registry sha256, a weights file by its path and sha256, the tiny random model by description only
    (it is drawn again on every run, with a fixed seed; its file's bytes are not stable)."""
    from benchmarks.lib.provenance import weights_identity

    return {"model": TINY_MODEL} if model is None else weights_identity(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="weights or shipped model name (default: a tiny random EmoNet)")
    parser.add_argument("--cuts", type=int, default=40, help="cut-and-resume trials per format (CSV, JSONL)")
    parser.add_argument("--kills", type=int, default=3, help="kill -9 + resume trials")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", default=str(OUT), help=f"results file (default: {OUT.relative_to(ROOT)})")
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(ROOT))  # the repository root: benchmarks.lib
    from benchmarks.lib.provenance import provenance, write_json

    corpus = _corpus()
    torch.set_num_threads(1)
    formats = ("CSV", "JSONL")
    with tempfile.TemporaryDirectory(prefix="emoadapt-reliability-") as scratch:
        work = Path(args.work or scratch)
        folder = work / "corpus"
        cases = corpus.build(folder, seed=SEED)
        if args.model is None:
            from conftest import save_tiny_model

            weights = save_tiny_model(work / "tiny.safetensors", seed=SEED)
        else:
            weights = Path(args.model)  # a path or a shipped model name: both are passed on as text
        made = provenance(**model_provenance(args.model), seed=SEED)  # the load average at the start
        started = time.perf_counter()
        outcomes = corpus.run_surfaces(cases, folder, weights, work / "out")
        surfaces_done = time.perf_counter()
        cut_total, cut_passed = corpus.resume_trials(folder, weights, work / "resume", args.cuts, seed=SEED)
        cuts_done = time.perf_counter()
        kill_total, kill_passed = (kill_trials(folder, weights, work / "kill", args.kills, seed=SEED)
                                   if args.kills else (0, 0))
        finished = time.perf_counter()

    groups: dict[str, int] = {}
    for case in cases:
        groups[case.group] = groups.get(case.group, 0) + 1
    data = {
        "what": "every file of the generated corpus (tests/corpus.py) through each surface, and interrupted runs "
                "resumed, compared with the uninterrupted run (docs/reliability.md)",
        "corpus": {"files": len(cases), "expected_ok": sum(c.expect == "ok" for c in cases),
                   "expected_error": sum(c.expect == "error" for c in cases), "by_group": groups},
        **results(outcomes, corpus.SURFACES),
        "interruptions": {
            "cut_resume": {"passed": cut_passed, "total": cut_total, "per_format": args.cuts, "formats": list(formats)},
            "kill_resume": {"passed": kill_passed, "total": kill_total}},
        "seconds": {"total": finished - started, "surfaces": surfaces_done - started,
                    "cut_resume": cuts_done - surfaces_done, "kill_resume": finished - cuts_done},
        **made,
    }
    print(markdown(data))
    print(f"wrote {write_json(args.out, data)}")


if __name__ == "__main__":
    main()
