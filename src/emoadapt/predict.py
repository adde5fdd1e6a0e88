"""Batch prediction over any number of images with bounded memory, streamed to CSV or JSONL.

One row per image: ``path, emotion, prob_<class>…, uncertain, uncertain_reason, seconds, error``
(``uncertain`` is ``true``/``false``: see :mod:`emoadapt.models.calibration`; with a model that has
affect heads, ``valence, arousal, dist_<emotion>…`` after the probabilities; video frames,
:mod:`emoadapt.video`, add ``time`` after the path; ``predict --faces`` adds ``faces``, the JSON
object of :meth:`emoadapt.predictor.Predictor.read_faces`, filled by an ``on_row`` hook). A file that cannot be decoded,
or for which the model returns probabilities that are not finite, gets a row with its ``error`` and
no probabilities; it never stops the run. ``resume=True`` keeps the complete rows already in the
output and skips their paths (a row cut off by a kill is dropped and redone); it refuses a file
with other columns (another model's classes) or that emoadapt did not write.
The file format (columns, names that are not plain text, resume) is :mod:`emoadapt.results`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .errors import ImageDecodeError
from .pipeline import DRAFT_FACTOR, default_workers, loaded_batches
from .results import open_results


def fill_row(row: dict, predictor, outputs: dict[str, np.ndarray], index: int) -> str | None:
    """Put image ``index`` of ``outputs`` (:meth:`emoadapt.api.Predictor.predict_outputs`) into
    ``row``: ``emotion``, ``prob_<class>``, ``uncertain`` and ``uncertain_reason``, and with affect
    heads ``valence``, ``arousal``, ``dist_<name>``. Returns why the probabilities are not valid
    (the row is then left alone)."""
    p = outputs["probs"][index]
    problem = check_probabilities(p)
    if problem is not None:
        return problem
    row["emotion"] = predictor.classes[int(p.argmax())]
    row.update({f"prob_{c}": round(float(v), 6) for c, v in zip(predictor.classes, p)})
    if "valence" in outputs:
        row["valence"] = round(float(outputs["valence"][index]), 4)
        row["arousal"] = round(float(outputs["arousal"][index]), 4)
        row.update({f"dist_{n}": round(float(v), 6)
                    for n, v in zip(getattr(predictor, "affect_names", ()), outputs["dist"][index])})
    verdict = outputs["verdicts"][index]
    row["uncertain"] = "true" if verdict["uncertain"] else "false"
    row["uncertain_reason"] = verdict["uncertain_reason"] or ""
    return None


def predict_outputs(predictor, batch: torch.Tensor) -> dict:
    """``predictor.predict_outputs`` (probs, verdicts and affect outputs), or for a stand-in
    predictor without it its ``predict_tensors`` with verdicts that are never ``uncertain``."""
    if hasattr(predictor, "predict_outputs"):
        return predictor.predict_outputs(batch)
    probs = predictor.predict_tensors(batch)
    return {"probs": probs, "verdicts": [{"uncertain": False, "uncertain_reason": None}] * len(probs)}


def outputs_of_paths(predictor, paths: Sequence[str | Path], batch_size: int = 32) -> dict[str, Any]:
    """:func:`predict_outputs` of readable image files, batch by batch, concatenated: ``probs`` (N, K),
    ``verdicts`` (N dicts) and the other outputs — what ``emoadapt predict`` writes for them."""
    arrays: dict[str, list[np.ndarray]] = {}
    verdicts: list[dict] = []
    for start in range(0, len(paths), batch_size):
        out = predict_outputs(predictor, torch.stack([predictor.preprocess(p) for p in paths[start:start + batch_size]]))
        verdicts += out.pop("verdicts")
        for key, value in out.items():
            arrays.setdefault(key, []).append(np.asarray(value))
    joined = {key: np.concatenate(parts) for key, parts in arrays.items()}
    joined.setdefault("probs", np.zeros((0, len(predictor.classes)), np.float32))
    return {**joined, "verdicts": verdicts}


def check_probabilities(probs: np.ndarray) -> str | None:
    """``None`` when ``probs`` (K,) is a probability vector, else why not (NaN, inf, negative, sum)."""
    probs = np.asarray(probs, dtype=np.float64)
    if not np.isfinite(probs).all():
        return f"the model returned non-finite probabilities ({', '.join(f'{v:g}' for v in probs)})"
    if (probs < 0).any() or abs(float(probs.sum()) - 1.0) > 1e-3:
        return f"the model returned probabilities that are negative or do not sum to 1 ({probs.sum():g})"
    return None


def predict_files(predictor, paths: list[Path], output: str | Path, *, batch_size: int = 32, resume: bool = False,
                  on_batch: Callable[[int, int], None] | None = None,
                  on_row: Callable[[dict, torch.Tensor | None], None] | None = None,
                  workers: int | None = None, draft: bool = False, overlay: bool = False,
                  faces: bool = False) -> dict[str, int]:
    """Predict every image in ``paths`` and stream rows to ``output`` (``.csv`` or ``.jsonl``).

    ``on_batch(done, failed)`` reports progress; ``on_row(row, image_tensor)`` lets the caller add
    work per image (e.g. explanations; an exception there becomes the row's ``error``). Returns
    counts: ``total``, ``done``, ``skipped``, ``failed``.

    ``workers`` threads decode and resize the images ahead of the model (:mod:`emoadapt.pipeline`;
    ``None``: :func:`~emoadapt.pipeline.default_workers`, 0: in this thread), rows stay in the order
    of ``paths``. ``draft`` (opt-in) lets libjpeg decode large JPEGs at 1/2–1/8 scale while their
    short side stays ≥ 2 × the model's input size: faster, but the probabilities then differ slightly
    from the API's and the web app's (measured in docs/scaling.md), so it is off by default.
    A row's ``seconds`` is its image's decode time plus its share of its batch's model time.
    ``overlay``: the file has an ``overlay`` column (the path ``on_row`` puts in ``row["overlay"]``);
    ``faces``: a ``faces`` column (the object ``on_row`` puts in ``row["faces"]``, JSON in a CSV).
    """
    writer, skip = open_results(output, predictor, resume, overlay=overlay, faces=faces)
    todo = [p for p in paths if writer.key(p) not in skip]
    counts = {"total": len(paths), "done": 0, "skipped": len(paths) - len(todo), "failed": 0}
    size = getattr(predictor, "input_size", None)
    draft_side = DRAFT_FACTOR * size if draft and isinstance(size, int) else None
    workers = default_workers() if workers is None else workers
    try:
        for batch in loaded_batches(predictor.preprocess, todo, batch_size, workers=workers, draft_side=draft_side):
            rows = _predict_batch(predictor, batch, on_row)
            writer.write(rows)
            failed = sum(1 for row in rows if row["error"] is not None)
            counts["done"] += len(rows) - failed
            counts["failed"] += failed
            if on_batch is not None:
                on_batch(len(batch), failed)
    finally:
        writer.close()
    return counts


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` of CPU tensors (C, S, S) → (N, C, S, S), copied by NumPy (torch's copy runs
    on its thread pool, slow on a busy machine for these sizes); other devices: ``torch.stack``."""
    if all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return torch.from_numpy(np.stack([t.numpy() for t in tensors]))
    return torch.stack(tensors)


def _predict_batch(predictor, batch: list, on_row: Callable[[dict, torch.Tensor | None], None] | None) -> list[dict]:
    """The rows of one batch of :class:`~emoadapt.pipeline.Loaded` inputs (in order)."""
    rows = [{"path": str(item.path), "error": item.error} for item in batch]
    good = [(row, item.tensor) for row, item in zip(rows, batch) if item.error is None]
    started = time.perf_counter()
    outputs = predict_outputs(predictor, _stack([t for _, t in good])) if good else {}
    model_share = (time.perf_counter() - started) / max(1, len(good))
    kept = []
    for index, (row, tensor) in enumerate(good):
        problem = fill_row(row, predictor, outputs, index)
        if problem is not None:
            row["error"] = f"bad-model-output: {problem}"
            continue
        kept.append((row, tensor))
    for row, item in zip(rows, batch):
        row["seconds"] = round(item.seconds + (model_share if item.error is None else 0.0), 5)
    if on_row is not None:
        for row, tensor in kept:
            try:
                on_row(row, tensor)
            except Exception as exc:  # the prediction stands; the row says what else failed
                reason = exc.reason if isinstance(exc, ImageDecodeError) else type(exc).__name__
                row["error"] = f"explain-failed: {reason}: {exc}"
    return rows
