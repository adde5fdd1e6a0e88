"""Accuracy parity of the default model's int8 copy with fp32 (issue #33), through the product's
evaluate path (``emoadapt.evaluate.evaluate_model``: the model's own crop, flip averaging and
calibration), on both domains.

    python benchmarks/int8_parity.py [--int8 "int8 (shipped)"] \
        [--out benchmarks/results/explain/int8-parity-shipped.json]

The shipped int8 copy outputs logits only (explanations need no more); the predictions scored here
also need the ``pre_logits`` features of the calibration's OOD score, so the copy is quantised
again from the product's export with that output and the product's config
(configs/int8/emoadapt-ier.toml), and checked to give the shipped file's logits
(``shipped_max_abs_logit_difference``).

Splits: Emotion6 fold 0 of ``benchmarks/results/adaptation/folds.json`` — validation (fold1) and
test (fold0) — and FER2013 PublicTest and PrivateTest faces of the four mapped classes (4-class).
The shipped default was fitted on all 1,056 Emotion6 images, so its Emotion6 figures here are not
held-out accuracies: they measure agreement of the two paths. Per split: accuracy and macro-F1 of
each path, the difference in points, the share of images whose predicted class is the same, and
max / mean |Δp| over every class probability (calibrated, flip-averaged).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.int8 import (CONFIG, FOLDS, SHIPPED, VARIANTS, calibration_paths, export_fp32,  # noqa: E402
                                  file_sha256, quantize_int8, shipped_int8_path)
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.speed import model_identity  # noqa: E402

from emoadapt.data.locate import dataset_path  # noqa: E402
from emoadapt.evaluate import evaluate_model  # noqa: E402
from emoadapt.models.onnx import onnx_file_session  # noqa: E402
from emoadapt.predictor import Predictor  # noqa: E402

#: (name, dataset, manifest, split) scored by both paths
SPLITS = (("emotion6 val (fold1)", "emotion6", FOLDS, "fold1"),
          ("emotion6 test (fold0)", "emotion6", FOLDS, "fold0"),
          ("fer2013 PublicTest 4-class", "fer2013", None, "PublicTest"),
          ("fer2013 PrivateTest 4-class", "fer2013", None, "PrivateTest"))
#: the tolerance the results are judged by: accuracy within this many points of fp32
ACCURACY_POINTS = 0.5


def fer_manifest(folder: Path, every: int) -> Path | None:
    """A split manifest of FER2013 that keeps every ``every``-th image (sorted by path) of PublicTest
    and PrivateTest under its split name and calls the rest ``unused``; ``None`` when ``every`` is 1."""
    if every == 1:
        return None
    from emoadapt.data import open_dataset
    from emoadapt.data.splits import SplitManifest, sample_key, write_manifest

    root = dataset_path("fer2013")
    samples = sorted(open_dataset(root, "auto").samples, key=lambda s: s.path)
    seen: dict[str, int] = {}
    assignments = {}
    for sample in samples:
        index = seen[sample.split] = seen.get(sample.split, -1) + 1
        keep = sample.split in ("PublicTest", "PrivateTest") and index % every == 0
        assignments[sample_key(sample, root)] = sample.split if keep else "unused"
    manifest = SplitManifest(assignments=assignments, seed=0, group="none", dataset="fer2013", root=str(root))
    return write_manifest(manifest, folder / f"fer2013-every{every}.json")


def score(predictor: Predictor, dataset: str, manifest: Path | None, split: str) -> dict:
    """``evaluate_model``'s report (with ``probs`` (N, 4)) of ``predictor`` on one split, 4 IER classes."""
    return evaluate_model(predictor, dataset_path(dataset), splits=[split], manifest=manifest, mapping="ier",
                          with_probs=True, progress=False, batch_size=16)


