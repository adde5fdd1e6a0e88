"""Issue #30, route "flip / multi-crop test-time averaging": does averaging the shipped recipe's
probabilities over more views of an image than the fit and its mirror image help on Emotion6?

    python benchmarks/scene_tta.py [--final RUN] [--select RUN] [--skf RUNS] [--views 8] [--threads 1]

The recipe (``configs/emoadapt-ier.toml``) encodes every labelled image in ``views`` views —
view 0 the input fit (centre crop), view 1 its mirror image, views 2… seeded random resized crops
(:func:`emoadapt.recipe.features.view_images`; the crops of an 8-view cache begin with the 4-view
cache's two) — and the head trains on views 0–3. The test-time sets compared here, each the mean
of the calibrated softmax over its views (the shipped temperature applied to every pass before
averaging, as :meth:`emoadapt.Predictor.predict_outputs` does):

    fit     view 0                 1 model pass
    flip    views 0, 1             2 passes (what ``emoadapt predict`` ships: ``[output] tta = "flip"``)
    views4  views 0-3              4 passes (the fit, its mirror, the 2 training crops)
    views8  views 0-7              8 passes (when the 8-view feature cache exists)

Everything is out of fold, from the product's own fold heads on its cached branch features (no
re-encoding): the set is chosen on VALIDATION only — select mode (fold k test, fold k+1 validation
of a head trained on the three other folds; ``--select``, trained there by the product's
:func:`emoadapt.recipe.cross_validate` if absent), pooled accuracy over the five validation folds,
ties to fewer passes — then scored in final mode (each fold's head trained on the four others:
``emoadapt train --cv``'s run folder) against ``flip`` in the same folds, paired per fold.
``--skf RUNS`` repeats the test in the issue's StratifiedKFold(5) x seeds 0, 1 folds
(``benchmarks/recipe_skf.py``'s ``RUNS/skf<seed>``). Check: ``flip`` without the temperature
reproduces each run's ``cv.json`` test accuracy fold by fold.

Writes ``benchmarks/results/scenes/tta.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.stats import standard_error  # noqa: E402
from benchmarks.lib.fold_outputs import fold_logits, product_cv, set_probs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "emoadapt-ier.toml"
OUT = ROOT / "benchmarks" / "results" / "scenes" / "tta.json"
SETS = {"fit": (0,), "flip": (0, 1), "views4": (0, 1, 2, 3), "views8": tuple(range(8))}


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean())


def per_fold(folds: dict, labels: np.ndarray, sets: dict, temperature: float, part: str = "test") -> dict:
    """``{set: {fold: accuracy}}`` on each fold's ``part`` images."""
    return {s: {name: accuracy(set_probs(row[f"l_{part}"], views, temperature), labels[row[part]])
                for name, row in folds.items()} for s, views in sets.items()}


def pooled_validation(select: dict, labels: np.ndarray, sets: dict, temperature: float) -> dict[str, float]:
    """Accuracy over the five validation folds pooled (every image once) per set."""
    right = {s: [] for s in sets}
    for row in select.values():
        for s, views in sets.items():
            right[s] += list(set_probs(row["l_val"], views, temperature).argmax(1) == labels[row["val"]])
    return {s: float(np.mean(r)) for s, r in right.items()}


def choose(validation: dict[str, float]) -> str:
    """The best validation set; ties go to the one with fewer passes (SETS order)."""
    return max(validation, key=lambda s: (validation[s], -list(SETS).index(s)))


def paired(acc: dict[str, dict[str, float]], chosen: str, base: str = "flip") -> dict:
    """Per fold ``chosen`` and ``base`` accuracy; the paired difference's mean ± SE."""
    diffs = np.array([acc[chosen][n] - acc[base][n] for n in acc[base]])
    return {base: acc[base], chosen: acc[chosen], f"{base}_mean": float(np.mean(list(acc[base].values()))),
            f"{chosen}_mean": float(np.mean(list(acc[chosen].values()))), "diff_mean": float(diffs.mean()),
            "diff_se": standard_error(diffs), "diffs": diffs.tolist()}


