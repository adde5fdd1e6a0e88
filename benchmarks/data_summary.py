"""What the shared research datasets hold (issue #32): the counts that README.md and docs/data.md
quote, written to a results file instead of being typed into the docs.

    nice python benchmarks/data_summary.py [--out benchmarks/results/data/summary.json] [--no-decode]

For each dataset found under ``$EMOADAPT_DATA`` (FER2013, CK+48, JAFFE, Emotion6): the summary of
``emoadapt data summary`` (``emoadapt.data.summarize``: exact counts per class and split, subjects,
IER classes, for Emotion6 how many images have their folder as the unique vote argmax, image sizes
from the headers of 200 files), the text that command prints, and the sha256 of the sorted list of
its files (which files were counted). For CK+48 also the split that ``emoadapt data split`` makes
with its defaults (seed 0, 70 / 15 / 15, grouped by subject; the manifest example of docs/data.md).
Unless ``--no-decode``: every image through ``decode_image`` (the one decoder, with the libjpeg
corrupt-data check on JPEGs), counting the files it refuses, by reason (docs/reliability.md).

No model is run; about a minute on a busy 2-core CPU (most of it decoding FER2013's 35,887 faces).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import REPO, provenance, write_json  # noqa: E402

from emoadapt.data.summary_text import format_summary  # noqa: E402
from emoadapt.data import ImageDecodeError, decode_image, open_dataset, split_dataset, summarize  # noqa: E402
from emoadapt.data.locate import data_home, dataset_path  # noqa: E402
from emoadapt.data.splits import sample_key, split_sort_key  # noqa: E402

DATASETS = ("fer2013", "ckplus48", "jaffe", "emotion6")
OUT = REPO / "benchmarks" / "results" / "data" / "summary.json"


def relative_root(root: str | Path) -> str:
    """The dataset root relative to the data home, as ``.cache/data/…`` (no machine's own path)."""
    try:
        return str(Path(".cache/data") / Path(root).resolve().relative_to(data_home().resolve()))
    except ValueError:
        return Path(root).name


def decode_all(paths: list[str]) -> dict:
    """Every file through ``decode_image``: how many decoded, how many were refused and why."""
    refused: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    jpegs = 0
    for path in paths:
        jpegs += Path(path).suffix.lower() in (".jpg", ".jpeg")
        try:
            decode_image(path, mode="RGB")
        except ImageDecodeError as exc:
            refused[exc.reason] += 1
            examples.setdefault(exc.reason, str(path))
    return {"files": len(paths), "jpeg_files": jpegs, "refused": sum(refused.values()),
            "refused_by_reason": dict(refused), "refused_examples": examples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--no-decode", action="store_true", help="counts only; do not decode every image")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    datasets: dict[str, dict] = {}
    for name in DATASETS:
        path = dataset_path(name, required=False)
        if path is None:
            print(f"{name}: not found under {data_home()}; skipped")
            continue
        dataset = open_dataset(path, name)
        summary = summarize(dataset, sizes=200)
        summary["root"] = relative_root(summary["root"])
        keys = sorted(sample_key(s, dataset.root) for s in dataset.samples)
        entry = {"summary": summary, "printed": format_summary(summary),
                 "files_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest()}
        if name == "ckplus48":
            manifest = split_dataset(dataset, seed=0)
            first = sorted(manifest.assignments)[0]
            entry["split_seed0"] = {"kind": manifest.kind, "seed": manifest.seed, "fractions": manifest.fractions,
                                    "folds": manifest.folds, "group": manifest.group,
                                    "counts": {k: n for k, n in sorted(collections.Counter(manifest.assignments.values()).items(),
                                                                         key=lambda kv: split_sort_key(kv[0]))},
                                    "first_assignment": [first, manifest.assignments[first]]}
        if not args.no_decode:
            entry["decode"] = decode_all([s.path for s in dataset.samples])
        datasets[name] = entry
        print(f"{name}: {summary['samples']} samples" +
              (f", {entry['decode']['refused']} refused by decode_image" if "decode" in entry else ""), flush=True)
    totals = {"jpeg_files": sum(d["decode"]["jpeg_files"] for d in datasets.values() if "decode" in d),
              "refused": sum(d["decode"]["refused"] for d in datasets.values() if "decode" in d)}
    write_json(args.out, {"what": "the shared research datasets: counts (emoadapt data summary) and decode_image "
                                  "over every file", "datasets": datasets, "totals": totals,
                          "seconds": round(time.perf_counter() - started, 1), **provenance()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