def compare(fp32: dict, int8: dict) -> dict:
    """Accuracy, macro-F1 and probability differences of two reports of the same images."""
    delta = np.abs(np.asarray(int8["probs"]) - np.asarray(fp32["probs"]))
    same = np.asarray(int8["probs"]).argmax(1) == np.asarray(fp32["probs"]).argmax(1)
    return {"n": fp32["n"], "accuracy": {"fp32": fp32["accuracy"], "int8": int8["accuracy"]},
            "macro_f1": {"fp32": fp32["macro_f1"], "int8": int8["macro_f1"]},
            "accuracy_points_int8_minus_fp32": 100 * (int8["accuracy"] - fp32["accuracy"]),
            "same_prediction": float(same.mean()), "max_abs_dp": float(delta.max()),
            "mean_abs_dp": float(delta.mean()), "p99_abs_dp": float(np.quantile(delta, 0.99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--int8", nargs="+", default=[SHIPPED],
                        choices=[name for name, options in VARIANTS.items() if not (options or {}).get("unfolded")],
                        help="int8 copies to score against fp32 (benchmarks/lib/int8.py VARIANTS)")
    parser.add_argument("--splits", nargs="+", default=[s[0] for s in SPLITS], help="names of SPLITS to score")
    parser.add_argument("--fer-every", type=int, default=1,
                        help="score every N-th image of FER2013 PublicTest / PrivateTest (1: all)")
    parser.add_argument("--out", default="benchmarks/results/explain/int8-parity-shipped.json")
    args = parser.parse_args()

    predictor = Predictor(None, runtime="onnx")
    rows: dict[str, dict] = {name: {} for name in args.int8}
    with tempfile.TemporaryDirectory() as folder:
        fp32 = export_fp32(predictor, Path(folder) / "fp32.onnx")
        paths = calibration_paths()
        files = {"fp32": fp32, **{name: quantize_int8(fp32, Path(folder) / f"int8-{i}.onnx", predictor.preprocess,
                                                      paths, **(VARIANTS[name] or {}))
                                  for i, name in enumerate(args.int8)}}
        sessions = {name: onnx_file_session(path) for name, path in files.items()}
        same_as_shipped = shipped_logits_difference(sessions[SHIPPED], predictor) if SHIPPED in sessions else None
        digests = {name: file_sha256(path) for name, path in files.items()}
        fer = fer_manifest(Path(folder), args.fer_every)
        for split_name, dataset, manifest, split in SPLITS:
            if split_name not in args.splits:
                continue
            manifest = fer if dataset == "fer2013" else manifest
            reports = {}
            for name, session in sessions.items():
                predictor.session = session
                reports[name] = score(predictor, dataset, manifest, split)
            for name in args.int8:
                row = rows[name][split_name] = compare(reports["fp32"], reports[name])
                print(f"{name} | {split_name}: n {row['n']}, accuracy fp32 {row['accuracy']['fp32']:.4f} int8 "
                      f"{row['accuracy']['int8']:.4f} ({row['accuracy_points_int8_minus_fp32']:+.2f} pt), same "
                      f"prediction {row['same_prediction']:.4f}, |Δp| max {row['max_abs_dp']:.4f} mean "
                      f"{row['mean_abs_dp']:.5f}", flush=True)
            write(args, rows, digests, len(paths), same_as_shipped)  # after every split: what is done is kept


def shipped_logits_difference(session, predictor: Predictor) -> float:
    """Max |Δ logit| between ``session`` (the shipped recipe, quantised here with the calibration's
    extra ``pre_logits`` output) and the shipped file, on the bundled samples: 0 when the copy scored
    here is the shipped one (the extra output is in the fp32 head, so the int8 graph is the same)."""
    import torch

    from emoadapt.models.onnx import onnx_file_session as session_of

    samples = sorted((Path(__file__).resolve().parents[1] / "src" / "emoadapt" / "samples").glob("*.jpg"))
    batch = torch.stack([predictor.preprocess(str(p)) for p in samples]).numpy()
    here = session.run(["logits"], {"images": batch})[0]
    shipped = session_of(shipped_int8_path()).run(["logits"], {"images": batch})[0]
    return float(np.abs(here - shipped).max())


def write(args: argparse.Namespace, rows: dict, digests: dict, calibration_images: int,
          same_as_shipped: float | None) -> None:
    """Write the results file with the splits scored so far (``complete`` once all of ``args.splits`` are)."""
    within = {name: all(abs(r["accuracy_points_int8_minus_fp32"]) <= ACCURACY_POINTS for r in splits.values())
              for name, splits in rows.items()}
    done = {split for splits in rows.values() for split in splits}
    model_name, sha = model_identity(None)
    write_json(args.out, {
        "what": "fp32 vs int8 (onnxruntime static QDQ, per-channel) of the default model through evaluate_model "
                "(its crop, flip averaging, calibration); 4 IER classes",
        "variants": rows, "accuracy_tolerance_points": ACCURACY_POINTS, "within_tolerance": within,
        "complete": done >= set(args.splits), "fer_every": args.fer_every, "onnx_sha256": digests,
        "calibration": {"config": str(CONFIG.name), "images": calibration_images,
                        "variants": {name: VARIANTS[name] or "the shipped recipe" for name in args.int8}},
        "shipped_max_abs_logit_difference": same_as_shipped,
        **provenance(model=model_name, weights_sha256=sha, split_manifest=str(FOLDS.name),
                     split_manifest_sha256=file_sha256(FOLDS), load_average=os.getloadavg())})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