def reproduction_gap(folds: dict, labels: np.ndarray) -> float:
    """Largest |flip without temperature − cv.json test| over the folds (0: the fold heads and views match)."""
    plain = per_fold(folds, labels, {"flip": SETS["flip"]}, 1.0)["flip"]
    return max(abs(plain[n] - row["cv_test"]) for n, row in folds.items())


def run_block(run: Path, features, labels, sets, temperature, chosen) -> dict:
    """A final-mode run folder: per-fold accuracy of every set, the chosen set and every other set
    paired against flip."""
    folds = fold_logits(run, "final", features)
    acc = per_fold(folds, labels, sets, temperature)
    return {"run": str(run), "per_fold": acc, "means": {s: float(np.mean(list(a.values()))) for s, a in acc.items()},
            "chosen_vs_flip": paired(acc, chosen),
            "vs_flip_for_information": {s: {k: v for k, v in paired(acc, s).items() if k.startswith("diff")}
                                        for s in sets if s != "flip"},
            "uncalibrated_means": {s: float(np.mean(list(a.values())))
                                   for s, a in per_fold(folds, labels, sets, 1.0).items()},
            "reproduces_cv_json_max_gap": reproduction_gap(folds, labels)}


def skf_block(recipe, runs: Path, features, labels, sets, temperature, chosen) -> dict:
    """StratifiedKFold(5) x seeds 0, 1 (final mode): every set against flip, the 10 folds paired."""
    out = {}
    for seed in (0, 1):
        run = runs / f"skf{seed}"
        product_cv(replace(recipe, data=replace(recipe.data, folds=str(runs / f"skf{seed}-folds.json"))), run, "final")
        out[f"seed{seed}"] = run_block(run, features, labels, sets, temperature, chosen)
    out["vs_flip"] = {}
    for s in sets:
        if s == "flip":
            continue
        diffs = sum((out[f"seed{seed}"]["vs_flip_for_information"][s]["diffs"] for seed in (0, 1)), [])
        out["vs_flip"][s] = {"diff_mean": float(np.mean(diffs)),
                             "diff_se": float(np.std(diffs, ddof=1) / np.sqrt(len(diffs)))}
    out["means"] = {s: float(np.mean([out[f"seed{seed}"]["means"][s] for seed in (0, 1)])) for s in sets}
    chosen_diffs = sum((out[f"seed{seed}"]["chosen_vs_flip"]["diffs"] for seed in (0, 1)), [])
    out.update(chosen=chosen, diff_mean=float(np.mean(chosen_diffs)),
               diff_se=float(np.std(chosen_diffs, ddof=1) / np.sqrt(len(chosen_diffs))))
    return out


def pass_ms(predictor, size: int, repeats: int = 20) -> dict:
    """Median milliseconds of one model pass (torch, batch 1) of the shipped model: each view is one."""
    import torch

    batch = torch.rand(1, 3, size, size)
    predictor.raw_outputs(batch)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.raw_outputs(batch)
        times.append(time.perf_counter() - started)
    return {"what": f"Predictor.raw_outputs of one {size} px image (torch, batch 1, {repeats} repeats, median); "
                    "a set of n views costs n passes (plus decoding and cropping)",
            "ms_per_pass": round(1000 * float(np.median(times)), 1)}


