"""FI, the Flickr & Instagram set (You et al., AAAI 2016), in its distributed layout: a folder per
Mikels emotion, ``ROOT/<emotion>/<emotion>_<n>.jpg``, with the eight folders amusement, anger,
awe, contentment, disgust, excitement, fear, sadness (folder names are matched case-insensitively).

IER map (:data:`~emoadapt.data.labels.MIKELS_TO_IER`): amusement, awe, contentment and
excitement → happy; sadness → sad; disgust → hate; anger → anger; fear has no IER class and is
dropped by ``to_ier_dataset()``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import DatasetLayoutError
from .folder import class_folders, read_folder
from .labels import MIKELS_CLASSES, MIKELS_TO_IER
from .records import ImageDataset


def looks_like_mikels_folder(root: Path) -> bool:
    """True when ``root``'s class folders are all Mikels emotions (at least two of them)."""
    names = {p.name.lower() for p in class_folders(root)} if root.is_dir() else set()
    return len(names) >= 2 and names <= set(MIKELS_CLASSES)


def read_mikels_folder(root: str | Path, name: str) -> ImageDataset:
    """A folder-per-class set labelled with Mikels emotions (FI, IAPSa), mapped with MIKELS_TO_IER."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} is not a folder")
    folders = [p.name for p in class_folders(root)]
    unknown = [f for f in folders if f.lower() not in MIKELS_CLASSES]
    if unknown or not folders:
        raise DatasetLayoutError(f"{root}: expected one folder per Mikels emotion ({', '.join(MIKELS_CLASSES)}); "
                                 f"found {', '.join(unknown) if unknown else 'no class folders with images'}")
    dataset = read_folder(root, label_map={f: f.lower() for f in folders}, name=name, to_ier=dict(MIKELS_TO_IER))
    return replace(dataset, classes=MIKELS_CLASSES)


def read_fi(root: str | Path) -> ImageDataset:
    """List FI images with their Mikels label."""
    return read_mikels_folder(root, "fi")
