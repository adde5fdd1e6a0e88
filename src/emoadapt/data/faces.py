"""Face cropping with the Haar cascade (Viola-Jones) that ``opencv-python-headless`` bundles, for
datasets whose images are not face crops (JAFFE: 256×256 with hair and background).

``crop_face(image)`` returns the largest detected face, widened by a small margin and made square,
or a centre crop when no face is found, together with an ``info`` dict that records which
(``info["face_found"]``). The cascade file is ``cv2.data.haarcascades +
"haarcascade_frontalface_default.xml"``, or ``$EMOADAPT_HAAR_CASCADE`` when set.
(OpenCV 5 wheels no longer ship cascades nor ``CascadeClassifier``; emoadapt pins OpenCV 4.)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

CASCADE_NAME = "haarcascade_frontalface_default.xml"

Box = tuple[int, int, int, int]  # x, y, width, height
Detector = Callable[[np.ndarray, int], list[Box]]


def find_cascade(name: str = CASCADE_NAME) -> Path | None:
    """``$EMOADAPT_HAAR_CASCADE`` when set, else OpenCV's bundled file, else ``None``."""
    custom = os.environ.get("EMOADAPT_HAAR_CASCADE")
    if custom:
        return Path(custom)
    import cv2

    path = Path(getattr(cv2, "data", None).haarcascades if hasattr(cv2, "data") else "") / name
    return path if path.is_file() else None


@functools.lru_cache(maxsize=4)
def face_detector(cascade: str | None = None) -> tuple[Detector, str] | None:
    """``(detect(grey (H, W) uint8, min_size px) -> boxes, "opencv")``, or ``None`` without a cascade."""
    import cv2

    path = Path(cascade) if cascade else find_cascade()
    if path is None or not hasattr(cv2, "CascadeClassifier"):
        return None
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        return None

    def detect(grey: np.ndarray, min_size: int) -> list[Box]:
        found = classifier.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=3, minSize=(min_size, min_size))
        return [tuple(int(v) for v in box) for box in found]

    return detect, "opencv"


def crop_face(image: Image.Image, *, margin: float = 0.1, min_face: float = 0.2, fallback: float = 0.8,
              cascade: str | None = None) -> tuple[Image.Image, dict[str, Any]]:
    """Crop the largest face in ``image`` (any mode); fall back to a centre crop.

    Args:
        margin: widen the face box by this fraction of its size on every side.
        min_face: ignore faces smaller than this fraction of the image's short side.
        fallback: side of the centre square, as a fraction of the short side, when no face is found.
        cascade: cascade XML file (default: :func:`find_cascade`).

    Returns:
        ``(crop, info)``; ``info`` has ``face_found`` (bool), ``box`` (the face ``[x, y, w, h]`` or
        ``None``), ``crop`` (``[left, top, right, bottom]``), ``faces`` (how many were found) and
        ``detector`` (``"opencv"``, or ``None`` when no cascade is available).
    """
    width, height = image.size
    short = min(width, height)
    detector = face_detector(cascade)
    boxes: list[Box] = []
    if detector is not None:
        grey = np.asarray(image.convert("L"), dtype=np.uint8)
        boxes = detector[0](grey, max(1, int(short * min_face)))
    info: dict[str, Any] = {"face_found": bool(boxes), "faces": len(boxes),
                            "detector": detector[1] if detector else None, "box": None}
    if boxes:
        x, y, w, h = max(boxes, key=lambda b: (b[2] * b[3], -b[1], -b[0]))
        info["box"] = [x, y, w, h]
        side = round(max(w, h) * (1 + 2 * margin))
        centre = (x + w / 2, y + h / 2)
    else:
        side = round(short * fallback)
        centre = (width / 2, height / 2)
    side = min(side, short)
    left = int(min(max(round(centre[0] - side / 2), 0), width - side))
    top = int(min(max(round(centre[1] - side / 2), 0), height - side))
    info["crop"] = [left, top, left + side, top + side]
    return image.crop((left, top, left + side, top + side)), info
