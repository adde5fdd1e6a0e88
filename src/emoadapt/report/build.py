"""``build_report``: every number and figure of an evaluation report, written to one folder as
``report.json``, PNGs and a self-contained ``report.html`` (see docs/report.md)."""

from __future__ import annotations

import hashlib
import re
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..attribution import settings

from ..data.arrays import DEFAULT_CACHE
from ..errors import EmoadaptError
from ..fileio import atomic_write_json, atomic_write_text


@dataclass
class ReportOptions:
    """What :func:`build_report` does; the fields mirror ``emoadapt report``'s options (``models``
    empty: the default model)."""

    models: list[str]
    data: str
    out: str
    layout: str = "auto"
    label_map: dict[str, str] | None = None
    splits: list[str] | None = None
    manifest: str | None = None
    source: str | None = None
    mapping: str = "auto"
    limit: int | None = None
    explain_budget: int = 24
    per_class: int = 3
    layer_grids: int = 1
    depth: int = settings.DEPTH  # the explanation defaults every surface shares (attribution/settings.py)
    max_evals: int | None = settings.MAX_EVALS
    taps: list[str] = field(default_factory=list)
    method: str = "pca"
    embed_images: int = 500
    faces: int = 300
    bootstrap: int = 1000
    bins: int = 15
    seed: int = 0
    batch_size: int = 32
    cache_dir: str | Path | None = DEFAULT_CACHE
    progress: bool = True
    command: str | None = None


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).stem if name.endswith(".safetensors") else name).strip("-")


def _log(options: ReportOptions, message: str) -> None:
    if options.progress:
        print(f"report: {message}", file=sys.stderr, flush=True)


def _weights_file(spec: str) -> Path | None:
    from ..models.registry import get_preset, weights_path

    if Path(spec).exists():
        return Path(spec)
    try:
        preset = get_preset(spec)
        return weights_path(preset.weights) if preset.weights else None
    except Exception:  # noqa: BLE001 - an unknown name fails in resolve_model with its own message
        return None


def _prepare(dataset, model_classes: tuple[str, ...], mapping: str):
    """(dataset in the scoring classes, classes, mapping), as ``emoadapt evaluate`` scores."""
    from ..data.labels import IER_CLASSES
    from .. import evaluate

    mapping = evaluate.choose_mapping(model_classes, dataset) if mapping == "auto" else mapping
    if mapping == "fer":  # evaluate's helper (public as ``as_fer_dataset`` in newer versions)
        as_fer = getattr(evaluate, "as_fer_dataset", None) or getattr(evaluate, "_as_fer_dataset")
        return as_fer(dataset), model_classes, mapping
    return dataset.to_ier_dataset(), IER_CLASSES, mapping


def _faces(options: ReportOptions, mapping: str, classes: tuple[str, ...]):
    """(grey faces uint8 (N, 48, 48, 1), labels into ``classes`` or −1, failed) from ``--source``."""
    from ..data import open_dataset
    from ..data.arrays import load_arrays
    from ..data.labels import FER_TO_IER

    fer = open_dataset(options.source, "fer2013").split("Training")
    if len(fer) == 0:
        fer = open_dataset(options.source, "fer2013")
    fer = fer.sample(options.faces, options.seed) if options.faces else replace(fer, samples=[])
    arrays = load_arrays(fer, 48, 1, cache_dir=options.cache_dir, progress=options.progress)
    names = [arrays.classes[i] if i >= 0 else None for i in arrays.labels]
    if mapping == "ier":
        names = [FER_TO_IER.get(n) if n else None for n in names]
    labels = np.array([classes.index(n) if n in classes else -1 for n in names], dtype=np.int64)
    return arrays.images, labels


