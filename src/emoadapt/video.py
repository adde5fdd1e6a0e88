"""Emotion over a video: one row per sampled frame, streamed to CSV/JSONL, and a timeline plot.

    emoadapt predict clip.mp4 --every 1s --plot --out clip.csv   # clip.csv + clip_timeline.png

Rows are those of :mod:`emoadapt.predict` with a ``time`` column (seconds from the start of the
video): ``path, time, emotion, prob_<class>…[, valence, arousal, dist_<name>…], seconds, error``.
Frames are decoded one at a time and predicted ``batch_size`` at a time, so memory does not grow
with the length of the video. A video that cannot be opened gets one error row (no time); one that
stops before its announced end keeps the rows of the frames it had and gets an error row
(``truncated``). ``resume=True`` skips frames (and failed videos) already in the output.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .data.video import sample_frames
from .errors import VideoDecodeError
from .predict import fill_row, predict_outputs
from .results import RowWriter, open_results, path_from_text, row_key


def predict_videos(predictor, videos: list[Path], output: str | Path, *, every: float = 1.0, batch_size: int = 32,
                   resume: bool = False, on_frames: Callable[[int, int], None] | None = None,
                   on_error: Callable[[Path, str], None] | None = None,
                   faces: Callable[[Any], dict] | None = None, face_rows: Any = None) -> dict[str, int]:
    """Predict sampled frames of every video in ``videos`` into ``output`` (``.csv``/``.jsonl``).

    ``on_frames(n, failed)`` reports progress, ``on_error(video, message)`` a video that failed.
    ``faces(picture)`` (e.g. a :meth:`~emoadapt.predictor.Predictor.read_faces` with its limits):
    each frame's faces, read when the frame is decoded, go to a ``faces`` column and, with
    ``face_rows`` (a :class:`~emoadapt.results.FaceRowWriter` with a time column), one row per face.
    Returns counts: ``videos``, ``frames`` (rows predicted), ``skipped`` (frames already in the
    output), ``failed`` (error rows)."""
    writer, done = open_results(output, predictor, resume, video=True, faces=faces is not None)
    read = None if faces is None else (lambda video, frame: _frame_faces(faces, face_rows, video, frame))
    counts = {"videos": len(videos), "frames": 0, "skipped": 0, "failed": 0}
    try:
        for video in videos:
            if writer.key(video) in done:
                continue
            message = _predict_one(predictor, video, writer, done, every, batch_size, counts, on_frames, read)
            if message is not None and on_error is not None:
                on_error(video, message)
    finally:
        writer.close()
    return counts


def _predict_one(predictor, video: Path, writer: RowWriter, done: set[str], every: float, batch_size: int,
                 counts: dict[str, int], on_frames: Callable[[int, int], None] | None,
                 read: Callable[[Path, Any], dict] | None = None) -> str | None:
    """Rows of one video; returns the error message when it could not be read to its end.
    ``read(video, frame)``: the frame's faces (a ``faces`` column), read as each frame is decoded."""
    batch: list[tuple[float, torch.Tensor]] = []
    try:
        for frame in sample_frames(video, every):
            if row_key(writer.key(video), frame.time) in done:
                counts["skipped"] += 1
                continue
            batch.append((frame.time, _frame_tensor(predictor, frame.image), read(video, frame) if read else None))
            if len(batch) == batch_size:
                _flush(predictor, video, batch, writer, counts, on_frames)
                batch = []
        _flush(predictor, video, batch, writer, counts, on_frames)
    except VideoDecodeError as exc:
        _flush(predictor, video, batch, writer, counts, on_frames)
        writer.write([{"path": str(video), "time": None, "error": f"{exc.reason}: {exc}", "seconds": 0.0}])
        counts["failed"] += 1
        if on_frames is not None:
            on_frames(0, 1)
        return str(exc)
    return None


def _frame_faces(faces: Callable[[Any], dict], face_rows: Any, video: Path, frame) -> dict:
    """``faces(picture)`` of one frame (RGB array (H, W, 3)), its rows written to ``face_rows``
    (when given) with the frame's time."""
    from PIL import Image

    found = faces(Image.fromarray(frame.image))
    if face_rows is not None:
        face_rows.write(str(video), found, time=frame.time)
    return found


def _frame_tensor(predictor, image: np.ndarray) -> torch.Tensor:
    """(C, S, S) in [0, 1], preprocessed as a still image is (the predictor's ``preprocess``: its
    ``fit``, the whole frame by default)."""
    from PIL import Image

    return predictor.preprocess(Image.fromarray(image))


def _flush(predictor, video: Path, batch: list[tuple[float, torch.Tensor, dict | None]], writer: RowWriter,
           counts: dict[str, int], on_frames: Callable[[int, int], None] | None) -> None:
    if not batch:
        return
    started = time.perf_counter()
    outputs = predict_outputs(predictor, torch.stack([tensor for _, tensor, _ in batch]))
    per_frame = round((time.perf_counter() - started) / len(batch), 5)
    rows, failed = [], 0
    for index, (t, _, faces) in enumerate(batch):
        row = {"path": str(video), "time": t, "seconds": per_frame, "error": None}
        if faces is not None:
            row["faces"] = faces
        problem = fill_row(row, predictor, outputs, index)
        if problem is not None:
            row["error"], failed = f"bad-model-output: {problem}", failed + 1
        rows.append(row)
    writer.write(rows)
    counts["frames"] += len(rows) - failed
    counts["failed"] += failed
    batch.clear()
    if on_frames is not None:
        on_frames(len(rows), failed)


