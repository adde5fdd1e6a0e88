"""Reading the faces :mod:`.detect` found: each face box widened by a margin, clamped at the
image border, turned grey (the face branch learned FER2013's grey faces) and read in one batch.

Per face: the model's 4 classes on the crop (the model's own fit and flip averaging: how its
FER2013 face accuracy is measured) and, for a model with a FER face branch (the default
FusionNet), that branch's own 7 expressions at its own input size (96 px for the default).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.labels import FER_CLASSES
from .detect import Detections, FaceBox, detect_faces
from .options import MARGIN, MAX_FACES, MIN_FACE, NO_FACES


def crop_box(face: FaceBox, width: int, height: int, margin: float = MARGIN) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` px: ``face`` widened by ``margin`` × its side on every side,
    clamped to the ``width`` × ``height`` image (a face at the border gives a narrower crop)."""
    dx, dy = round(face.w * margin), round(face.h * margin)
    return (max(0, face.x - dx), max(0, face.y - dy), min(width, face.x + face.w + dx),
            min(height, face.y + face.h + dy))


def face_crops(image: Image.Image, faces: list[FaceBox], margin: float = MARGIN) -> list[Image.Image]:
    """The grey crop (as RGB) of each face (:func:`crop_box`) of ``image``."""
    grey = image.convert("L")
    return [grey.crop(crop_box(face, image.width, image.height, margin)).convert("RGB") for face in faces]


@torch.inference_mode()
def expressions(model: Any, batch: torch.Tensor, flip: bool) -> np.ndarray | None:
    """(N, 7) FER expression probabilities from the face branch of ``model`` (a FusionNet) on the
    preprocessed crops ``batch`` (N, 3, S, S) in [0, 1], resized to the branch's input size; the
    mean with the mirrored crops when ``flip``. ``None`` when the model has no 7-class face branch."""
    branches = getattr(model, "branches", None)
    if branches is None or "face" not in branches or branches["face"].config.num_classes != len(FER_CLASSES):
        return None
    x = model.branch_input("face", batch)
    probs = branches["face"](x).softmax(1)
    if flip:
        probs = (probs + branches["face"](x.flip(3)).softmax(1)) / 2
    return probs.double().numpy()


def read_crops(predictor: Any, crops: list[Image.Image]) -> dict[str, Any]:
    """``{"probs": (N, K), "verdicts": [...], "expressions": (N, 7) or None}`` for face crops, by
    ``predictor`` (:class:`emoadapt.predictor.Predictor`) in one batch."""
    batch = torch.stack([predictor.preprocess(crop) for crop in crops])
    out = predictor.predict_outputs(batch)
    return {"probs": out["probs"], "verdicts": out["verdicts"],
            "expressions": expressions(predictor.model, batch, predictor.tta == "flip")}


def read_faces(predictor: Any, image: Image.Image, min_face: int = MIN_FACE, max_faces: int = MAX_FACES,
               margin: float = MARGIN) -> dict[str, Any]:
    """Detect and read every face of ``image`` (RGB ``PIL.Image``).

    Returns ``{"faces": [face…], "count", "skipped_small", "skipped_over_limit", "note"}``; each face
    is ``{"box": [x, y, w, h] px, "crop": [x, y, w, h] px read, "score", "emotion": {class: p},
    "dominant_emotion", "expressions": {FER class: p} or None, "dominant_expression", "uncertain"}``,
    largest face first. ``note`` is :data:`NO_FACES` (with what was skipped) when none is read."""
    found = detect_faces(image, min_face, max_faces)
    faces = []
    if found.faces:
        read = read_crops(predictor, face_crops(image, found.faces, margin))
        faces = [face_result(predictor.classes, face, image.size, margin, read, i) for i, face in enumerate(found.faces)]
    return {"faces": faces, "count": len(faces), "skipped_small": found.small,
            "skipped_over_limit": found.over_limit, "note": None if faces else no_faces_note(found, min_face)}


def face_result(classes: tuple[str, ...], face: FaceBox, size: tuple[int, int], margin: float,
                read: dict[str, Any], index: int) -> dict[str, Any]:
    """One face's entry of :func:`read_faces` from the batch outputs ``read`` at ``index``."""
    left, top, right, bottom = crop_box(face, size[0], size[1], margin)
    emotion = {name: round(float(p), 6) for name, p in zip(classes, read["probs"][index])}
    result = {"box": face.as_list(), "crop": [left, top, right - left, bottom - top], "score": face.score,
              "emotion": emotion, "dominant_emotion": max(emotion, key=emotion.get),
              "expressions": None, "dominant_expression": None,
              "uncertain": bool(read["verdicts"][index]["uncertain"])}
    if read["expressions"] is not None:
        seven = {name: round(float(p), 6) for name, p in zip(FER_CLASSES, read["expressions"][index])}
        result.update(expressions=seven, dominant_expression=max(seven, key=seven.get))
    return result


def no_faces_note(found: Detections, min_face: int) -> str:
    """What a result without faces says: :data:`NO_FACES`, and how many were too small."""
    if found.small:
        return f"{NO_FACES} of at least {min_face} px ({found.small} smaller skipped)"
    return NO_FACES
