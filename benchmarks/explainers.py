"""DnCShap against the explainers people already use, at equal numbers of model evaluations.

    pip install -e '.[onnx,bench]'      # shap, captum, lime: benchmark only, not in the core install
    python benchmarks/explainers.py [--quick] [--models emoadapt-ier,fer-cpu] [--images 100] [--split test]

For each shipped model (onnxruntime, one thread) and each test image — the Emotion6 test split of
``benchmarks/results/adaptation/split.json`` for the IER model, FER2013 PrivateTest faces for the
FER model — every method explains the model's predicted class with a budget of model evaluations,
and its map is scored by the project's deletion and insertion curves
(:mod:`emoadapt.attribution.faithfulness`: 20 steps, zero baseline, the same code for every method).
Methods that work on regions get DnCShap's own 8 × 8 partition (depth 6, 64 regions): shap
Partition/Exact get its tree as their clustering, captum KernelShap/Lime/FeatureAblation and the
``lime`` package its leaves as features; Occlusion uses windows of the leaves' size.

Writes ``--out`` (JSON: every image × method, the summary, machine and date), prints a markdown
table (means ± standard errors; DnCShap minus shap Partition paired per image; time per
explanation as a ratio to DnCShap's default) and draws ``explainers_auc.png`` (AUC vs evaluations),
``explainers_time.png`` (time vs evaluations) and ``explainers_overlays_<model>.png`` beside the JSON
(every method side by side; on the bundled public-domain samples unless ``--overlays test``).
``--sanity N`` adds the model-randomisation check on N images (Spearman correlation of the region
ranking before and after re-initialising every layer; near 0 is what a faithful method gives).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from emoadapt.attribution.faithfulness import deletion_insertion
from emoadapt.fileio import atomic_write_json
from emoadapt.models.registry import get_preset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance  # noqa: E402
from benchmarks.lib.stats import standard_error  # noqa: E402
from benchmarks.lib.explain_methods import (ALL_BUDGETS, BUDGETS, DEFAULT, METHODS, PEER,  # noqa: E402
                                            VARIANTS, Model, region_tree)
HERE = Path(__file__).resolve().parent


# --- the run --------------------------------------------------------------------------------

def sample_images(count: int) -> list[str]:
    """The first ``count`` bundled public-domain samples (figures that may be committed and shown;
    dataset images are research-only)."""
    from importlib import resources

    return [str(p) for p in sorted(Path(str(resources.files("emoadapt") / "samples")).glob("*.jpg"))[:count]]


def test_images(model: str, count: int, split: str, kind: str = "auto") -> list[str]:
    """Every ``len // count``-th image of the split, so the classes are all present: FER2013 faces
    (``kind`` "faces", or "auto" for a fer-* model) or Emotion6 scenes (split.json)."""
    from emoadapt.data import open_dataset
    from emoadapt.data.locate import dataset_path
    from emoadapt.data.splits import select_splits

    if kind == "faces" or (kind == "auto" and model.startswith("fer")):
        name = {"test": "PrivateTest", "val": "PublicTest"}[split]
        paths = [s.path for s in open_dataset(dataset_path("fer2013"), "fer2013").split(name).samples]
    else:
        manifest = HERE / "results" / "adaptation" / "split.json"
        paths = [s.path for s in select_splits(open_dataset(dataset_path("emotion6"), "emotion6"), manifest,
                                               [split]).samples]
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def run_model(name: str, paths: list[str], methods: dict, budgets: tuple[int, ...], peer_images: int,
              budget_images: int, exact_images: int, checkpoint=None) -> list[dict]:
    """Every image: DnCShap and shap Partition at 128; the first ``peer_images``: every method at
    128 (or its own cost); the first ``budget_images``: :data:`ALL_BUDGETS` at every budget; the
    first ``exact_images``: exact Owen values."""
    from tqdm import tqdm

    m = Model(name)
    tree = region_tree(m.size)
    rows = []
    for index, path in enumerate(tqdm(paths, desc=name, unit="img")):
        x = m.predictor.preprocess(path)
        target = int(np.argmax(m.probs(x[None])[0]))
        for method, (function, own_budgets) in methods.items():
            if index >= peer_images and method not in (DEFAULT, PEER):
                continue
            if method == "shap Exact (Owen)" and index >= exact_images:
                continue
            chosen = budgets if index < budget_images and method in ALL_BUDGETS else [b for b in budgets if b == 128]
            for budget in ([None] if own_budgets is None else [b for b in own_budgets if b in chosen]):
                m.evaluations = 0
                start = time.perf_counter()
                attribution = function(m, x, target, budget or 128, tree)
                seconds, evaluations = time.perf_counter() - start, m.evaluations
                curves = deletion_insertion(m.probs, x, np.asarray(attribution, dtype=np.float64), target,
                                            output="probs", steps=20)
                rows.append({"model": name, "image": str(path), "index": index, "method": method, "budget": budget,
                             "evaluations": evaluations, "seconds": seconds, "deletion": curves.deletion_auc,
                             "insertion": curves.insertion_auc, "target": target,
                             "all_zero": bool(np.all(np.asarray(attribution) == 0))})
        if checkpoint is not None:
            checkpoint(rows)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean ± SE per (model, method, budget); paired differences to shap Partition and to DnCShap's
    default (fp32) at the same budget;
    time as a ratio to DnCShap's default at the same budget (128 for fixed-cost methods)."""
    out = []
    keys = sorted({(r["model"], r["method"], r["budget"] or 0) for r in rows}, key=lambda k: (k[0], k[2], k[1]))
    by = {(r["model"], r["method"], r["budget"] or 0, r["index"]): r for r in rows}
    for model, method, budget in keys:
        mine = [r for r in rows if (r["model"], r["method"], r["budget"] or 0) == (model, method, budget)]
        entry = {"model": model, "method": method, "budget": budget or None, "n": len(mine)}
        for field in ("deletion", "insertion", "evaluations", "seconds"):
            values = np.array([r[field] for r in mine], dtype=np.float64)
            entry[field] = float(values.mean())
            entry[field + "_se"] = standard_error(values) if len(values) > 1 else None
        entry["all_zero_maps"] = sum(r["all_zero"] for r in mine)
        peer_budget = budget or 128
        pairs = [(r, by.get((model, PEER, peer_budget, r["index"])), by.get((model, DEFAULT, peer_budget, r["index"])))
                 for r in mine]
        for field in ("deletion", "insertion"):
            diffs = np.array([r[field] - p[field] for r, p, _ in pairs if p is not None])
            if len(diffs) > 1 and method != PEER:
                entry[f"{field}_minus_shap"] = float(diffs.mean())
                entry[f"{field}_minus_shap_se"] = standard_error(diffs)
            diffs = np.array([r[field] - d[field] for r, _, d in pairs if d is not None])
            if len(diffs) > 1 and method != DEFAULT:  # e.g. a variant against the fp32 default
                entry[f"{field}_minus_dncshap"] = float(diffs.mean())
                entry[f"{field}_minus_dncshap_se"] = standard_error(diffs)
        ratios = [r["seconds"] / d["seconds"] for r, _, d in pairs if d is not None]
        entry["time_vs_dncshap"] = float(np.median(ratios)) if ratios else None
        out.append(entry)
    return out


