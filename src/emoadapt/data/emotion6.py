"""Emotion6 (Peng et al., CVPR 2015): ``Emotion6/images/<keyword>/<n>.jpg`` + ``ground_truth.txt``.

The folder (the Flickr search keyword) is the label: anger, disgust, fear, joy, sadness, surprise.
``ground_truth.txt`` is tab-separated with a header; each row is ``<keyword>/<n>.jpg``, valence and
arousal (1–9), then 7 vote fractions in the order anger, disgust, fear, joy, sadness, surprise,
neutral. They go into ``Sample.meta``: ``valence``, ``arousal``, ``votes`` (dict) and
``vote_agrees`` — whether the folder is the unique argmax of the votes (``None`` for an image with
no ground-truth row). The shared copy has 1,716 images (264 withheld for independent evaluation).

IER map: joy→happy, sadness→sad, disgust→hate, anger→anger (fear and surprise have no IER class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DatasetLayoutError
from .folder import list_images
from .records import ImageDataset, Sample

EMOTION6_CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
VOTE_NAMES: tuple[str, ...] = EMOTION6_CLASSES + ("neutral",)
EMOTION6_TO_IER: dict[str, str] = {"joy": "happy", "sadness": "sad", "disgust": "hate", "anger": "anger"}


def emotion6_root(path: str | Path) -> Path | None:
    """The Emotion6 folder (with ``images/`` and ``ground_truth.txt``) at or under ``path``."""
    path = Path(path)
    for candidate in (path, path / "Emotion6"):
        if (candidate / "images").is_dir() and (candidate / "ground_truth.txt").is_file():
            return candidate
    return None


def read_ground_truth(path: Path) -> dict[str, dict[str, Any]]:
    """Parse ``ground_truth.txt`` into ``{"joy/1.jpg": {"valence", "arousal", "votes", "vote_agrees"}}``."""
    rows: dict[str, dict[str, Any]] = {}
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines or "image" not in lines[0].lower():
        raise DatasetLayoutError(f"{path}: expected a header row starting with [image_filename]")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.strip().split("\t")
        if len(cells) != 3 + len(VOTE_NAMES):
            raise DatasetLayoutError(f"{path} line {number}: {len(cells)} tab-separated fields, expected "
                                     f"{3 + len(VOTE_NAMES)} (file, valence, arousal, 7 vote fractions)")
        try:
            valence, arousal, *fractions = (float(c) for c in cells[1:])
        except ValueError as exc:
            raise DatasetLayoutError(f"{path} line {number}: {exc}") from None
        name = cells[0].strip().replace("\\", "/")
        votes = dict(zip(VOTE_NAMES, fractions))
        rows[name] = {"valence": valence, "arousal": arousal, "votes": votes,
                      "vote_agrees": unique_argmax(votes) == name.split("/")[0]}
    return rows


def unique_argmax(votes: dict[str, float]) -> str | None:
    """The name with the highest value, or ``None`` when the maximum is shared."""
    top = max(votes.values())
    winners = [k for k, v in votes.items() if v == top]
    return winners[0] if len(winners) == 1 else None


def read_emotion6(root: str | Path) -> ImageDataset:
    """List Emotion6 images with their keyword label and ground-truth votes in ``meta``."""
    folder = emotion6_root(Path(root).resolve())
    if folder is None:
        raise DatasetLayoutError(f"{root} is not Emotion6: expected Emotion6/images/<keyword>/<n>.jpg and "
                                 f"Emotion6/ground_truth.txt")
    truth = read_ground_truth(folder / "ground_truth.txt")
    samples = []
    for label in EMOTION6_CLASSES:
        if not (folder / "images" / label).is_dir():
            continue
        images = sorted(list_images(folder / "images" / label), key=lambda p: (len(p.stem), p.stem))
        for path in images:
            meta = truth.get(f"{label}/{path.name}", {"vote_agrees": None})
            samples.append(Sample(str(path), label, meta=dict(meta)))
    if not samples:
        raise DatasetLayoutError(f"{folder}/images has no <keyword>/*.jpg images "
                                 f"(keywords: {', '.join(EMOTION6_CLASSES)})")
    return ImageDataset("emotion6", str(folder), EMOTION6_CLASSES, samples, to_ier=dict(EMOTION6_TO_IER))
