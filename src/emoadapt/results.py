"""Results files of ``emoadapt predict`` (and video timelines): the row columns, CSV or JSONL
writing flushed per batch, and what ``--resume`` reads back.

Any file name survives: every CSV record is one physical line of UTF-8. A path that is not plain
printable text (undecodable bytes kept by Python as surrogates, control characters such as a
newline or carriage return) or that starts with ``"`` is written as a JSON string literal — it
then starts with ``"`` and ``json.loads`` gives the path back; error messages are escaped the same
way. JSONL rows are JSON (ASCII-escaped), which round-trips any path."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Callable

from .errors import EmoadaptError
from .fileio import atomic_write_bytes


#: what an uncertain prediction means, in plain words, per reason (the start of the reason text
#: of :meth:`emoadapt.models.calibration.Calibration.judge`); the web page says the same
PLAIN_REASONS = {
    "unlike": "the model has not seen images like this: treat the label as a guess",
    "a blank": "the image is blank or almost one flat colour: treat the label as a guess",
    "low confidence": "no class clearly leads: treat the label as a guess",
}


def plain_uncertainty(reason: str | None) -> str:
    """An ``uncertain_reason`` (reasons joined by ``"; "``) in plain words, with what to do."""
    said = []
    for part in (reason or "").split("; "):
        for start, text in PLAIN_REASONS.items():
            if part.startswith(start) and text not in said:
                said.append(text)
    return "; ".join(said) or "the model is unsure about this image: treat the label as a guess"


def overlay_note(row: dict) -> str | None:
    """The line an overlay of an uncertain prediction carries under its title (``None``: certain)."""
    return f"uncertain: {plain_uncertainty(row.get('uncertain_reason'))}" if row.get("uncertain") else None


def columns(classes: tuple[str, ...], affect: tuple[str, ...] = (), video: bool = False,
            overlay: bool = False, faces: bool = False) -> list[str]:
    """The row columns: ``path`` (``time`` in s for video frames), ``emotion``, ``prob_<class>``…,
    with affect heads ``valence``, ``arousal``, ``dist_<name>``…, then ``uncertain``,
    ``uncertain_reason``, ``seconds``, ``error``, ``overlay`` (the overlay PNG's path) with
    ``predict --explain`` and ``faces`` (the JSON object of every face read) with ``predict --faces``."""
    return ["path", *(["time"] if video else []), "emotion", *[f"prob_{c}" for c in classes],
            *(["valence", "arousal", *[f"dist_{n}" for n in affect]] if affect else []),
            "uncertain", "uncertain_reason", "seconds", "error", *(["overlay"] if overlay else []),
            *(["faces"] if faces else [])]


def check_output(output: str | os.PathLike, video: bool = False) -> Path:
    """``--out`` checked before any model loads: a ``.csv`` or ``.jsonl`` file name, not a folder."""
    text = os.fspath(output)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise EmoadaptError(f"--out {text} is a directory; give a .csv or .jsonl file name, e.g. {path / 'results.csv'}")
    if path.suffix not in (".csv", ".jsonl"):
        raise EmoadaptError(f"--out must end in .csv or .jsonl, got {path.name}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise EmoadaptError(f"cannot write {text}: {parent} is a file, not a folder")
    return path


def row_key(path_key: str, time: float | str | None = None) -> str:
    """The resume key of a row: its path key, with ``@<time>`` (3 decimals) for a video frame."""
    if time is None or time == "":
        return path_key
    return f"{path_key}@{float(time):.3f}"


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
                    video: bool = False, overlay: bool = False, faces: bool = False) -> set[str]:
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
    expected = columns(classes, affect, video, overlay, faces) if classes is not None else None
    if output.suffix == ".jsonl":
        return _jsonl_paths(output, lines, expected)
    if not lines:
        return set()
    header = next(csv.reader([lines[0]]))
    if expected is not None and header != expected:
        if [c for c in header if c not in ("uncertain", "uncertain_reason")] == \
                [c for c in expected if c not in ("uncertain", "uncertain_reason")]:
            raise _foreign(output, "it was written by an emoadapt without the uncertain columns (before issue #22)")
        for column, flag in (("overlay", "--explain"), ("faces", "--faces")):
            if [c for c in header if c != column] == [c for c in expected if c != column]:
                said = "with" if column in header else "without"
                raise _foreign(output, f"it was written {said} {flag} (its {column} column); resume with the same options")
        if header[:1] == ["path"] and [c for c in header if c not in ("overlay", "faces")][-2:] == ["seconds", "error"]:
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


def open_results(output: str | os.PathLike, predictor: Any, resume: bool, *, video: bool = False,
                 overlay: bool = False, faces: bool = False) -> tuple["RowWriter", set[str]]:
    """The writer of a results file for ``predictor``'s classes and affect outputs, and the rows it
    already holds (their :func:`completed_paths` keys; empty unless ``resume``, which appends)."""
    output = Path(output)
    if output.suffix not in (".csv", ".jsonl"):
        raise EmoadaptError(f"--out must end in .csv or .jsonl, got {output.name}")
    affect = tuple(getattr(predictor, "affect_names", ()))
    done = completed_paths(output, predictor.classes, affect, video=video, overlay=overlay, faces=faces) if resume else set()
    return RowWriter(output, predictor.classes, append=resume, affect=affect, video=video, overlay=overlay,
                     faces=faces), done


def open_rows(output: Path, columns: list[str], append: bool):
    """Open a results file for rows: ``(handle, csv.DictWriter or None for JSONL)``; a new (or empty)
    CSV gets its header. ``append`` continues the file. An ``OSError`` becomes one ``EmoadaptError`` line."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        new_file = not (append and output.exists() and output.stat().st_size > 0)
        handle = open(output, "a" if append else "w", encoding="utf-8", newline="")
        writer = None if output.suffix == ".jsonl" else csv.DictWriter(handle, fieldnames=columns,
                                                                        extrasaction="ignore")
        if writer is not None and new_file:
            writer.writeheader()
            handle.flush()
    except OSError as exc:
        raise EmoadaptError(f"cannot write {output}: {exc.strerror or exc}") from None
    return handle, writer


class RowWriter:
    """Appends rows to a CSV (header once) or JSONL file, flushing after every batch. Any
    ``OSError`` (a directory, no permission, a full disk) becomes a one-line ``EmoadaptError``."""

    def __init__(self, output: Path, classes: tuple[str, ...], append: bool, affect: tuple[str, ...] = (),
                 video: bool = False, overlay: bool = False, faces: bool = False):
        self.output, self.columns = output, columns(classes, affect, video, overlay, faces)
        self.jsonl = output.suffix == ".jsonl"
        if output.is_dir():
            raise EmoadaptError(f"--out {output} is a directory; give a .csv or .jsonl file name")
        self.handle, self.csv = open_rows(output, self.columns, append)

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
                    if "overlay" in cells and cells["overlay"]:
                        cells["overlay"] = path_text(cells["overlay"])
                    if isinstance(cells.get("faces"), dict):
                        cells["faces"] = json.dumps(cells["faces"], allow_nan=False, separators=(",", ":"))
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


#: the columns of ``predict --face-rows`` before the classes and expressions
FACE_ROW_START = ["path", "face", "x", "y", "w", "h", "score", "emotion"]


def face_columns(classes: tuple[str, ...], expressions: tuple[str, ...], video: bool = False) -> list[str]:
    """Columns of one row per face: ``path`` (``time`` in s for video frames), ``face`` (0 = the
    largest), the box ``x, y, w, h`` (px), ``score``, ``emotion``, ``prob_<class>``…,
    ``expression``, ``expr_<FER class>``…"""
    start = [*FACE_ROW_START[:1], *(["time"] if video else []), *FACE_ROW_START[1:]]
    return [*start, *[f"prob_{c}" for c in classes], "expression", *[f"expr_{e}" for e in expressions]]


class FaceRowWriter:
    """``predict --face-rows``: one CSV or JSONL row per face read (:func:`face_columns`), flushed
    per image; an image without faces writes no row. ``append`` continues a file (``--resume``)."""

    def __init__(self, output: Path, classes: tuple[str, ...], expressions: tuple[str, ...], append: bool,
                 video: bool = False):
        output = check_output(output)
        self.output, self.jsonl = output, output.suffix == ".jsonl"
        self.columns = face_columns(classes, expressions, video)
        self.handle, self.csv = open_rows(output, self.columns, append)

    def write(self, path: str, faces: dict, time: float | None = None) -> None:
        """The rows of image ``path``'s faces (the object of :meth:`emoadapt.predictor.Predictor.read_faces`);
        ``time``: the video frame's, in s."""
        try:
            for index, face in enumerate(faces["faces"]):
                row = {"path": path if self.jsonl else path_text(path),
                       **({} if time is None else {"time": round(float(time), 3)}), "face": index,
                       **dict(zip("xywh", face["box"])), "score": face["score"], "emotion": face["dominant_emotion"],
                       **{f"prob_{c}": p for c, p in face["emotion"].items()},
                       "expression": face["dominant_expression"] or "",
                       **{f"expr_{e}": p for e, p in (face["expressions"] or {}).items()}}
                if self.jsonl:
                    self.handle.write(json.dumps(row, allow_nan=False) + "\n")
                else:
                    self.csv.writerow(row)
            self.handle.flush()
        except OSError as exc:
            raise EmoadaptError(f"cannot write {self.output}: {exc.strerror or exc}") from None

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError:
            pass
