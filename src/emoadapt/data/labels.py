"""Class vocabularies and the maps between them (SPEC §3, §5)."""

from __future__ import annotations

#: FER2013 order (also the order of the FER model's outputs).
FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

#: The 4 image-emotion classes emoadapt predicts, in output order.
IER_CLASSES: tuple[str, ...] = ("happy", "sad", "hate", "anger")

#: FER label → IER label (SPEC §3). fear, neutral and surprise have no IER class.
FER_TO_IER: dict[str, str] = {"happy": "happy", "sad": "sad", "disgust": "hate", "angry": "anger"}


def fer_to_ier_indices() -> list[tuple[int, int]]:
    """Pairs ``(fer_index, ier_index)`` for the mapped classes, in IER order."""
    return [(FER_CLASSES.index(f), IER_CLASSES.index(i)) for i in IER_CLASSES
            for f, j in FER_TO_IER.items() if j == i]