def _model_section(spec: str, options: ReportOptions, base, out: Path, index: int) -> tuple[dict, dict]:
    """One model's section of report.json and its embedding inputs."""
    from ..data.arrays import load_arrays
    from ..data.labels import FER_CLASSES
    from ..evaluate import ier_probs_from_fer
    from ..predict import outputs_of_paths
    from ..predictor import Predictor
    from .figures import save_confusion, save_reliability
    from .model_pass import default_taps, explain_examples, run_model
    from .stats import bootstrap_metrics, calibration, select_examples

    started = time.perf_counter()
    predictor = Predictor(spec)  # the one prediction path: the model's fit, TTA, calibration (onnxruntime when there)
    model, meta = predictor.model, predictor.meta
    model_classes = tuple(meta.get("classes", ()))
    name, tag = Path(spec).name if Path(spec).exists() else spec, f"m{index + 1}-{slug(spec)}"
    dataset, classes, mapping = _prepare(base, model_classes, options.mapping)
    fer_as_ier = mapping == "ier" and model_classes == FER_CLASSES
    if model_classes and not fer_as_ier and model_classes != tuple(classes):
        raise EmoadaptError(f"{spec}: model classes {model_classes} do not match {tuple(classes)}; use --map")
    _log(options, f"{name}: {len(dataset)} images, scored in {mapping.upper()} classes")
    arrays = load_arrays(dataset, model.config.input_size, model.config.in_chans, cache_dir=options.cache_dir,
                         progress=options.progress, fit=predictor.fit)  # each image as the model sees it
    unlabelled = int((arrays.labels < 0).sum())
    if unlabelled:  # images without a class in the scoring classes cannot be scored
        keep = np.flatnonzero(arrays.labels >= 0)
        arrays = replace(arrays, images=arrays.images[keep], labels=arrays.labels[keep],
                         paths=[arrays.paths[i] for i in keep])
    if len(arrays.labels) == 0:
        raise EmoadaptError(f"{options.data}: no readable labelled images to report on")
    taps = options.taps or default_taps(model)
    missing = [t for t in taps if t not in getattr(model, "taps", ())]
    taps = [t for t in taps if t not in missing]
    result = run_model(model, arrays.images, taps, batch_size=options.batch_size, desc=f"features {name}",
                       progress=options.progress)  # the embedding plots' activations

    predicted = outputs_of_paths(predictor, arrays.paths, options.batch_size)  # as emoadapt predict gives them

    def scoring(model_probs: np.ndarray) -> np.ndarray:  # in the scoring classes
        return ier_probs_from_fer(model_probs) if fer_as_ier else model_probs

    probs, verdicts = scoring(predicted["probs"]), predicted["verdicts"]
    temperature = predictor.calibration.temperature if predictor.calibration.calibrated else None
    metrics = bootstrap_metrics(arrays.labels, probs, classes, resamples=options.bootstrap, seed=options.seed)
    curves = {}
    if "probs_uncalibrated" in predicted:  # the same predictions before the calibration's temperature
        curves["before calibration (T = 1)"] = calibration(arrays.labels, scoring(predicted["probs_uncalibrated"]),
                                                           options.bins)
    curves["as predicted" + (f" (T = {temperature:g})" if temperature is not None else "")] = calibration(
        arrays.labels, probs, options.bins)
    title = f"{name} on {Path(options.data).name} ({_split_text(options)}, n={metrics['n']})"
    figures = {"confusion": save_confusion(metrics["confusion"], classes, out / f"{tag}-confusion.png",
                                           f"{title}\naccuracy {metrics['accuracy']:.1%}, "
                                           f"macro-F1 {metrics['macro_f1']:.3f}").name,
               "calibration": save_reliability(curves, out / f"{tag}-calibration.png", f"{title}: reliability").name}
    examples = select_examples(arrays.labels, probs, options.per_class)
    preds = probs.argmax(1)
    for e in examples:
        i = e.pop("index")
        e.update(index=i, path=arrays.paths[i], true=classes[arrays.labels[i]], predicted=classes[preds[i]],
                 predicted_index=int(preds[i]), confidence=round(float(probs[i].max()), 4),
                 p_true=round(float(probs[i, arrays.labels[i]]), 4), uncertain=bool(verdicts[i]["uncertain"]),
                 uncertain_reason=verdicts[i].get("uncertain_reason"))
        del e["class"]  # the true class, named in "true"
    affect_of_examples(spec, model, arrays.images, examples)
    (out / "examples").mkdir(parents=True, exist_ok=True)
    explain_examples(predictor, arrays.images, examples, out / "examples", budget=options.explain_budget,
                     layer_grids=options.layer_grids, depth=options.depth, max_evals=options.max_evals,
                     model_classes=model_classes or classes, mapping=mapping, prefix=f"{tag}-",
                     progress=options.progress)
    weights = _weights_file(spec)
    section = {
        "name": name, "spec": spec, "tag": tag, "classes": list(classes), "model_classes": list(model_classes),
        "mapping": mapping, "architecture": model.config.to_dict().get("arch", type(model).__name__),
        "input_size": int(model.config.input_size), "in_chans": int(model.config.in_chans),
        "weights": str(weights) if weights else None,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest() if weights else None,
        "temperature": temperature, "fit": predictor.fit, "tta": predictor.tta,
        "metrics": metrics, "calibration": curves, "figures": figures, "examples": examples,
        "errors": [{"path": p, "reason": r} for p, r in arrays.failed], "unlabelled": unlabelled,
        "embedding_taps": taps, "missing_taps": missing, "seconds": round(time.perf_counter() - started, 1)}
    embed_inputs = {"model": model, "name": name, "classes": classes, "model_classes": model_classes or classes,
                    "mapping": mapping, "labels": arrays.labels, "features": result.features,
                    "predicted": result.logits.argmax(1), "taps": taps}
    return section, embed_inputs


def affect_of_examples(spec: str, model, images: np.ndarray, examples: list[dict]) -> None:
    """Add ``valence``, ``arousal`` (1–9) and ``distribution`` ({emotion: p}) to each example when
    the model has affect heads (its ``.affect.safetensors`` sidecar, issue #23)."""
    import torch

    from ..data.transforms import fit_images, uint8_to_tensor
    from ..models.affect import model_features
    from ..models.registry import resolve_affect

    heads = resolve_affect(spec)
    if heads is None or not examples:
        return
    picked = fit_images(images[[e["index"] for e in examples]], model.config.input_size, model.config.in_chans)
    with torch.no_grad():
        out = heads(model_features(model, uint8_to_tensor(picked))[heads.config.source])
    for i, e in enumerate(examples):
        e.update(valence=round(float(out["valence"][i]), 3), arousal=round(float(out["arousal"][i]), 3),
                 distribution={n: round(float(p), 4) for n, p in zip(heads.config.names, out["dist"][i])})