def load_features(recipe, final: Path, views: int) -> dict:
    """The product's cached features of the labelled images in ``views`` views (encoded if not cached)."""
    return product_cv(replace(recipe, head=replace(recipe.head, views=views)), final, "final")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--final", type=Path, default=ROOT / "runs" / "emoadapt-ier",
                        help="run folder of `emoadapt train --cv` (final-mode fold heads)")
    parser.add_argument("--select", type=Path, default=ROOT / "runs" / "face-evidence" / "select",
                        help="select-mode run folder (cv-select.json; trained there if absent)")
    parser.add_argument("--skf", type=Path, default=None, help="benchmarks/recipe_skf.py's run folder: also test there")
    parser.add_argument("--views", type=int, default=8, help="views of the largest set (its feature cache must exist)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import torch

    from emoadapt.models.registry import DEFAULT_MODEL, get_preset
    from emoadapt.predictor import Predictor
    from emoadapt.recipe import load_recipe

    torch.set_num_threads(args.threads)
    recipe = load_recipe(RECIPE)
    predictor = Predictor(None, runtime="torch", threads=args.threads)
    temperature, sha = predictor.calibration.temperature, get_preset(DEFAULT_MODEL).sha256
    data = load_features(recipe, args.final, args.views)
    features, labels = data["target"], data["target_labels"]
    views = len(data["target"])
    sets = {s: v for s, v in SETS.items() if max(v) < views}
    product_cv(recipe, args.select, "select")
    select = fold_logits(args.select, "select", features)
    validation = pooled_validation(select, labels, sets, temperature)
    chosen = choose(validation)
    result = {"what": "issue #30 test-time averaging: Emotion6 (4 classes) out-of-fold accuracy of the shipped "
                      "recipe's fold heads with the calibrated softmax averaged over 1, 2, 4 or 8 cached views",
              "recipe": str(RECIPE.relative_to(ROOT)), "temperature": temperature, "sets": sets,
              "views_cached": views,
              "notes": "views 0 fit (centre crop), 1 mirror, 2.. seeded random resized crops (views 2-3 are the "
                       "head's training crops; 4-7 unseen in training); temperature applied to every view before "
                       "averaging, as predict does; se = SE of the paired per-fold differences",
              "validation_pooled": validation,
              "validation_uncalibrated_for_information": pooled_validation(select, labels, sets, 1.0),
              "validation_per_fold": per_fold(select, labels, sets, temperature, "val"),
              "chosen": chosen, "select_run": str(args.select),
              "test_folds_json": run_block(args.final, features, labels, sets, temperature, chosen),
              "cost": pass_ms(predictor, recipe.scene.input_size)}
    if args.skf is not None:
        result["test_skf"] = skf_block(recipe, args.skf, features, labels, sets, temperature, chosen)
    write_json(args.out, {**result, **provenance(model=DEFAULT_MODEL, weights_sha256=sha, final_run=str(args.final),
                                                 threads=args.threads)})
    report(result)


def report(result: dict) -> None:
    print("validation " + " ".join(f"{s} {100 * a:.2f}" for s, a in result["validation_pooled"].items()))
    t = result["test_folds_json"]
    p = t["chosen_vs_flip"]
    print(f"chosen {result['chosen']}; test means " + " ".join(f"{s} {100 * a:.2f}" for s, a in t["means"].items()))
    print(f"folds.json paired {result['chosen']} - flip {100 * p['diff_mean']:+.2f} ± {100 * p['diff_se']:.2f}; "
          f"cv.json reproduced within {t['reproduces_cv_json_max_gap']:.4f}")
    print("folds.json vs flip " + " ".join(f"{s} {100 * d['diff_mean']:+.2f} ± {100 * d['diff_se']:.2f}"
                                           for s, d in t["vs_flip_for_information"].items()))
    if "test_skf" in result:
        s = result["test_skf"]
        print(f"skf paired {result['chosen']} - flip {100 * s['diff_mean']:+.2f} ± {100 * s['diff_se']:.2f}; means "
              + " ".join(f"{k} {100 * a:.2f}" for k, a in s["means"].items()))
        print("skf vs flip " + " ".join(f"{k} {100 * d['diff_mean']:+.2f} ± {100 * d['diff_se']:.2f}"
                                        for k, d in s["vs_flip"].items()))
    print(f"{result['cost']['ms_per_pass']} ms per pass")


if __name__ == "__main__":
    main()
