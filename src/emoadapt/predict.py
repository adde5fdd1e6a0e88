"""Batch prediction over any number of images with bounded memory, streamed to CSV or JSONL.

One row per image: ``path, emotion, prob_<class>…, uncertain, uncertain_reason, seconds, error``
(``uncertain`` is ``true``/``false``: see :mod:`emoadapt.models.calibration`; with a model that has
affect heads, ``valence, arousal, dist_<emotion>…`` after the probabilities; video frames,
:mod:`emoadapt.video`, add ``time`` after the path). A file that cannot be decoded,
or for which the model returns probabilities that are not finite, gets a row with its ``error`` and
no probabilities; it never stops the run. ``resume=True`` keeps the complete rows already in the
output and skips their paths (a row cut off by a kill is dropped and redone); it refuses a file
with other columns (another model's classes) or that emoadapt did not write.

Any file name survives: every CSV record is one physical line of UTF-8. A path that is not plain
printable text (undecodable bytes kept by Python as surrogates, control characters such as a
newline or carriage return) or that starts with ``"`` is written as a JSON string literal — it
then starts with ``"`` and ``json.loads`` gives the path back; error messages are escaped the same
way. JSONL rows are JSON (ASCII-escaped), which round-trips any path."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .errors import EmoadaptError, ImageDecodeError
from .fileio import atomic_write_bytes
from .pipeline import DRAFT_FACTOR, default_workers, loaded_batches


def _columns(classes: tuple[str, ...], affect: tuple[str, ...] = (), video: bool = False) -> list[str]:
    """The row columns: ``path`` (``time`` in s for video frames), ``emotion``, ``prob_<class>``…,
    with affect heads ``valence``, ``arousal``, ``dist_<name>``…, then ``uncertain``,
    ``uncertain_reason``, ``seconds``, ``error``."""
    return ["path", *(["time"] if video else []), "emotion", *[f"prob_{c}" for c in classes],
            *(["valence", "arousal", *[f"dist_{n}" for n in affect]] if affect else []),
            "uncertain", "uncertain_reason", "seconds", "error"]


def row_key(path_key: str, time: float | str | None = None) -> str:
    """The resume key of a row: its path key, with ``@<time>`` (3 decimals) for a video frame."""
    if time is None or time == "":
        return path_key
    return f"{path_key}@{float(time):.3f}"


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


def path_text(path: str | os.PathLike) -> str:
    """The ``path`` column of a CSV row: the path itself when it is plain printable text, else its
    JSON string literal (ASCII, starting with ``"``). Injective, so ``--resume`` never confuses two files."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    return text if text.isprintable() and not text.startswith('"') else json.dumps(text)


def path_from_text(text: str) -> str:
    """The inverse of :func:`path_text`."""
    return json.loads(text) if text.startswith('"') else text


def one_line(message: str) -> str:
    """``message`` with every non-printable character (newlines, surrogates of undecodable bytes)
    escaped, so it fits one CSV line and encodes as UTF-8."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)


def _foreign(output: Path, why: str) -> EmoadaptError:
    return EmoadaptError(f"cannot resume {output}: {why}; choose another --out (or delete the file to start over)")


def completed_paths(output: Path, classes: tuple[str, ...] | None = None, affect: tuple[str, ...] = (),
                    video: bool = False) -> set[str]:
    """Keys of the paths with a complete row in ``output`` (:func:`path_text` for CSV, the path for
    JSONL; :func:`row_key` with the time for video frames); rewrites the file without a torn last
    line. With ``classes``, refuses (``EmoadaptError``) a file whose columns are not this model's
    (classes, affect outputs ``affect``, a ``time`` column when ``video``), or that is not an
    emoadapt results file."""
    output = Path(output)
    if not output.exists():
        return set()
    if output.is_dir():
        raise EmoadaptError(f"--out {output} is a directory; give a .csv or .jsonl file name")
    try:
        raw = output.read_bytes()
    except OSError as exc:
        raise EmoadaptError(f"cannot read {output}: {exc.strerror or exc}") from None
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]  # a record cut by a kill: dropped, its image is redone
        try:
            atomic_write_bytes(output, raw)
        except OSError as exc:
            raise EmoadaptError(f"cannot rewrite {output}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _foreign(output, "it is not UTF-8 text, so emoadapt did not write it") from None
    lines = [line.rstrip("\r") for line in text.split("\n")[:-1]]
    expected = _columns(classes, affect, video) if classes is not None else None
    if output.suffix == ".jsonl":
        return _jsonl_paths(output, lines, expected)
    if not lines:
        return set()
    header = next(csv.reader([lines[0]]))
    if expected is not None and header != expected:
        if [c for c in header if c not in ("uncertain", "uncertain_reason")] == \
                [c for c in expected if c not in ("uncertain", "uncertain_reason")]:
            raise _foreign(output, "it was written by an emoadapt without the uncertain columns (before issue #22)")
        if header[:1] == ["path"] and header[-2:] == ["seconds", "error"]:
            raise _foreign(output, f"its columns are {','.join(header)} (another model's classes), "
                                   f"this model writes {','.join(expected)}")
        raise _foreign(output, "its header is not an emoadapt results header")
    done = set()
    time_column = header.index("time") if "time" in header else None
    for number, line in enumerate(lines[1:], start=2):
        fields = next(csv.reader([line]), [])
        if len(fields) != len(header):
            raise _foreign(output, f"line {number} has {len(fields)} fields, not {len(header)}")
        done.add(fields[0] if time_column is None else row_key(fields[0], fields[time_column]))
    return done


def _jsonl_paths(output: Path, lines: list[str], expected: list[str] | None) -> set[str]:
    done = set()
    probs = None if expected is None else {c for c in expected if c.startswith("prob_")}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise _foreign(output, f"line {number} is not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            raise _foreign(output, f"line {number} is not an emoadapt row (no path)")
        keys = {k for k in row if k.startswith("prob_")}
        if probs is not None and keys and keys != probs:
            raise _foreign(output, f"line {number} has {','.join(sorted(keys))} (another model's classes), "
                                   f"this model writes {','.join(sorted(probs))}")
        done.add(row_key(row["path"], row.get("time")))
    return done


class RowWriter:
    """Appends rows to a CSV (header once) or JSONL file, flushing after every batch. Any
    ``OSError`` (a directory, no permission, a full disk) becomes a one-line ``EmoadaptError``."""

    def __init__(self, output: Path, classes: tuple[str, ...], append: bool, affect: tuple[str, ...] = (),
                 video: bool = False):
        self.output, self.columns = output, _columns(classes, affect, video)
        self.jsonl = output.suffix == ".jsonl"
        if output.is_dir():
            raise EmoadaptError(f"--out {output} is a directory; give a .csv or .jsonl file name")
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            new_file = not (append and output.exists() and output.stat().st_size > 0)
            self.handle = open(output, "a" if append else "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise EmoadaptError(f"cannot write {output}: {exc.strerror or exc}") from None
        self.csv = None if self.jsonl else csv.DictWriter(self.handle, fieldnames=self.columns, extrasaction="ignore")
        if self.csv is not None and new_file:
            self._guarded(self.csv.writeheader)

    def key(self, path: str | os.PathLike) -> str:
        """How ``path`` appears in this file's ``path`` column (what :func:`completed_paths` returns)."""
        return os.fspath(path) if self.jsonl else path_text(path)

    def write(self, rows: list[dict]) -> None:
        def write_all() -> None:
            for row in rows:
                if self.jsonl:
                    self.handle.write(json.dumps(row, allow_nan=False) + "\n")
                else:
                    cells = {k: ("" if row.get(k) is None else row.get(k)) for k in self.columns}
                    cells["path"] = path_text(row["path"])
                    if row.get("time") is not None:
                        cells["time"] = f"{float(row['time']):.3f}"
                    cells["error"] = one_line(str(cells["error"]))
                    self.csv.writerow(cells)
            self.handle.flush()

        self._guarded(write_all)

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except OSError as exc:
            raise EmoadaptError(f"cannot write {self.output}: {exc.strerror or exc}; the rows written so far "
                                "are kept: fix the cause and rerun with --resume") from None

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError:
            pass


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
                  workers: int | None = None, draft: bool = False) -> dict[str, int]:
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
    """
    output = Path(output)
    if output.suffix not in (".csv", ".jsonl"):
        raise EmoadaptError(f"--out must end in .csv or .jsonl, got {output.name}")
    affect = tuple(getattr(predictor, "affect_names", ()))
    skip = completed_paths(output, predictor.classes, affect) if resume else set()
    writer = RowWriter(output, predictor.classes, append=resume, affect=affect)
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
