"""Issue #33 route "batch shapes": does another number of images per model call make the default
explanation faster?

    python benchmarks/explain_batch.py [--sizes 8 16 32 64 128] [--repeat 2]

Times ``Predictor.explain(path, batch_size=B)`` of the default model (onnxruntime, every other setting
at its default) on the bundled samples, batch sizes interleaved (B1, B2, …, B1, B2, …) so that load
drifts hit every size alike, and the model alone (one onnxruntime call of B images, the images/s).
Writes ``benchmarks/results/explain/batch_sizes.json``: per size the seconds per explanation (median,
min, max over samples × repeats) and the ratio to the shipped batch size's median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "explain" / "batch_sizes.json"


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128],
                        help="images per model call to compare (the shipped default is one of them)")
    parser.add_argument("--repeat", type=int, default=2, help="explanations of each sample per size")
    parser.add_argument("--model-repeat", type=int, default=5, help="timed model-only calls per size")
    parser.add_argument("--out", default=str(OUT), help="results JSON")
    args = parser.parse_args()

    from emoadapt.attribution import settings
    from emoadapt.models.registry import DEFAULT_MODEL, get_preset
    from emoadapt.predictor import Predictor

    samples = sorted((ROOT / "src" / "emoadapt" / "samples").glob("*.jpg"))
    predictor = Predictor(DEFAULT_MODEL)
    load_before = os.getloadavg()
    for sample in samples[:1]:  # warm-up: the session, the first decode
        predictor.explain(str(sample))
    seconds: dict[int, list[float]] = {size: [] for size in args.sizes}
    evaluations: dict[int, int] = {}
    for _ in range(args.repeat):
        for sample in samples:
            for size in args.sizes:
                start = time.perf_counter()
                explanation = predictor.explain(str(sample), batch_size=size)
                seconds[size].append(time.perf_counter() - start)
                evaluations[size] = explanation.evaluations
    session = predictor.session
    name = session.get_inputs()[0].name
    side = predictor.input_size
    rates: dict[int, list[float]] = {size: [] for size in args.sizes}
    batches = {size: np.random.default_rng(0).random((size, 3, side, side), dtype=np.float32) for size in args.sizes}
    for size in args.sizes:
        session.run(None, {name: batches[size]})
    for _ in range(args.model_repeat):
        for size in args.sizes:
            start = time.perf_counter()
            session.run(None, {name: batches[size]})
            rates[size].append(size / (time.perf_counter() - start))
    shipped = settings.BATCH_SIZE
    reference = statistics.median(seconds[shipped]) if shipped in seconds else None
    rows = {str(size): {"explain_seconds": spread(seconds[size]), "evaluations": evaluations[size],
                        "model_only_images_per_s": spread(rates[size]),
                        **({"time_vs_shipped": round(statistics.median(seconds[size]) / reference, 3)}
                           if reference else {})}
            for size in args.sizes}
    write_json(args.out, {"what": __doc__.split("\n\n")[0], "shipped_batch_size": shipped,
                          "samples": [s.name for s in samples], "repeat": args.repeat, "sizes": rows,
                          "load_average": {"before": [round(x, 2) for x in load_before],
                                           "after": [round(x, 2) for x in os.getloadavg()]},
                          **provenance(model=DEFAULT_MODEL, weights_sha256=get_preset(DEFAULT_MODEL).sha256)})
    for size, row in rows.items():
        print(f"batch {size:>4}: {row['explain_seconds']['median']:.3f} s per explanation "
              f"({row.get('time_vs_shipped', float('nan')):.2f} x shipped), model alone "
              f"{row['model_only_images_per_s']['median']:.1f} img/s")


if __name__ == "__main__":
    main()
