"""FER2013 in the shared layout: ``ROOT/{train,test}/<class>/<Split>_<id>.jpg``.

The official split comes from the file-name prefix: ``Training`` (28,709), ``PublicTest``
(3,589; validation) and ``PrivateTest`` (3,589; test)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetLayoutError
from .labels import FER_CLASSES, FER_TO_IER
from .records import ImageDataset, Sample

SPLITS = ("Training", "PublicTest", "PrivateTest")


def looks_like_fer2013(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir() and any(
        (root / "train" / c).is_dir() for c in FER_CLASSES)


def read_fer2013(root: str | Path) -> ImageDataset:
    """List FER2013 images with their label and official split."""
    root = Path(root).resolve()
    if not looks_like_fer2013(root):
        raise DatasetLayoutError(f"{root} is not FER2013: expected train/<class>/ and test/<class>/ folders "
                                 f"with classes {', '.join(FER_CLASSES)}")
    samples = []
    for part in ("train", "test"):
        for label in FER_CLASSES:
            folder = root / part / label
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                split = path.name.split("_", 1)[0]
                if split not in SPLITS or not path.is_file():
                    continue
                samples.append(Sample(str(path), label, split=split))
    return ImageDataset("fer2013", str(root), FER_CLASSES, samples, to_ier=dict(FER_TO_IER))
