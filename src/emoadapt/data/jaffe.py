"""JAFFE (the shared copy): ``jaffedbase/<subject>.<code><n>.<id>.tiff``, e.g. ``KA.AN1.39.tiff``.

213 grey 256×256 TIFFs of 10 subjects (KA KL KM KR MK NA NM TM UY YM); 23 of them are mode ``P``
with a grey palette (``decode_image`` converts them). The two letters after the first dot are the
expression: AN angry, DI disgust, FE fear, HA happy, NE neutral, SA sad, SU surprise — mapped to
the FER class names, so the FER→IER map applies (happy, sad, disgust→hate, angry→anger).
No official split: split by subject (``Sample.subject``).

The images include hair and background, so the dataset's loader crops the face first
(:class:`FaceCropLoader`, Haar cascade, see :mod:`emoadapt.data.faces`); pass ``crop_faces=False``
for the raw images.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import DatasetLayoutError
from .faces import crop_face
from .folder import list_images
from .labels import FER_CLASSES, FER_TO_IER
from .records import ImageDataset, Sample

JAFFE_CODES: dict[str, str] = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral",
                               "SA": "sad", "SU": "surprise"}
_NAME = re.compile(r"^([A-Z]{2})\.([A-Z]{2})(\d+)\.(\d+)\.tiff?$", re.IGNORECASE)


class FaceCropLoader:
    """An :attr:`ImageDataset.loader` that decodes an image and crops its largest face.

    ``info[path]`` keeps the :func:`~emoadapt.data.faces.crop_face` result of every image loaded
    so far (``face_found``, ``box``, ``crop``, ``detector``).
    """

    def __init__(self, margin: float = 0.1, min_face: float = 0.2):
        self.margin = margin
        self.min_face = min_face
        self.info: dict[str, dict[str, Any]] = {}

    def __call__(self, sample: Sample, mode: str = "RGB") -> Image.Image:
        image, info = crop_face(sample.load(mode), margin=self.margin, min_face=self.min_face)
        self.info[sample.path] = info
        return image


def jaffe_root(path: str | Path) -> Path | None:
    """The folder of JAFFE TIFFs at ``path`` or ``path/jaffedbase``, or ``None``."""
    path = Path(path)
    for candidate in (path, path / "jaffedbase"):
        if candidate.is_dir() and any(_NAME.match(p.name) for p in list_images(candidate)):
            return candidate
    return None


def read_jaffe(root: str | Path, *, crop_faces: bool = True) -> ImageDataset:
    """List JAFFE images with FER labels and subjects (``meta``: ``code``, ``take``)."""
    folder = jaffe_root(Path(root).resolve())
    if folder is None:
        raise DatasetLayoutError(f"{root} is not JAFFE: expected jaffedbase/XX.AN1.39.tiff files")
    samples = []
    for path in list_images(folder):
        match = _NAME.match(path.name)
        if match is None:
            continue  # README and other images that are not JAFFE shots
        subject, code, take, _ = match.groups()
        label = JAFFE_CODES.get(code.upper())
        if label is None:
            raise DatasetLayoutError(f"{path}: unknown JAFFE expression code {code!r} "
                                     f"(expected one of {', '.join(JAFFE_CODES)})")
        meta = {"code": code.upper(), "take": int(take)}
        samples.append(Sample(str(path), label, subject=subject.upper(), meta=meta))
    return ImageDataset("jaffe", str(folder), FER_CLASSES, samples, to_ier=dict(FER_TO_IER),
                        loader=FaceCropLoader() if crop_faces else None)