def _split_text(options: ReportOptions) -> str:
    return ",".join(options.splits) if options.splits else "all images"


def _embeddings(inputs: list[dict], options: ReportOptions, out: Path) -> list[dict]:
    """One figure per tap position (pre_logits, last spatial…), one row per model; with
    ``--source``, FER2013 faces in the same projection."""
    from ..embedding import Embedding, project, save_embedding_figure
    from .model_pass import run_model

    faces_cache: dict[tuple, tuple] = {}
    for item in inputs:
        n = len(item["labels"])
        rng = np.random.default_rng(options.seed)
        item["keep"] = np.sort(rng.permutation(n)[:options.embed_images]) if n > options.embed_images else np.arange(n)
        if options.source and options.faces > 0 and item["taps"]:
            key = (item["mapping"], tuple(item["classes"]))
            if key not in faces_cache:
                faces_cache[key] = _faces(options, *key)
            faces, face_labels = faces_cache[key]
            item["faces"] = (run_model(item["model"], faces, item["taps"], batch_size=options.batch_size,
                                       desc=f"faces {item['name']}", progress=options.progress), face_labels)
    figures = []
    for position in range(max(len(i["taps"]) for i in inputs)):
        rows, counts = [], {}
        for item in inputs:
            if position >= len(item["taps"]):
                continue
            tap, keep = item["taps"][position], item["keep"]
            feats, labels = [item["features"][tap][keep]], [item["labels"][keep]]
            predicted, domains = [item["predicted"][keep]], [np.full(len(keep), "images")]
            if "faces" in item:
                face_pass, face_labels = item["faces"]
                feats.append(face_pass.features[tap])
                labels.append(face_labels)
                predicted.append(face_pass.logits.argmax(1))
                domains.append(np.full(len(face_labels), "faces"))
            domain = np.concatenate(domains).astype(str)
            rows.append(Embedding(points=project(np.concatenate(feats), options.method, options.seed),
                                  labels=np.concatenate(labels), predicted=np.concatenate(predicted),
                                  domain=domain, classes=tuple(item["classes"]),
                                  predicted_classes=tuple(item["model_classes"]), tap=tap, method=options.method,
                                  model=item["name"]))
            counts[item["name"]] = {"tap": tap, **{d: int((domain == d).sum()) for d in ("images", "faces")}}
        if not rows:
            continue
        file = f"embedding-{position + 1}-{slug('+'.join(dict.fromkeys(r.tap for r in rows)))}.png"
        title = (f"{' vs '.join(r.model for r in rows)} on {Path(options.data).name} ({_split_text(options)})"
                 + (" + FER2013 faces" if options.source else "") + f": {options.method.upper()}")
        save_embedding_figure(rows, out / file, title=title)
        figures.append({"file": file, "method": options.method, "models": counts})
    return figures


def build_report(options: ReportOptions) -> dict[str, Any]:
    """Compute everything, write the folder, return the report (the content of report.json)."""
    from ..data import open_dataset
    from ..data.splits import select_splits
    from ..embedding import check_method
    from ..models.registry import DEFAULT_MODEL
    from .html import render_html

    check_method(options.method)
    if not options.models:
        options = replace(options, models=[DEFAULT_MODEL])
    started = time.perf_counter()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    base = select_splits(open_dataset(options.data, options.layout).with_label_map(options.label_map),
                         options.manifest, options.splits).sample(options.limit, options.seed)
    if options.source:
        open_dataset(options.source, "fer2013")  # a wrong --source fails now, not after the model passes
    sections, inputs = [], []
    for index, spec in enumerate(options.models):
        section, embed_inputs = _model_section(spec, options, base, out, index)
        sections.append(section)
        inputs.append(embed_inputs)
    _log(options, "embedding plots")
    embeddings = _embeddings(inputs, options, out)
    report = {
        "title": f"emoadapt report: {', '.join(s['name'] for s in sections)} on {Path(options.data).name}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": options.command,
        "data": {"path": str(options.data), "layout": base.name, "split": _split_text(options),
                 "manifest": options.manifest, "images": len(base), "limit": options.limit, "source": options.source,
                 "label_map": options.label_map},
        "settings": {"explain_budget": options.explain_budget, "per_class": options.per_class,
                     "layer_grids": options.layer_grids, "depth": options.depth, "max_evals": options.max_evals,
                     "method": options.method, "embed_images": options.embed_images, "faces": options.faces,
                     "bootstrap": options.bootstrap, "bins": options.bins, "seed": options.seed},
        "models": sections, "embeddings": embeddings}
    report["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.html", render_html(report, out))
    return report
