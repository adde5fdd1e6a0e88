"""Issue #30, route "face evidence for whole-image predictions": do the faces found in an Emotion6
image, read by the shipped model's face branch, improve the whole-image prediction when mixed in?

    python benchmarks/scene_face_evidence.py faces [--threads 1]          # detect + read faces (cached)
    python benchmarks/scene_face_evidence.py evaluate [--final RUN] [--skf RUNS] [--threads 1]

``faces``: :meth:`emoadapt.Predictor.read_faces` of the default model (``emoadapt-ier``: OpenCV
Haar cascade, each face crop through the FER face branch, flip-averaged, the 7 expressions mapped
onto the 4 classes) on the 1,056 four-class Emotion6 images; per image the boxes, scores and
4-class probabilities, cached in ``<face cache>/emotion6-<weights sha[:12]>.json`` (not committed).

``evaluate``: the whole-image probabilities are out of fold, from the product's own CV
(:func:`emoadapt.recipe.cross_validate` of ``configs/emoadapt-ier.toml``; the cached branch
features of the input fit and its mirror image, the fold head, the shipped temperature, the two
views' softmax averaged — what ``emoadapt predict`` returns for a model trained without that fold).
For an image with at least one face read, ``p_face`` is the faces' probabilities weighted by face
area (or the largest face alone) and

    log-linear  p = normalise(p_scene^(1-w) * p_face^w)
    linear      p = (1-w) p_scene + w p_face

The variant and w (0, 0.1 … 0.9) are chosen on VALIDATION only: select mode (fold k test, fold
k+1 validation of a head trained on the three other folds; heads trained into
``runs/face-evidence/select``), the pooled accuracy over the five validation folds. The chosen
setting is then scored in final mode (each fold's head trained on the four others: the run folder
of ``emoadapt train --cv``, default ``runs/emoadapt-ier``) against the plain model in the same
folds, paired per fold. ``--skf RUNS`` repeats the test in the issue's StratifiedKFold(5) x seeds
0, 1 folds (``benchmarks/recipe_skf.py``'s run folders ``RUNS/skf<seed>``), with the setting chosen
on folds.json's validation folds.

Branch features come from the product's feature cache (``$EMOADAPT_CACHE/features``).
Writes ``benchmarks/results/scenes/face-evidence.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.fold_outputs import fold_logits, product_cv, set_probs, softmax  # noqa: E402
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.stats import standard_error  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "emoadapt-ier.toml"
RUNS = ROOT / "runs" / "face-evidence"
OUT = ROOT / "benchmarks" / "results" / "scenes" / "face-evidence.json"
WEIGHTS = tuple(round(0.1 * i, 1) for i in range(10))
VARIANTS = ("loglinear/area", "loglinear/largest", "linear/area", "linear/largest")
FLIP = (0, 1)  # the input fit and its mirror image


# ---------------------------------------------------------------- faces


def face_cache_file(cache: Path, sha: str) -> Path:
    return cache / f"emotion6-{sha[:12]}.json"


def read_all_faces(dataset, predictor, cache_file: Path, save_every: int = 50) -> dict[str, dict]:
    """``{sample key: {"faces": [{"box", "score", "probs"}], "skipped_small", "seconds"}}`` of every
    image of ``dataset`` through ``predictor.read_faces`` (resumed from ``cache_file``)."""
    from emoadapt.recipe.inputs import sample_keys

    done = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    keys = sample_keys(dataset)
    todo = [(k, s) for k, s in zip(keys, dataset.samples) if k not in done]
    for n, (key, sample) in enumerate(todo, 1):
        done[key] = read_one(predictor, sample.path)
        if n % save_every == 0 or n == len(todo):
            write_json(cache_file, done)
            print(f"[faces] {len(done)}/{len(keys)}", flush=True)
    return {k: done[k] for k in keys}


def read_one(predictor, path: str) -> dict:
    """One image's faces as :meth:`Predictor.read_faces` reports them (decoding excluded from the time)."""
    from emoadapt.predictor import to_pil

    picture = to_pil(path)
    started = time.perf_counter()
    result = predictor.read_faces(picture)
    seconds = time.perf_counter() - started
    faces = [{"box": f["box"], "score": f["score"], "probs": [f["emotion"][c] for c in predictor.classes]}
             for f in result["faces"]]
    return {"faces": faces, "skipped_small": result["skipped_small"], "size": list(picture.size),
            "seconds": round(seconds, 4)}


