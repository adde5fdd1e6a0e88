"""How far DnCShap's region scores are from the exact Owen values of the same partition tree.

    python benchmarks/explain_owen.py [--images 5] [--depths 3,4,5]

The exact Owen value of a leaf of a binary tree of depth T is the mean, over the 2**T unions S of
its ancestors' siblings, of v(S ∪ leaf) − v(S) (every coalition value computed once). For each
shipped model (onnxruntime, one thread; FER2013 PublicTest faces and Emotion6 val images), each
depth and each DnCShap context, prints the relative L2 error ‖φ − φ_Owen‖ / ‖φ_Owen‖ and the Spearman
correlation of the two rankings (means over images), and writes ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explainers import Model, test_images  # noqa: E402

from emoadapt.attribution import DnCShap, build_partition  # noqa: E402
from emoadapt.fileio import atomic_write_json  # noqa: E402


def exact_owen(m: Model, x: torch.Tensor, target: int, depth: int) -> np.ndarray:
    part = build_partition(m.size, m.size, depth)
    coalitions: dict[frozenset, None] = {}
    plans = []
    for leaf in range(2 ** depth):
        siblings = [(d, (leaf >> (depth - d)) ^ 1) for d in range(1, depth + 1)]
        for chosen in itertools.product([False, True], repeat=depth):
            s = frozenset(n for n, c in zip(siblings, chosen) if c)
            plans.append((leaf, s, s | {(depth, leaf)}))
            coalitions[s] = coalitions[s | {(depth, leaf)}] = None
    keys = list(coalitions)
    images = np.zeros((len(keys), *x.shape), dtype=np.float32)
    xs = x.numpy()
    for k, s in enumerate(keys):
        for d, i in s:
            t, l, b, r = part.levels[d][i]
            images[k, :, t:b, l:r] = xs[:, t:b, l:r]
    values = dict(zip(keys, m.probs(images)[:, target]))
    phi = np.zeros(2 ** depth)
    for leaf, without, with_leaf in plans:
        phi[leaf] += (values[with_leaf] - values[without]) / 2 ** depth
    return phi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="fer-cpu,emoadapt-ier")
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--depths", default="3,4,5")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "explain_owen.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from scipy.stats import spearmanr

    rows = []
    for name in args.models.split(","):
        m = Model(name)
        for path in test_images(name, args.images, "val"):
            x = m.predictor.preprocess(path)
            target = int(np.argmax(m.probs(x[None])[0]))
            for depth in map(int, args.depths.split(",")):
                owen = exact_owen(m, x, target, depth)
                for label, options in (("both", {"context": "both"}), ("present", {"context": "present"}),
                                       ("absent", {"context": "absent"}), ("reference", {"variant": "reference"})):
                    phi = DnCShap(m.probs, depth=depth, output="probs", **options).attribute(x, target).values
                    rows.append({"model": name, "image": str(path), "depth": depth, "method": label,
                                 "relative_l2": float(np.linalg.norm(phi - owen) / np.linalg.norm(owen)),
                                 "spearman": float(spearmanr(phi, owen).statistic)})
    print("| model | depth | DnCShap | relative L2 to Owen | Spearman with Owen | n |\n|---|---|---|---|---|---|")
    summary = []
    for key in sorted({(r["model"], r["depth"], r["method"]) for r in rows}):
        sel = [r for r in rows if (r["model"], r["depth"], r["method"]) == key]
        entry = {"model": key[0], "depth": key[1], "method": key[2], "n": len(sel),
                 "relative_l2": float(np.mean([r["relative_l2"] for r in sel])),
                 "spearman": float(np.mean([r["spearman"] for r in sel]))}
        summary.append(entry)
        print(f"| {key[0]} | {key[1]} | {key[2]} | {entry['relative_l2']:.3f} | {entry['spearman']:.3f} | {len(sel)} |")
    atomic_write_json(Path(args.out), {"summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
