"""Face detection with the Haar cascade (Viola-Jones) that ``opencv-python-headless`` bundles
(:data:`~emoadapt.faces.options.CASCADE_FILE`), with a detection score per face.

The cascade finds frontal (and slightly turned) faces whose box is at least its 20 px window at
the detection scale; images with a long side above :data:`~emoadapt.faces.options.DETECT_SIDE`
are shrunk for detection only and the boxes mapped back to the original pixels. The score is the
cascade's last-stage weight (``detectMultiScale3(..., outputRejectLevels=True)``): larger is more
face-like, not a probability (typically 0–10 for weak, above 30 for clear faces).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import EmoadaptError
from .options import CASCADE_FILE, CASCADE_WINDOW, DETECT_SIDE, MAX_FACES, MIN_FACE, check_limits


@dataclass(frozen=True)
class FaceBox:
    """One detected face: its square box ``x, y, w, h`` in pixels of the original image (top-left
    corner, width, height) and the detector's ``score`` (unitless, larger is surer)."""

    x: int
    y: int
    w: int
    h: int
    score: float

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass
class Detections:
    """The faces kept (largest first, at most ``max_faces``) and what was left out: ``small`` faces
    found below ``min_face`` px, ``over_limit`` faces beyond ``max_faces``."""

    faces: list[FaceBox] = field(default_factory=list)
    small: int = 0
    over_limit: int = 0


@functools.lru_cache(maxsize=2)
def cascade(name: str = CASCADE_FILE):
    """The ``cv2.CascadeClassifier`` of OpenCV's bundled file ``name`` (loaded once)."""
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / name
    if folder is None or not path.is_file() or not hasattr(cv2, "CascadeClassifier"):
        raise EmoadaptError(f"face detection needs OpenCV's bundled cascade {name}, not found in this OpenCV "
                            f"({cv2.__version__}); reinstall opencv-python-headless 4.x (emoadapt pins it)")
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise EmoadaptError(f"cannot load the face cascade {path}")
    return classifier


def detect_faces(image: Image.Image, min_face: int = MIN_FACE, max_faces: int = MAX_FACES) -> Detections:
    """Faces in ``image`` (any PIL mode; read as grey): boxes of at least ``min_face`` px, the
    ``max_faces`` largest kept (ties: higher score first), with counts of what was skipped."""
    check_limits(min_face, max_faces)
    grey, scale = detection_grey(image)
    found = raw_detections(grey, scale)
    kept = [face for face in found if face.w >= min_face]
    kept.sort(key=lambda face: (-face.w * face.h, -face.score, face.y, face.x))
    return Detections(faces=kept[:max_faces], small=len(found) - len(kept), over_limit=max(0, len(kept) - max_faces))


def detection_grey(image: Image.Image) -> tuple[np.ndarray, float]:
    """``(grey (H', W') uint8, scale)``: the image in grey, shrunk so its long side is at most
    :data:`DETECT_SIDE` px; ``scale`` = original px per detection px (≥ 1)."""
    grey = image.convert("L")
    scale = max(grey.size) / DETECT_SIDE
    if scale > 1:
        grey = grey.resize((round(grey.width / scale), round(grey.height / scale)), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.uint8), max(scale, 1.0)


def raw_detections(grey: np.ndarray, scale: float = 1.0) -> list[FaceBox]:
    """Every face the cascade finds in ``grey`` (H, W) uint8, boxes multiplied by ``scale`` (to
    original pixels). Settings: scale step 1.1, 3 neighbours, the cascade's own 20 px window."""
    boxes, _levels, weights = cascade().detectMultiScale3(
        grey, scaleFactor=1.1, minNeighbors=3, minSize=(CASCADE_WINDOW, CASCADE_WINDOW), outputRejectLevels=True)
    return [FaceBox(*(int(round(v * scale)) for v in box), score=round(float(weight), 3))
            for box, weight in zip(np.reshape(boxes, (-1, 4)), np.ravel(weights))]