def face_probs(faces: list[dict], how: str) -> np.ndarray | None:
    """(K,) face evidence of one image: the area-weighted mean of its faces' probabilities
    (``area``) or the largest face's (``largest``); ``None`` without faces."""
    if not faces:
        return None
    probs = np.array([f["probs"] for f in faces], dtype=np.float64)
    areas = np.array([f["box"][2] * f["box"][3] for f in faces], dtype=np.float64)
    if how == "largest":
        return probs[int(np.argmax(areas))]
    return (areas[:, None] * probs).sum(0) / areas.sum()


def face_matrix(faces_of: list[dict], how: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) face evidence (rows of images without faces: uniform) and the (N,) has-face mask."""
    rows = [face_probs(f["faces"], how) for f in faces_of]
    has = np.array([r is not None for r in rows])
    return np.stack([r if r is not None else np.full(k, 1.0 / k) for r in rows]), has


# ---------------------------------------------------------------- whole-image probabilities


def flip_probs(folds: dict[str, dict], temperature: float) -> dict[str, dict[str, np.ndarray]]:
    """``{fold: {"test", "p_test"[, "val", "p_val"]}}``: :func:`fold_logits`' folds with each part's
    calibrated flip average (views 0, 1: what ``emoadapt predict`` returns with ``tta = "flip"``)."""
    out = {}
    for name, row in folds.items():
        out[name] = {"test": row["test"], "p_test": set_probs(row["l_test"], FLIP, temperature)}
        if "val" in row:
            out[name].update(val=row["val"], p_val=set_probs(row["l_val"], FLIP, temperature))
    return out


# ---------------------------------------------------------------- mixing and scores


def mix(p_scene: np.ndarray, p_face: np.ndarray, has: np.ndarray, w: float, rule: str) -> np.ndarray:
    """Whole-image probabilities with face evidence mixed in where ``has`` (others unchanged)."""
    if rule == "linear":
        mixed = (1 - w) * p_scene + w * p_face
    else:
        logp = (1 - w) * np.log(np.clip(p_scene, 1e-12, None)) + w * np.log(np.clip(p_face, 1e-12, None))
        mixed = softmax(logp)
    return np.where(has[:, None], mixed, p_scene)


def setting_accuracy(p_scene, faces_of, labels, variant: str, w: float) -> float:
    rule, how = variant.split("/")
    p_face, has = face_matrix(faces_of, how, p_scene.shape[1])
    return float((mix(p_scene, p_face, has, w, rule).argmax(1) == labels).mean())


def validation_grid(select: dict, faces: list[dict], labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Pooled validation accuracy (every image once, as fold k+1's validation) per variant and w."""
    val = np.concatenate([row["val"] for row in select.values()])
    p_val = np.concatenate([row["p_val"] for row in select.values()])
    faces_val = [faces[i] for i in val]
    return {v: {str(w): setting_accuracy(p_val, faces_val, labels[val], v, w) for w in WEIGHTS} for v in VARIANTS}


def choose(grid: dict[str, dict[str, float]]) -> tuple[str, float, float]:
    """The best validation setting; ties go to the smaller w, then the earlier variant."""
    best = max(((acc, -float(w), -VARIANTS.index(v), v) for v, row in grid.items() for w, acc in row.items()))
    return best[3], -best[1], best[0]


def paired_test(final: dict, faces: list[dict], labels: np.ndarray, variant: str, w: float) -> dict:
    """Per fold: plain and with-faces test accuracy; the paired difference's mean ± SE."""
    plain, mixed = {}, {}
    for name, row in final.items():
        y, fl = labels[row["test"]], [faces[i] for i in row["test"]]
        plain[name] = setting_accuracy(row["p_test"], fl, y, variant, 0.0)
        mixed[name] = setting_accuracy(row["p_test"], fl, y, variant, w)
    diffs = np.array([mixed[n] - plain[n] for n in final])
    return {"plain": plain, "with_faces": mixed, "plain_mean": float(np.mean(list(plain.values()))),
            "with_faces_mean": float(np.mean(list(mixed.values()))), "diff_mean": float(diffs.mean()),
            "diff_se": standard_error(diffs),
            "images_changed": int(sum(changed(row, faces, variant, w) for row in final.values()))}


