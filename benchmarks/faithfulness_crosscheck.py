"""Cross-check of our deletion curve (``emoadapt.attribution.faithfulness``) against an outside
implementation: Quantus's ``RegionPerturbation`` (most relevant first, baseline 0 like ours — Quantus's
"black" is the image's minimum, not 0).

    pip install --no-deps quantus==0.6.0   # not a dependency of emoadapt; --no-deps: its own
                                           # opencv-python would shadow our opencv-python-headless
                                           # and break the face detector's cascade
    python benchmarks/faithfulness_crosscheck.py [--model emoadapt-ier] [--images 6]

How the two are made to measure the same thing: DnCShap at depth 6 on a 160 px model gives an
8 × 8 grid of 20 px regions, each region's score spread evenly over its pixels. Our deletion curve
with ``steps = 64`` then deletes exactly one region per step (400 of 25,600 pixels), in the order
of the map; Quantus with ``patch_size = 20`` and ``regions_evaluation = 64`` removes the same
patches (filled with 0.0) in the order of their summed attribution and reports ``p(x) − p(x with k patches
removed)``. Quantus's patches slide with stride 1 and are taken greedily without overlap, so
its first patch is always our top region (the map is constant on regions), and its later ones
follow our grid only when every greedy pick lands on a region: ``p(x) − quantus[0]`` must equal
our ``deletion[1]`` on every image, and the whole curves agree where the picks stay aligned. Images: the bundled public-domain samples (no dataset needed).
Prints a table (first-step and whole-curve differences); writes nothing.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="emoadapt-ier", help="a shipped model name or .safetensors file")
    parser.add_argument("--images", type=int, default=6, help="how many bundled samples (default 6)")
    args = parser.parse_args()

    import quantus

    from emoadapt.api import Predictor
    from emoadapt.attribution.faithfulness import deletion_insertion

    torch.set_num_threads(2)
    predictor = Predictor(args.model, runtime="torch")
    model = predictor.model.eval()
    size, grid = predictor.input_size, 8
    if size % grid:
        raise SystemExit(f"the input size {size} is not a multiple of {grid}")
    samples = sorted(Path(str(resources.files("emoadapt") / "samples")).glob("*.jpg"))[:args.images]
    explainer = predictor.explainer(depth=6, baseline="zero")

    def probabilities(batch: torch.Tensor) -> torch.Tensor:  # the same function for both sides
        return model(batch).softmax(1)

    worst, rows = 0.0, []
    for path in samples:
        image = predictor.preprocess(path)
        explanation = explainer.attribute(image)
        target = explanation.target
        ours = deletion_insertion(probabilities, image, explanation.map, target, baseline="zero", steps=grid * grid)
        metric = quantus.RegionPerturbation(patch_size=size // grid, order="morf", regions_evaluation=grid * grid,
                                            perturb_baseline=0.0, normalise=False, abs=False,
                                            disable_warnings=True, display_progressbar=False)
        curve = metric(model=model, x_batch=image[None].numpy(), y_batch=np.array([target]),
                       a_batch=explanation.map[None, None].astype(np.float32), channel_first=True, softmax=True,
                       device="cpu")[0]
        theirs = ours.deletion[0] - np.asarray(curve, dtype=np.float64)
        n = min(len(theirs), len(ours.deletion) - 1)
        difference = float(np.max(np.abs(theirs[:n] - ours.deletion[1:n + 1])))
        first = float(abs(theirs[0] - ours.deletion[1]))  # both remove the top region first
        worst = max(worst, first)
        scores = explanation.map.reshape(grid, size // grid, grid, size // grid).sum(axis=(1, 3)).ravel()
        tied = len(scores) - len(np.unique(np.round(scores, 12)))
        rows.append((path.name, n, ours.deletion_auc, first, difference, tied))
    print("| image | steps | our deletion AUC | |Δ| first step | max |Δ| whole curve | regions tied |")
    print("|---|---|---|---|---|---|")
    for name, n, auc, first, difference, tied in rows:
        print(f"| {name} | {n} | {auc:.4f} | {first:.2e} | {difference:.2e} | {tied} |")
    print(f"largest first-step difference over {len(rows)} images: {worst:.2e}")


if __name__ == "__main__":
    main()