# ----------------------------------------------------------------------------- timeline
#: row columns that hold text, not numbers
TEXT_COLUMNS = frozenset({"path", "emotion", "error", "uncertain", "uncertain_reason", "faces"})


def read_rows(output: str | Path, video: str | Path) -> list[dict]:
    """The frame rows of ``video`` in ``output`` (values as floats where numeric), sorted by time."""
    output, wanted = Path(output), os.fspath(video)
    rows = []
    with open(output, encoding="utf-8", newline="") as handle:
        if output.suffix == ".jsonl":
            records = (json.loads(line) for line in handle if line.strip())
        else:
            records = ({**r, "path": path_from_text(r["path"])} for r in csv.DictReader(handle))
        for record in records:
            if record.get("path") == wanted and record.get("time") not in (None, "") and not record.get("error"):
                rows.append({k: (float(v) if k not in TEXT_COLUMNS and v not in (None, "") else v)
                             for k, v in record.items()})
    return sorted(rows, key=lambda r: r["time"])


#: line colours of the classes, in the model's class order (matplotlib's tab10 without purple and
#: grey); valence and arousal are drawn in black (solid, dashed), a colour no class has
CLASS_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
AFFECT_STYLES = {"valence": {"color": "black", "linestyle": "-"}, "arousal": {"color": "black", "linestyle": "--"}}
UNCERTAIN_SHADE = {"color": "tab:purple", "alpha": 0.15, "lw": 0}


def timeline_path(output: str | Path, video: str | Path) -> Path:
    """``<out stem>_<video stem>_timeline.png`` beside ``output``; ``<stem>_timeline.png`` when
    both stems are the same (``predict clip.mp4 --out clip.csv``: not ``clip_clip_timeline.png``)."""
    output, stem = Path(output), Path(video).stem
    name = output.stem if output.stem == stem else f"{output.stem}_{stem}"
    return output.with_name(f"{name}_timeline.png")


def _is_uncertain(value) -> bool:
    """The ``uncertain`` cell of a row: a bool (JSONL) or ``true``/``false`` (CSV)."""
    return value is True or str(value).lower() == "true"


def _shade_uncertain(axes, times: np.ndarray, flags: list[bool]) -> bool:
    """Shade the time span of every uncertain frame (half the sampling step either side) on each
    axis; True when any frame was shaded."""
    if not any(flags):
        return False
    half = float(np.median(np.diff(times))) / 2 if len(times) > 1 else 0.5
    for ax in axes:
        for moment, flag in zip(times, flags):
            if flag:
                ax.axvspan(moment - half, moment + half, **UNCERTAIN_SHADE)
    return True


def plot_timeline(output: str | Path, video: str | Path, png: str | Path) -> Path | None:
    """Draw the emotion timeline of ``video`` from its rows in ``output`` as a PNG: the class
    probabilities over time and, when present, valence and arousal (1–9), in colours that are not
    the classes'; uncertain frames are shaded. ``None`` when the video has no frame rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fileio import atomic_path

    rows = read_rows(output, video)
    if not rows:
        return None
    times = np.array([r["time"] for r in rows])
    classes = [k[5:] for k in rows[0] if k.startswith("prob_")]
    affect = "valence" in rows[0] and rows[0]["valence"] not in (None, "")
    fig, axes = plt.subplots(2 if affect else 1, 1, figsize=(9, 5.5 if affect else 3.2), sharex=True, squeeze=False)
    top = axes[0, 0]
    shaded = _shade_uncertain(axes[:, 0], times, [_is_uncertain(r.get("uncertain")) for r in rows])
    for index, name in enumerate(classes):
        top.plot(times, [r[f"prob_{name}"] for r in rows], label=name, marker="." if len(rows) < 60 else None,
                 color=CLASS_COLOURS[index % len(CLASS_COLOURS)])
    if shaded:
        top.fill_between([], [], **UNCERTAIN_SHADE, label="uncertain frames")  # a legend entry only
    top.set_ylabel("probability")
    top.set_ylim(0, 1)
    top.legend(loc="upper right", ncol=len(classes) + shaded, fontsize=8)
    top.set_title(f"{Path(video).name}: emotion over time")
    if affect:
        bottom = axes[1, 0]
        for name in ("valence", "arousal"):
            bottom.plot(times, [r[name] for r in rows], label=name, **AFFECT_STYLES[name])
        bottom.set_ylim(1, 9)
        bottom.axhline(5, color="grey", lw=0.5)
        bottom.set_ylabel("1–9")
        bottom.legend(loc="upper right", ncol=2, fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(png)