def changed(row: dict, faces: list[dict], variant: str, w: float) -> int:
    rule, how = variant.split("/")
    p_face, has = face_matrix([faces[i] for i in row["test"]], how, row["p_test"].shape[1])
    return int((mix(row["p_test"], p_face, has, w, rule).argmax(1) != row["p_test"].argmax(1)).sum())


def face_counts(faces: list[dict], labels: np.ndarray, classes, final: dict) -> dict:
    """How many images have a face read (overall, per class), the faces' own accuracy there, and
    the plain model's out-of-fold accuracy with and without faces."""
    has = np.array([bool(f["faces"]) for f in faces])
    p = np.zeros((len(labels), len(classes)))
    for row in final.values():
        p[row["test"]] = row["p_test"]
    right = p.argmax(1) == labels
    out = {"images": int(len(labels)), "with_face": int(has.sum()),
           "faces_read": int(sum(len(f["faces"]) for f in faces)),
           "per_class": {c: {"images": int((labels == i).sum()), "with_face": int((has & (labels == i)).sum())}
                         for i, c in enumerate(classes)},
           "plain_accuracy_with_face": float(right[has].mean()),
           "plain_accuracy_without_face": float(right[~has].mean()),
           "plain_accuracy_all": float(right.mean()),
           "ceiling_images": int((has & ~right).sum())}  # plain errors that face evidence could at best fix
    for how in ("area", "largest"):
        p_face, _ = face_matrix(faces, how, len(classes))
        out[f"face_accuracy_{how}"] = float((p_face[has].argmax(1) == labels[has]).mean())
    return out


# ---------------------------------------------------------------- commands


def faces_command(args) -> None:
    from emoadapt.models.registry import DEFAULT_MODEL, get_preset
    from emoadapt.predictor import Predictor
    from emoadapt.recipe import load_recipe
    from emoadapt.recipe.inputs import target_dataset

    dataset, _ = target_dataset(load_recipe(RECIPE))
    predictor = Predictor(None, runtime="torch", threads=args.threads)
    cache = face_cache_file(args.face_cache, get_preset(DEFAULT_MODEL).sha256)
    faces = read_all_faces(dataset, predictor, cache)
    seconds = np.array([f["seconds"] for f in faces.values()])
    print(f"{sum(bool(f['faces']) for f in faces.values())}/{len(faces)} images with a face; "
          f"{1000 * seconds.mean():.0f} ms/image (median {1000 * np.median(seconds):.0f})")


def evaluate_command(args) -> None:
    from emoadapt.models.registry import DEFAULT_MODEL, get_preset
    from emoadapt.predictor import Predictor
    from emoadapt.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    sha = get_preset(DEFAULT_MODEL).sha256
    predictor = Predictor(None, runtime="torch", threads=args.threads)
    temperature = predictor.calibration.temperature
    stored = json.loads(face_cache_file(args.face_cache, sha).read_text())
    data = product_cv(recipe, args.final, "final")
    faces = [stored[k] for k in data["keys"]]
    labels, classes = data["target_labels"], predictor.classes
    final = flip_probs(fold_logits(args.final, "final", data["target"]), temperature)
    product_cv(recipe, RUNS / "select", "select")
    select = flip_probs(fold_logits(RUNS / "select", "select", data["target"]), temperature)
    grid = validation_grid(select, faces, labels)
    variant, w, val_acc = choose(grid)
    test = paired_test(final, faces, labels, variant, w)
    result = {"what": "issue #30 face evidence: Emotion6 (folds.json) whole-image out-of-fold probabilities of the "
                      "shipped recipe mixed with the face branch's reading of the faces found (Predictor.read_faces)",
              "recipe": str(RECIPE.relative_to(ROOT)), "temperature": temperature,
              "rules": {"loglinear": "normalise(p_scene^(1-w) p_face^w)", "linear": "(1-w) p_scene + w p_face",
                        "area": "faces' probabilities weighted by box area", "largest": "the largest face alone",
                        "no face": "p_scene unchanged"},
              "notes": "plain = the calibrated flip average predict returns (shipped temperature before averaging "
                       "the views); cv.json's test score averages the uncalibrated views, 1 image apart in folds.json. "
                       "area and largest differ only where an image has 2+ faces.",
              "counts": face_counts(faces, labels, classes, final), "timing": timing(stored, data["keys"]),
              "validation_grid": grid, "validation_plain": grid[VARIANTS[0]]["0.0"],
              "chosen": {"variant": variant, "w": w, "validation_accuracy": val_acc},
              "test_folds_json": test,
              "test_grid_for_information": {v: {str(x): paired_test(final, faces, labels, v, x)["with_faces_mean"]
                                                for x in WEIGHTS} for v in VARIANTS}}
    if args.skf is not None:
        result["test_skf"] = skf_tests(recipe, args.skf, faces, labels, temperature, variant, w)
    write_json(args.out, {**result, **provenance(model=DEFAULT_MODEL, weights_sha256=sha, final_run=str(args.final),
                                                 threads=args.threads)})
    report(result)


