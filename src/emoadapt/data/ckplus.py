"""CK+48 (the shared copy): ``CK+48/<class>/S<subject>_<sequence>_<frame>.png``.

981 grey 48×48 face crops, the last 3 frames of 327 sequences from 118 subjects. Classes: anger
135, contempt 54, disgust 177, fear 75, happy 207, sadness 84, surprise 249 (no neutral). There is
no official split: split by subject (``Sample.subject`` = ``S005``…), because the frames of one
sequence are near-duplicates.

IER map: happy→happy, sadness→sad, disgust→hate, anger→anger (contempt, fear and surprise have no
IER class).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DatasetLayoutError
from .folder import list_images
from .records import ImageDataset, Sample

CKPLUS_CLASSES: tuple[str, ...] = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
CKPLUS_TO_IER: dict[str, str] = {"happy": "happy", "sadness": "sad", "disgust": "hate", "anger": "anger"}
_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)


def ckplus_root(path: str | Path) -> Path | None:
    """The ``CK+48`` folder at or directly under ``path``, or ``None``."""
    path = Path(path)
    for candidate in (path, path / "CK+48"):
        folders = [candidate / c for c in CKPLUS_CLASSES if (candidate / c).is_dir()]
        if folders and any(_NAME.match(p.name) for p in list_images(folders[0])[:1]):
            return candidate
    return None


def read_ckplus48(root: str | Path) -> ImageDataset:
    """List CK+48 images with their class and subject (``meta``: ``sequence``, ``frame``)."""
    folder = ckplus_root(Path(root).resolve())
    if folder is None:
        raise DatasetLayoutError(f"{root} is not CK+48: expected CK+48/<class>/S###_###_########.png with "
                                 f"classes {', '.join(CKPLUS_CLASSES)}")
    samples = []
    for label in CKPLUS_CLASSES:
        if not (folder / label).is_dir():
            continue
        for path in list_images(folder / label):
            match = _NAME.match(path.name)
            if match is None:
                raise DatasetLayoutError(f"{path}: not a CK+48 file name (expected S<subject>_<sequence>_<frame>.png)")
            subject, sequence, frame = match.groups()
            samples.append(Sample(str(path), label, subject=subject.upper(),
                                  meta={"sequence": sequence, "frame": int(frame)}))
    return ImageDataset("ckplus48", str(folder), CKPLUS_CLASSES, samples, to_ier=dict(CKPLUS_TO_IER))
