"""Class vocabularies and the maps between them (SPEC §3, §5)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import EmoadaptError

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


#: What ``--label-map`` looks like, for help texts and error messages.
LABEL_MAP_EXAMPLE = "joy=happy,sadness=sad,disgust=hate,anger=anger"


def no_ier_map_error(where: str, labels) -> EmoadaptError:
    """The error for a dataset whose labels have no map onto the IER classes: what is wrong and
    the option that fixes it (``--label-map``; ``label_map=`` in Python)."""
    return EmoadaptError(f"{where}: its labels {sorted(labels)} have no map onto the IER classes "
                         f"{', '.join(IER_CLASSES)}; give one with --label-map LABEL=CLASS,... "
                         f"(e.g. --label-map {LABEL_MAP_EXAMPLE}, or a file of such pairs)")


def parse_label_map(spec: str) -> dict[str, str]:
    """A map from a dataset's labels to the IER classes, as ``--label-map`` gives it: pairs
    ``joy=happy,sadness=sad`` or the path of a file holding the same pairs (one ``label=class`` per
    line, or a JSON object ``{"joy": "happy"}``)."""
    return checked_label_map(read_label_pairs(spec), spec)


def read_label_pairs(spec: str) -> dict[str, str]:
    """``label=class`` pairs from ``spec`` (``a=b,c=d`` or a file of such pairs, or a JSON object),
    onto any class names (:func:`parse_label_map` also checks that they are IER classes)."""
    path = Path(spec)
    if path.is_file():
        text = path.read_text(encoding="utf-8-sig").strip()
        return _json_pairs(text, spec) if text.startswith("{") else _text_pairs(text.splitlines(), spec)
    return _text_pairs(spec.split(","), spec)


def _text_pairs(items, source: str) -> dict[str, str]:
    """``label=class`` items (blank ones and ``#`` comments skipped) as a dict."""
    pairs = {}
    for item in (i.strip() for i in items):
        if not item or item.startswith("#"):
            continue
        label, sep, target = item.partition("=")
        if not sep or not label.strip() or not target.strip():
            raise EmoadaptError(f"--label-map {source}: expected LABEL=CLASS pairs (e.g. {LABEL_MAP_EXAMPLE}), "
                                f"got {item!r}")
        pairs[label.strip()] = target.strip()
    return pairs


def _json_pairs(text: str, source: str) -> dict[str, str]:
    try:
        pairs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EmoadaptError(f"--label-map {source}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(pairs, dict) or not all(isinstance(v, str) for v in pairs.values()):
        raise EmoadaptError(f"--label-map {source}: expected a JSON object of label: class strings")
    return pairs


def checked_label_map(pairs: dict[str, str], source: str = "label_map") -> dict[str, str]:
    """``pairs`` when it names at least one label and every target is an IER class."""
    if not pairs:
        raise EmoadaptError(f"--label-map {source}: no LABEL=CLASS pair (e.g. {LABEL_MAP_EXAMPLE})")
    wrong = sorted({target for target in pairs.values() if target not in IER_CLASSES})
    if wrong:
        raise EmoadaptError(f"--label-map {source}: {', '.join(wrong)} is not an IER class; "
                            f"map labels onto {', '.join(IER_CLASSES)}")
    return dict(pairs)
