"""ArtPhoto (Machajdik & Hanbury, ACM MM 2010): one flat folder of artistic photographs named
``<emotion>_<n>.jpg`` (e.g. ``amusement_12.jpg``), labelled with the eight Mikels emotions
(amusement, anger, awe, contentment, disgust, excitement, fear, sadness). The folder may be the
root itself or its only sub-folder (the archive unpacks to ``testImages_artphoto/``).

IER map (:data:`~emoadapt.data.labels.MIKELS_TO_IER`): amusement, awe, contentment and
excitement → happy; sadness → sad; disgust → hate; anger → anger; fear is dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DatasetLayoutError
from .folder import list_images
from .labels import MIKELS_CLASSES, MIKELS_TO_IER
from .records import ImageDataset, Sample

_NAME = re.compile(r"^([a-z]+)_?(\d+)$", re.IGNORECASE)


def parse_artphoto_name(path: Path) -> str | None:
    """The Mikels label in an ArtPhoto file name (``anger_3.jpg`` → ``anger``), or ``None``."""
    match = _NAME.match(path.stem)
    label = match.group(1).lower() if match else None
    return label if label in MIKELS_CLASSES else None


def artphoto_root(path: str | Path) -> Path | None:
    """The flat folder of ArtPhoto images at ``path`` or its only sub-folder, or ``None``."""
    path = Path(path)
    if not path.is_dir():
        return None
    subfolders = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for candidate in [path] + (subfolders if len(subfolders) == 1 else []):
        images = list_images(candidate)
        if images and all(parse_artphoto_name(p) for p in images):
            return candidate
    return None


def read_artphoto(root: str | Path) -> ImageDataset:
    """List ArtPhoto images with the Mikels label from their file name."""
    root = Path(root).resolve()
    folder = artphoto_root(root)
    if folder is None:
        bad = [p.name for p in list_images(root) if not parse_artphoto_name(p)][:5] if root.is_dir() else []
        raise DatasetLayoutError(f"{root} is not ArtPhoto: expected a flat folder of <emotion>_<n>.jpg files with "
                                 f"emotions {', '.join(MIKELS_CLASSES)}"
                                 + (f"; these names do not fit: {', '.join(bad)}" if bad else ""))
    samples = [Sample(str(p), parse_artphoto_name(p)) for p in list_images(folder)]
    return ImageDataset("artphoto", str(folder), MIKELS_CLASSES, samples, to_ier=dict(MIKELS_TO_IER))
