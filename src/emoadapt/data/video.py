"""Video frames at a fixed interval, streamed (OpenCV ``VideoCapture``; one frame in memory at a time).

    for frame in sample_frames("clip.mp4", every=1.0):   # frame.time (s), frame.index, frame.image (H, W, 3) RGB uint8
        ...

Timestamps are ``index / fps`` (the container's frame rate), so they do not depend on the codec's
seek precision. The frames kept are the first at or after 0, ``every``, 2·``every``… seconds.
A file OpenCV cannot open raises :class:`~emoadapt.errors.VideoDecodeError` (``unsupported``);
a file whose frames stop well before the frame count it announces raises it (``truncated``) after
the frames that could be read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import EmoadaptError, VideoDecodeError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
#: frames missing at the end (vs the announced count) tolerated before a video counts as truncated
#: (containers often announce a frame or two more than they hold)
TRUNCATION_SLACK = 2


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Frame:
    """One sampled frame: ``time`` in seconds from the start, ``index`` in the stream, ``image``
    (H, W, 3) uint8 RGB."""

    time: float
    index: int
    image: np.ndarray


def parse_every(text: str | float) -> float:
    """``"1s"``, ``"500ms"``, ``"0.5"`` (seconds) or ``"2m"`` → seconds (> 0)."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|min)?\s*", str(text))
        if match is None:
            raise EmoadaptError(f"--every {text!r}: give a duration such as 1s, 500ms, 0.5 or 2m")
        scale = {"ms": 1e-3, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0}[match.group(2)]
        value = float(match.group(1)) * scale
    if not value > 0:
        raise EmoadaptError(f"--every must be a positive duration, got {text!r}")
    return value


def video_info(path: str | Path) -> dict[str, float]:
    """``{"fps", "frames", "duration"}`` (s) as the container announces them; VideoDecodeError when
    the file cannot be opened."""
    capture = _open(path)
    try:
        fps, frames = _fps(capture), int(capture.get(_cv2().CAP_PROP_FRAME_COUNT) or 0)
    finally:
        capture.release()
    return {"fps": fps, "frames": frames, "duration": frames / fps if frames > 0 else 0.0}


def expected_samples(path: str | Path, every: float) -> int:
    """How many frames :func:`sample_frames` should yield (0 when the file cannot be opened)."""
    try:
        info = video_info(path)
    except VideoDecodeError:
        return 0
    return int(np.ceil(info["duration"] / every - 1e-9)) if info["duration"] > 0 else 0


def sample_frames(path: str | Path, every: float = 1.0) -> Iterator[Frame]:
    """Yield the frames at 0, ``every``, 2·``every``… seconds, decoding sequentially (``grab`` skips
    the frames in between without converting them)."""
    cv2 = _cv2()
    capture = _open(path)
    try:
        fps = _fps(capture)
        announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        index, next_time = 0, 0.0
        while True:
            time = index / fps
            want = time >= next_time - 0.5 / fps
            if not capture.grab():
                break
            if want:
                ok, bgr = capture.retrieve()
                if not ok or bgr is None:
                    break
                yield Frame(round(time, 3), index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                while next_time <= time + 0.5 / fps:
                    next_time += every
            index += 1
        if index == 0:
            raise VideoDecodeError(str(path), "unsupported", "no frame could be decoded")
        if announced > 0 and index < announced - TRUNCATION_SLACK:
            raise VideoDecodeError(str(path), "truncated", f"frames stop at {index} of {announced}")
    finally:
        capture.release()


def _open(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(str(path), "missing", "no such file")
    capture = _cv2().VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoDecodeError(str(path), "unsupported", "OpenCV cannot open it: corrupt, cut or an unknown codec")
    return capture


def _fps(capture) -> float:
    fps = float(capture.get(_cv2().CAP_PROP_FPS) or 0.0)
    return fps if np.isfinite(fps) and 0 < fps < 1000 else 25.0


def _cv2():
    try:
        import cv2
    except ImportError:
        raise EmoadaptError("videos need OpenCV: pip install opencv-python-headless") from None
    return cv2
