"""The defaults of face detection and reading, torch- and NumPy-free so that ``emoadapt predict
--help`` can quote them without loading anything."""

from __future__ import annotations

#: smallest face read, in pixels of the original image (side of the detector's square box);
#: smaller faces found are skipped and counted
MIN_FACE = 24

#: the cascade's own window: no face smaller than this (at the detection scale) is ever found
CASCADE_WINDOW = 20

#: most faces read per image (the largest ones); the others are counted
MAX_FACES = 20

#: margin added on every side of a face box before it is read, as a fraction of the box side
MARGIN = 0.10

#: images whose long side is larger are shrunk to this many pixels for detection only (speed)
DETECT_SIDE = 1600

#: OpenCV's bundled Haar cascade (``cv2.data.haarcascades``) used for detection
CASCADE_FILE = "haarcascade_frontalface_alt2.xml"

#: what a result without faces says
NO_FACES = "no faces found"


def check_limits(min_face: int, max_faces: int) -> None:
    """Raise ``EmoadaptError`` when ``min_face`` (px) or ``max_faces`` cannot be honoured."""
    from ..errors import EmoadaptError

    if not isinstance(min_face, int) or min_face < CASCADE_WINDOW:
        raise EmoadaptError(f"min face must be an integer of at least {CASCADE_WINDOW} px (the detector's "
                            f"smallest window), got {min_face!r}")
    if not isinstance(max_faces, int) or max_faces < 1:
        raise EmoadaptError(f"max faces must be a positive integer, got {max_faces!r}")