def skf_tests(recipe, runs: Path, faces, labels, temperature, variant, w) -> dict:
    """The chosen setting against the plain model in StratifiedKFold(5) x seeds 0, 1 (final mode)."""
    out, diffs = {}, []
    for seed in (0, 1):
        run = runs / f"skf{seed}"
        seeded = replace(recipe, data=replace(recipe.data, folds=str(runs / f"skf{seed}-folds.json")))
        data = product_cv(seeded, run, "final")
        final = flip_probs(fold_logits(run, "final", data["target"]), temperature)
        out[f"seed{seed}"] = paired_test(final, faces, labels, variant, w)
        diffs += [out[f"seed{seed}"]["with_faces"][n] - out[f"seed{seed}"]["plain"][n] for n in final]
    out.update(diff_mean=float(np.mean(diffs)), diff_se=float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))))
    return out


def timing(stored: dict, keys: list[str]) -> dict:
    seconds = np.array([stored[k]["seconds"] for k in keys])
    return {"what": "Predictor.read_faces per image (detection + reading, decoding excluded), 1 torch thread",
            "mean_ms": round(1000 * float(seconds.mean()), 1), "median_ms": round(1000 * float(np.median(seconds)), 1),
            "p95_ms": round(1000 * float(np.quantile(seconds, 0.95)), 1)}


def report(result: dict) -> None:
    c, t = result["counts"], result["test_folds_json"]
    print(f"faces in {c['with_face']}/{c['images']} images; plain {100 * c['plain_accuracy_with_face']:.1f} with, "
          f"{100 * c['plain_accuracy_without_face']:.1f} without; faces alone {100 * c['face_accuracy_area']:.1f}")
    for v, row in result["validation_grid"].items():
        print(f"val {v:18s} " + " ".join(f"{100 * a:.1f}" for a in row.values()))
    print(f"chosen {result['chosen']}; test plain {100 * t['plain_mean']:.2f} -> {100 * t['with_faces_mean']:.2f} "
          f"(paired {100 * t['diff_mean']:+.2f} ± {100 * t['diff_se']:.2f})")
    if "test_skf" in result:
        s = result["test_skf"]
        print(f"skf paired {100 * s['diff_mean']:+.2f} ± {100 * s['diff_se']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("faces", "evaluate"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--face-cache", type=Path, default=None,
                        help="folder of the per-image face results (default $EMOADAPT_CACHE/face-evidence)")
    parser.add_argument("--final", type=Path, default=ROOT / "runs" / "emoadapt-ier",
                        help="run folder of `emoadapt train --cv` (final-mode fold heads; trained there if absent)")
    parser.add_argument("--skf", type=Path, default=None,
                        help="benchmarks/recipe_skf.py's run folder (skf<seed>, skf<seed>-folds.json): also test there")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import torch

    from emoadapt.data.arrays import DEFAULT_CACHE

    torch.set_num_threads(args.threads)
    args.face_cache = args.face_cache or DEFAULT_CACHE / "face-evidence"
    (faces_command if args.command == "faces" else evaluate_command)(args)


if __name__ == "__main__":
    main()
