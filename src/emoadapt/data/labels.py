"""Class vocabularies and the maps between them (SPEC §3, §5)."""

from __future__ import annotations

#: FER2013 order (also the order of the FER model's outputs).
FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

#: The 4 image-emotion classes emoadapt predicts, in output order.
IER_CLASSES: tuple[str, ...] = ("happy", "sad", "hate", "anger")

#: FER label → IER label (SPEC §3). fear, neutral and surprise have no IER class.
FER_TO_IER: dict[str, str] = {"happy": "happy", "sad": "sad", "disgust": "hate", "angry": "anger"}


#: Face-dataset label spellings → FER class names (CK+ says ``anger``/``sadness``).
FACE_ALIASES: dict[str, str] = {"anger": "angry", "sadness": "sad"}


def fer_classes_in_ier_order() -> list[str]:
    """The FER class behind each IER class, in IER output order: happy, sad, disgust, angry."""
    return [next(fer for fer, to in FER_TO_IER.items() if to == ier) for ier in IER_CLASSES]


#: Mikels et al. (2005) emotion categories used by FI, ArtPhoto and IAPSa.
MIKELS_CLASSES: tuple[str, ...] = ("amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear",
                                   "sadness")

#: Mikels category → IER class. The four positive categories (amusement, awe, contentment,
#: excitement) all become ``happy``: the IER label set has one positive class, and awe is rated
#: positive in Mikels et al. ``fear`` has no IER class (as FER ``fear`` has none) and is dropped.
MIKELS_TO_IER: dict[str, str] = {"amusement": "happy", "awe": "happy", "contentment": "happy",
                                 "excitement": "happy", "sadness": "sad", "disgust": "hate", "anger": "anger"}


def identity_or_fer_map(classes: tuple[str, ...] | list[str]) -> dict[str, str] | None:
    """The IER map a generic dataset gets from its class names: identity when they are IER
    classes, :data:`FER_TO_IER` when they are FER classes, else ``None``."""
    names = set(classes)
    if names and names <= set(IER_CLASSES):
        return {c: c for c in IER_CLASSES}
    if names and names <= set(FER_CLASSES):
        return dict(FER_TO_IER)
    return None


def fer_to_ier_indices(fer_labels):
    """FER class indices (an integer array) → IER indices, −1 where the FER class has no IER class."""
    import numpy as np

    table = np.full(len(FER_CLASSES), -1, dtype=np.int64)
    for fer, ier in FER_TO_IER.items():
        table[FER_CLASSES.index(fer)] = IER_CLASSES.index(ier)
    return table[fer_labels]
