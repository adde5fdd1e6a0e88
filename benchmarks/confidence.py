"""Calibration and the OOD score of a model (issue #22): ECE before/after temperature scaling on the
Emotion6 test split (reported once), and how well each OOD score separates Emotion6 photos from
generated screenshots, plots, documents, flat colours and noise (``ood_images.py``).

    nice python benchmarks/confidence.py --calibration src/emoadapt/weights/emoadapt-ier.calibration.json \\
        [--energy-calibration /tmp/energy.json] [--model emoadapt-ier] [--threads 1]

Choice of OOD score (mahalanobis vs energy), by validation only: AUROC of Emotion6 *val* images
against generated images from seed 1. Reported: AUROC of Emotion6 *test* images against generated
images from seed 2 (a different draw), and the share of each flagged ``uncertain`` at the fitted
threshold. Writes ``benchmarks/results/confidence.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ood_images import KINDS, generate  # noqa: E402
from whole_image import split_samples  # noqa: E402

from emoadapt.api import Predictor  # noqa: E402
from emoadapt.data.transforms import image_to_tensor  # noqa: E402
from emoadapt.fileio import atomic_write_json  # noqa: E402
from emoadapt.models.calibration import (Calibration, auroc, energy_scores, expected_calibration_error,  # noqa: E402
                                         mahalanobis_scores, softmax)

OUT = Path(__file__).resolve().parent / "results" / "confidence.json"
OOD_COUNT = 150


@torch.inference_mode()
def outputs(predictor: Predictor, images: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits (N, K), pre_logits (N, D) and pixel spread (N,) of paths or PIL images, with the predictor's fit."""
    logits, features, spread = [], [], []
    for start in range(0, len(images), 32):
        batch = torch.stack([image_to_tensor(im.convert("RGB"), predictor.input_size, 3, predictor.fit)
                             if hasattr(im, "convert") else predictor.preprocess(im) for im in images[start:start + 32]])
        taps = predictor.model.forward_taps(batch, ("pre_logits", "logits"))
        logits.append(taps["logits"].double().numpy())
        features.append(taps["pre_logits"].double().numpy())
        spread.append(batch.flatten(2).double().std(dim=2).mean(dim=1).numpy())
    return np.concatenate(logits), np.concatenate(features), np.concatenate(spread)


def scores(kind: str, calibration: Calibration, logits: np.ndarray, features: np.ndarray) -> np.ndarray:
    if kind == "energy":
        return energy_scores(logits)
    return mahalanobis_scores(features, calibration.mean, calibration.components, calibration.variances,
                              calibration.residual_variance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", required=True, help="the mahalanobis calibration JSON (emoadapt calibrate)")
    parser.add_argument("--energy-calibration", default=None, help="an energy calibration JSON (--ood energy)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    predictor = Predictor(args.model, runtime="torch")
    maha = Calibration.load(args.calibration)
    energy = Calibration.load(args.energy_calibration) if args.energy_calibration else None
    data = {}
    for split in ("val", "test"):
        samples = split_samples(split)
        data[split] = (*outputs(predictor, [p for p, _ in samples])[:2], np.array([y for _, y in samples]))
        data[split + "_spread"] = outputs(predictor, [p for p, _ in samples])[2] if split == "test" else None
    ood = {"val": generate(OOD_COUNT, seed=1), "test": generate(OOD_COUNT, seed=2)}
    ood_out = {split: outputs(predictor, [im for _, im in images]) for split, images in ood.items()}
    test_logits, test_features, test_labels = data["test"]
    result = {"model": args.model or "emoadapt-ier", "fit": predictor.fit, "temperature": maha.temperature,
              "test_n": len(test_labels),
              "test_accuracy": round(float((test_logits.argmax(1) == test_labels).mean()), 4),
              "test_ece_before": round(expected_calibration_error(softmax(test_logits), test_labels), 4),
              "test_ece_after": round(expected_calibration_error(softmax(test_logits / maha.temperature), test_labels), 4),
              "ood_n": OOD_COUNT, "ood_kinds": list(KINDS), "scores": {}}
    for kind, calibration in (("mahalanobis", maha), ("energy", energy)):
        if calibration is None:
            continue
        entry = {"threshold": round(calibration.ood_threshold, 4)}
        for split in ("val", "test"):
            id_scores = scores(kind, maha, data[split][0], data[split][1])
            ood_scores = scores(kind, maha, *ood_out[split][:2])
            entry[f"{split}_auroc"] = round(auroc(id_scores, ood_scores), 4)
            entry[f"{split}_emotion6_flagged"] = round(float((id_scores > calibration.ood_threshold).mean()), 4)
            entry[f"{split}_generated_flagged"] = round(float((ood_scores > calibration.ood_threshold).mean()), 4)
            labels = np.array([k for k, _ in ood[split]])
            entry[f"{split}_auroc_by_kind"] = {k: round(auroc(id_scores, ood_scores[labels == k]), 4) for k in KINDS}
        result["scores"][kind] = entry
    shipped = energy or maha  # the whole verdict (OOD score, blank rule, low confidence) on the test sets
    verdict = {}
    for name, (logits, features, spread) in (("emotion6_test", (test_logits, test_features, data["test_spread"])),
                                             ("generated_test", ood_out["test"])):
        probs = shipped.probabilities(logits)
        judged = shipped.judge(probs, shipped.ood_scores(logits, features), spread)
        verdict[name] = round(float(np.mean([v["uncertain"] for v in judged])), 4)
        if name == "generated_test":
            labels = np.array([k for k, _ in ood["test"]])
            verdict["generated_test_by_kind"] = {k: round(float(np.mean([v["uncertain"] for v, l in zip(judged, labels)
                                                                         if l == k])), 4) for k in KINDS}
    result["uncertain_share"] = {"calibration": shipped.ood_kind, **verdict}
    result["chosen_by_val_auroc"] = max(result["scores"], key=lambda k: result["scores"][k]["val_auroc"])
    result.update({"seconds": round(time.perf_counter() - started, 1), "machine": "2-core CPU, shared",
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    atomic_write_json(OUT, result)
    print(result)


if __name__ == "__main__":
    main()
