"""Issue #33, route "a smaller explanation input": explain the default model through a copy whose
scene branch runs at fewer pixels, and score the maps on the real model.

    python benchmarks/explain_small_input.py [--sizes 160 128] [--images 30] [--kind scenes|faces] [--split val]

The default model (``emoadapt-ier``, torch) reads its 224 px input with the scene branch at 224 px
and the face branch at 96 px; an explanation (DnCShap, depth 5, both contexts, 124 evaluations)
runs the whole model on every masked image. Here the masked images go through a copy of the model
whose scene branch resizes them to ``size`` px first (the same weights; the branch is fully
convolutional and mean-pooled), which cuts the scene branch's cost by about (size / 224)².
Each map (224 px, the same 32 regions) is then scored by the *real* model's deletion and insertion
curves (:func:`emoadapt.attribution.faithfulness.deletion_insertion`, 20 steps, zero baseline, the
real model's predicted class): if the cheaper copy's maps are as faithful, explanations can run
there. Also: seconds per explanation (torch, ``--threads``), the Spearman correlation of the region
values with the default's, and whether the copy predicts the same class.

Images: every ``len // images``-th image of the Emotion6 validation split (``split.json``) or of
FER2013 PublicTest (``--kind faces``) — validation, since this chooses. Writes
``benchmarks/results/explain/small_input-<kind>.json`` (rows, paired summary, provenance).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.explainers import test_images  # noqa: E402
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.stats import standard_error  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "explain"


def with_scene_size(model: torch.nn.Module, size: int) -> torch.nn.Module:
    """A copy of the FusionNet ``model`` whose scene branch reads its input resized to ``size`` px."""
    small = copy.deepcopy(model)
    branch = small.branches["scene"]
    branch.config = dataclasses.replace(branch.config, input_size=size)
    return small


def probabilities(model: torch.nn.Module):
    """(N, C, H, W) → (N, K) softmax of ``model``'s logits, without gradients."""
    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        return model(x).softmax(1)
    return run


def explain_and_score(name: str, forward, real, x: torch.Tensor, target: int) -> dict:
    """DnCShap of ``forward`` for ``target``, its map scored by the ``real`` model's curves."""
    from emoadapt.attribution import DnCShap
    from emoadapt.attribution.faithfulness import deletion_insertion

    start = time.perf_counter()
    explanation = DnCShap(forward, output="probs").attribute(x, target)
    seconds = time.perf_counter() - start
    curves = deletion_insertion(real, x, explanation.map, target, output="probs")
    return {"name": name, "seconds": seconds, "evaluations": explanation.evaluations,
            "deletion": curves.deletion_auc, "insertion": curves.insertion_auc,
            "values": explanation.values.tolist()}


def spearman(a: list[float], b: list[float]) -> float:
    ranks = [np.argsort(np.argsort(v)) for v in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def paired(rows: list[dict], key: str, name: str) -> dict:
    """Mean ± SE over images of ``name``'s ``key`` minus the default's."""
    diffs = np.array([r[name][key] - r["default"][key] for r in rows])
    return {"mean": float(diffs.mean()), "se": standard_error(diffs) if len(diffs) > 1 else 0.0}


def summarise(rows: list[dict], names: list[str]) -> dict:
    out = {}
    for name in names:
        block = {key: float(np.mean([r[name][key] for r in rows])) for key in ("deletion", "insertion", "seconds")}
        if name != "default":
            block.update(deletion_minus_default=paired(rows, "deletion", name),
                         insertion_minus_default=paired(rows, "insertion", name),
                         time_vs_default=float(np.median([r[name]["seconds"] / r["default"]["seconds"] for r in rows])),
                         spearman_with_default=float(np.mean([r[name]["spearman"] for r in rows])),
                         same_class=float(np.mean([r[name]["same_class"] for r in rows])))
        out[name] = block
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 128], help="scene-branch sizes to try (px)")
    parser.add_argument("--images", type=int, default=30, help="validation images")
    parser.add_argument("--kind", default="scenes", choices=("scenes", "faces"), help="Emotion6 scenes or FER2013 faces")
    parser.add_argument("--split", default="val", choices=("val", "test"), help="val chooses; test reports")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=None, help="default: results/explain/small_input-<kind>.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tqdm import tqdm

    from emoadapt.api import Predictor
    from emoadapt.models.registry import DEFAULT_MODEL, get_preset

    predictor = Predictor(DEFAULT_MODEL, runtime="torch")
    real = probabilities(predictor.model)
    variants = {"default": real, **{f"scene {s} px": probabilities(with_scene_size(predictor.model, s))
                                    for s in args.sizes}}
    rows = []
    for path in tqdm(test_images(DEFAULT_MODEL, args.images, args.split, args.kind), desc="images"):
        x = predictor.preprocess(path)
        target = int(real(x[None]).argmax(1))
        row = {"image": Path(path).name, "target": target}
        for name, forward in variants.items():
            row[name] = explain_and_score(name, forward, real, x, target)
            row[name]["same_class"] = int(forward(x[None]).argmax(1)) == target
        for name in variants:
            row[name]["spearman"] = spearman(row[name]["values"], row["default"]["values"])
        rows.append(row)
    summary = summarise(rows, list(variants))
    for name, block in summary.items():
        print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in block.items()})
    out = args.out or OUT / f"small_input-{args.kind}.json"
    write_json(out, {"what": "DnCShap (depth 5, both contexts) through a copy of the default whose scene branch "
                             "reads fewer pixels; maps scored by the real model's deletion/insertion curves",
                     "kind": args.kind, "split": args.split, "summary": summary, "rows": rows,
                     **provenance(model=DEFAULT_MODEL, weights_sha256=get_preset(DEFAULT_MODEL).sha256,
                                  threads=args.threads)})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
