"""Reading the faces :mod:`.detect` found: each face box widened by a margin, clamped at the
image border, turned grey (the face branch learned FER2013's grey faces) and read in one batch.

Per face, for a model with a FER face branch (the default FusionNet): that branch's own 7
expressions at its own input size (96 px for the default; the crop fitted as the model fits any
image, flip averaging as the model's ``tta`` says) and the 4 classes they map to. Any other model
reads the crop whole (its 4 classes, no expressions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.labels import FER_CLASSES, FER_TO_IER
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


def face_branch(model: Any) -> Any:
    """The 7-class FER face branch of ``model`` (a FusionNet's ``branches["face"]``), or ``None``."""
    branches = getattr(model, "branches", None)
    if branches is None or "face" not in branches or branches["face"].config.num_classes != len(FER_CLASSES):
        return None
    return branches["face"]


@torch.inference_mode()
def expressions(model: Any, batch: torch.Tensor, flip: bool) -> np.ndarray:
    """(N, 7) FER expression probabilities from the face branch of ``model`` on the preprocessed
    crops ``batch`` (N, 3, S, S) in [0, 1], resized to the branch's own input size (96 px for the
    default model); the mean with the mirrored crops when ``flip``."""
    branch = face_branch(model)
    x = model.branch_input("face", batch)
    probs = branch(x).softmax(1)
    if flip:
        probs = (probs + branch(x.flip(3)).softmax(1)) / 2
    return probs.double().numpy()


def mapped_classes(seven: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """(N, K) probabilities of the model's ``classes`` from (N, 7) FER expressions: each class gets
    its FER class (:data:`FER_TO_IER`: happy, sad, disgust→hate, angry→anger), renormalised to sum
    to 1 (fear, neutral and surprise have no class)."""
    back = {ier: fer for fer, ier in FER_TO_IER.items()}
    picked = seven[:, [FER_CLASSES.index(back[name]) for name in classes]]
    return picked / np.clip(picked.sum(axis=1, keepdims=True), 1e-12, None)


def read_crops(predictor: Any, crops: list[Image.Image]) -> dict[str, Any]:
    """``{"probs": (N, K), "expressions": (N, 7) or None, "reader"}`` for face crops, in one batch.

    With a 7-class FER face branch (the default model): ``reader`` is ``"face-branch"``, the
    expressions come from the branch alone at its own input size and ``probs`` are their
    :func:`mapped_classes` — a tenth of the cost of the whole model (the scene branch runs at
    224 px) for the same accuracy on FER2013 faces (docs/faces.md). Otherwise ``reader`` is
    ``"model"``: the model's calibrated output on each crop, no expressions."""
    batch = torch.stack([predictor.preprocess(crop) for crop in crops])
    if face_branch(predictor.model) is not None and set(predictor.classes) <= set(FER_TO_IER.values()):
        seven = expressions(predictor.model, batch, predictor.tta == "flip")
        return {"probs": mapped_classes(seven, predictor.classes), "expressions": seven, "reader": "face-branch"}
    return {"probs": predictor.predict_outputs(batch)["probs"], "expressions": None, "reader": "model"}


def read_faces(predictor: Any, image: Image.Image, min_face: int = MIN_FACE, max_faces: int = MAX_FACES,
               margin: float = MARGIN) -> dict[str, Any]:
    """Detect and read every face of ``image`` (RGB ``PIL.Image``).

    Returns ``{"faces": [face…], "count", "skipped_small", "skipped_over_limit", "note"}``; each face
    is ``{"box": [x, y, w, h] px, "crop": [x, y, w, h] px read, "score", "emotion": {class: p},
    "dominant_emotion", "expressions": {FER class: p} or None, "dominant_expression", "reader"}``
    (:func:`read_crops`),
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
              "expressions": None, "dominant_expression": None, "reader": read["reader"]}
    if read["expressions"] is not None:
        seven = {name: round(float(p), 6) for name, p in zip(FER_CLASSES, read["expressions"][index])}
        result.update(expressions=seven, dominant_expression=max(seven, key=seven.get))
    return result


def no_faces_note(found: Detections, min_face: int) -> str:
    """What a result without faces says: :data:`NO_FACES`, and how many were too small."""
    if found.small:
        return f"{NO_FACES} of at least {min_face} px ({found.small} smaller skipped)"
    return NO_FACES