def table(summary: list[dict]) -> str:
    def pm(e, f, digits=3):
        se = e.get(f + "_se")
        return f"{e[f]:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None else "")

    lines = ["| model | method | budget | evaluations | n | deletion AUC ↓ | insertion AUC ↑ | "
             "del − shap (paired) | ins − shap (paired) | s / explanation | time ÷ DnCShap |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in summary:
        diff = lambda f: pm(e, f"{f}_minus_shap") if f"{f}_minus_shap" in e else "—"
        ratio = f"{e['time_vs_dncshap']:.2f}" if e["time_vs_dncshap"] is not None else "—"
        lines.append(f"| {e['model']} | {e['method']} | {e['budget'] or '—'} | {e['evaluations']:.0f} | {e['n']} | "
                     f"{pm(e, 'deletion')} | {pm(e, 'insertion')} | {diff('deletion')} | {diff('insertion')} | "
                     f"{e['seconds']:.3f} | {ratio} |")
    return "\n".join(lines)


def plots(summary: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({e["model"] for e in summary})
    for kind, fields in (("auc", ("deletion", "insertion")), ("time", ("seconds",))):
        fig, axes = plt.subplots(len(fields), len(models), figsize=(5.5 * len(models), 4 * len(fields)), squeeze=False)
        for col, model in enumerate(models):
            for row, field in enumerate(fields):
                ax = axes[row, col]
                for method in sorted({e["method"] for e in summary if e["model"] == model}):
                    pts = sorted((e["evaluations"], e[field]) for e in summary if (e["model"], e["method"]) == (model, method))
                    style = "-o" if len(pts) > 1 else "s"
                    ax.plot(*zip(*pts), style, label=method, lw=2.5 if method == DEFAULT else 1)
                ax.set_xscale("log")
                ax.set_title(f"{model}: {field}{' AUC' if kind == 'auc' else ' per explanation'}")
                ax.set_xlabel("model evaluations")
        axes[0, -1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out.with_name(f"{out.stem}_{kind}.png"), dpi=90)
        plt.close(fig)


def overlays(name: str, paths: list[str], methods: dict, out: Path) -> None:
    """All methods at 128 evaluations side by side on the first images (positive part, 70th percentile)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = Model(name)
    tree = region_tree(m.size)
    names = [k for k in methods if k != "shap Exact (Owen)"]
    fig, axes = plt.subplots(len(paths), len(names) + 1, figsize=(1.6 * (len(names) + 1), 1.8 * len(paths)),
                             squeeze=False)
    for row, path in enumerate(paths):
        x = m.predictor.preprocess(path)
        target = int(np.argmax(m.probs(x[None])[0]))
        shown = x.numpy().transpose(1, 2, 0).squeeze()
        axes[row, 0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        axes[row, 0].set_title(m.predictor.classes[target], fontsize=7)
        for col, method in enumerate(names, 1):
            a = np.asarray(methods[method][0](m, x, target, 128, tree), dtype=np.float64)
            keep = (a >= np.percentile(np.abs(a), 70)) & (a > 0)
            axes[row, col].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
            axes[row, col].imshow(np.where(keep, a, np.nan), cmap="seismic", alpha=0.4,
                                  vmin=-np.abs(a).max(), vmax=np.abs(a).max())
            if row == 0:
                axes[row, col].set_title(method.replace("captum ", ""), fontsize=6)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out.with_name(f"{out.stem}_overlays_{name}.png"), dpi=90)
    plt.close(fig)


def sanity(name: str, paths: list[str], methods: dict) -> list[dict]:
    """Model randomisation (Adebayo et al., 2018): Spearman correlation of the 64 region scores of the
    trained and a re-initialised model (torch runtime for both)."""
    from scipy.stats import spearmanr

    results = []
    m = Model(name)
    tree = region_tree(m.size)
    trained = m.predictor.model
    torch.manual_seed(0)
    scrambled = type(trained)(trained.config).eval()  # the same architecture, every layer freshly initialised
    for method in (DEFAULT, PEER, "captum LayerGradCam"):
        rhos = []
        for path in paths:
            x = m.predictor.preprocess(path)
            maps = []
            for model in (trained, scrambled):
                m.predictor.model, m.session = model, _TorchSession(model)
                target = int(np.argmax(m.probs(x[None])[0]))
                a = np.asarray(methods[method][0](m, x, target, 128, tree), dtype=np.float64)
                maps.append(np.array([a[t:b, l:r].mean() for t, l, b, r in tree[0].leaves]))
            rhos.append(spearmanr(*maps).statistic)
        m.predictor.model, m.session = trained, m.predictor.session
        results.append({"model": name, "method": method, "n": len(rhos), "spearman": float(np.nanmean(rhos)),
                        "spearman_se": float(np.nanstd(rhos, ddof=1) / np.sqrt(len(rhos)))})
    return results


class _TorchSession:
    """An onnxruntime-like ``run`` over a torch model (for the randomised copy)."""

    def __init__(self, model):
        self.model = model

    def run(self, _, feeds):
        with torch.inference_mode():
            return [self.model(torch.as_tensor(next(iter(feeds.values())))).numpy()]


def command(args, parser) -> str:
    return "python benchmarks/explainers.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v != parser.get_default(k))


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def machine() -> str:
    import onnxruntime
    import os

    return (f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs, Python {platform.python_version()}, "
            f"torch {torch.__version__} (1 thread), onnxruntime {onnxruntime.__version__} (1 thread)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="emoadapt-ier,fer-cpu")
    parser.add_argument("--images", type=int, default=100, help="images per model for DnCShap and shap Partition")
    parser.add_argument("--peer-images", type=int, default=20, help="images per model for the other methods")
    parser.add_argument("--budget-images", type=int, default=10, help="images per model for budgets 64 and 512")
    parser.add_argument("--exact-images", type=int, default=3, help="images per model for exact Owen values")
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--methods", default=None, help="comma-separated subset (default: all; see VARIANTS too)")
    parser.add_argument("--split", default="test", choices=("test", "val"), help="val: for tuning, test: to report")
    parser.add_argument("--images-of", default="auto", choices=("auto", "scenes", "faces"),
                        help="which test images: FER2013 faces or Emotion6 scenes (auto: faces for fer-* models)")
    parser.add_argument("--sanity", type=int, default=5, help="images for the model-randomisation check (0: none)")
    parser.add_argument("--overlays", default="samples", choices=("samples", "test", "none"),
                        help="images of the side-by-side overlay figure: the bundled public-domain samples "
                             "(default; safe to publish), the first test images (research-only data) or none")
    parser.add_argument("--overlays-only", action="store_true", help="draw only the overlay figure of each model")
    parser.add_argument("--quick", action="store_true", help="4 images, budget 128, no sanity check")
    parser.add_argument("--out", default=str(HERE / "results" / "explainers.json"))
    parser.add_argument("--from-json", nargs="*", default=None,
                        help="only summarise the rows of these result files (or their .partial.json)")
    args = parser.parse_args()
    if args.from_json:
        import json

        runs = [json.loads(Path(f).read_text()) for f in args.from_json]
        rows = [r for run in runs for r in run["rows"]]
        summary = summarise(rows)
        print(table(summary))
        out = Path(args.out)
        atomic_write_json(out, {"command": [run.get("command") for run in runs], "date": [run.get("date") for run in runs],
                                "machine": runs[0].get("machine"), "summary": summary,
                                "sanity": [c for run in runs for c in run.get("sanity", [])], "rows": rows,
                                "resummarised_from": list(args.from_json),
                                **({"provenance": runs[0]["provenance"]} if "provenance" in runs[0] else {})})
        plots(summary, out)
        return
    torch.set_num_threads(1)
    if args.quick:
        args.images, args.peer_images, args.budget_images, args.exact_images, args.sanity = 4, 4, 2, 1, 0
        if args.out == parser.get_default("out"):
            args.out = str(HERE / "results" / "explainers-quick.json")
    every = {**METHODS, **VARIANTS}
    methods = every if args.methods is None else {k: every[k] for k in args.methods.split(",")}
    if args.methods is None:
        methods = dict(METHODS)
    budgets = tuple(int(b) for b in args.budgets.split(","))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started, rows, checks = time.time(), [], []
    if args.overlays_only:
        for name in args.models.split(","):
            overlays(name, sample_images(3) if args.overlays == "samples" else test_images(name, 3, args.split),
                     methods, out)
        return
    for name in args.models.split(","):
        paths = test_images(name, args.images, args.split, args.images_of)
        done = list(rows)
        rows += run_model(name, paths, methods, budgets, args.peer_images, args.budget_images, args.exact_images,
                          lambda new: atomic_write_json(out.with_suffix(".partial.json"), {
                              "command": command(args, parser), "date": now(), "machine": machine(),
                              "rows": done + new}))
        if args.sanity:
            checks += sanity(name, paths[:args.sanity], methods)
        if not args.quick and args.overlays != "none":
            overlays(name, sample_images(3) if args.overlays == "samples" else paths[:3], methods, out)
    summary = summarise(rows)
    print(table(summary))
    for c in checks:
        print(f"sanity {c['model']} {c['method']}: Spearman trained vs randomised {c['spearman']:.2f} ± {c['spearman_se']:.2f}")
    atomic_write_json(out, {"command": command(args, parser), "date": now(), "machine": machine(),
                            "seconds": time.time() - started, "summary": summary, "sanity": checks, "rows": rows,
                            **provenance(weights_sha256={name: get_preset(name).sha256
                                                         for name in args.models.split(",")},
                                         images_of=args.images_of, split=args.split)})
    plots(summary, out)


if __name__ == "__main__":
    main()
