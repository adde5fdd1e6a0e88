"""Batch prediction over any number of images with bounded memory, streamed to CSV or JSONL.

One row per image: ``path, emotion, prob_<class>…, seconds, error``. A file that cannot be decoded
gets a row with its ``error`` and no probabilities; it never stops the run. ``resume=True`` keeps
the complete rows already in the output and skips their paths (a row cut off by a kill is dropped
and redone)."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from .errors import EmoadaptError, ImageDecodeError
from .fileio import atomic_write_text


def _columns(classes: tuple[str, ...]) -> list[str]:
    return ["path", "emotion", *[f"prob_{c}" for c in classes], "seconds", "error"]


def completed_paths(output: Path) -> set[str]:
    """Paths with a complete row in ``output``; rewrites the file without a torn last line."""
    if not output.exists():
        return set()
    text = output.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        atomic_write_text(output, text)
    if output.suffix == ".jsonl":
        return {json.loads(line)["path"] for line in text.splitlines() if line.strip()}
    rows = list(csv.DictReader(io.StringIO(text)))
    return {row["path"] for row in rows}


class RowWriter:
    """Appends rows to a CSV (header once) or JSONL file, flushing after every batch."""

    def __init__(self, output: Path, classes: tuple[str, ...], append: bool):
        self.output, self.columns = output, _columns(classes)
        self.jsonl = output.suffix == ".jsonl"
        output.parent.mkdir(parents=True, exist_ok=True)
        new_file = not (append and output.exists() and output.stat().st_size > 0)
        self.handle = open(output, "a" if append else "w", encoding="utf-8", newline="")
        self.csv = None if self.jsonl else csv.DictWriter(self.handle, fieldnames=self.columns)
        if self.csv is not None and new_file:
            self.csv.writeheader()

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            if self.jsonl:
                self.handle.write(json.dumps(row) + "\n")
            else:
                self.csv.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in self.columns})
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _batches(paths: Iterable[Path], size: int) -> Iterator[list[Path]]:
    batch: list[Path] = []
    for path in paths:
        batch.append(path)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_files(predictor, paths: list[Path], output: str | Path, *, batch_size: int = 32, resume: bool = False,
                  on_batch: Callable[[int, int], None] | None = None,
                  on_row: Callable[[dict, torch.Tensor | None], None] | None = None) -> dict[str, int]:
    """Predict every image in ``paths`` and stream rows to ``output`` (``.csv`` or ``.jsonl``).

    ``on_batch(done, failed)`` reports progress; ``on_row(row, image_tensor)`` lets the caller add
    work per image (e.g. explanations). Returns counts: ``total``, ``done``, ``skipped``, ``failed``.
    """
    output = Path(output)
    if output.suffix not in (".csv", ".jsonl"):
        raise EmoadaptError(f"--out must end in .csv or .jsonl, got {output.name}")
    skip = completed_paths(output) if resume else set()
    todo = [p for p in paths if str(p) not in skip]
    writer = RowWriter(output, predictor.classes, append=resume)
    counts = {"total": len(paths), "done": 0, "skipped": len(paths) - len(todo), "failed": 0}
    try:
        for batch in _batches(todo, batch_size):
            started = time.perf_counter()
            rows, tensors = [], []
            for path in batch:
                try:
                    tensors.append(predictor.preprocess(path))
                    rows.append({"path": str(path), "error": None})
                except ImageDecodeError as exc:
                    rows.append({"path": str(path), "error": f"{exc.reason}: {exc}"})
            good = [row for row in rows if row["error"] is None]
            probs = predictor.predict_tensors(torch.stack(tensors)) if tensors else []
            per_image = (time.perf_counter() - started) / max(1, len(batch))
            for row, p in zip(good, probs):
                row["emotion"] = predictor.classes[int(p.argmax())]
                row.update({f"prob_{c}": round(float(v), 6) for c, v in zip(predictor.classes, p)})
            for row in rows:
                row["seconds"] = round(per_image, 5)
            if on_row is not None:
                for row, tensor in zip(good, tensors):
                    on_row(row, tensor)
            writer.write(rows)
            counts["done"] += len(good)
            counts["failed"] += len(rows) - len(good)
            if on_batch is not None:
                on_batch(len(batch), len(rows) - len(good))
    finally:
        writer.close()
    return counts
