"""A folder per class, the common convention: ``ROOT/<class>/<image>``.

Image files are recognised by extension (``jpg jpeg png bmp gif tif tiff webp``, any case); other
files and hidden files (``.DS_Store``, ``._x.jpg``) are ignored. Classes are the sub-folder names,
sorted; a ``label_map`` renames them (or drops a folder when it maps to ``None``).
"""

from __future__ import annotations

import glob
from pathlib import Path

from ..errors import DatasetLayoutError
from .labels import identity_or_fer_map
from .records import ImageDataset, Sample

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def is_image_file(path: Path) -> bool:
    """True for a regular, non-hidden file with an image extension (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def list_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def class_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` that hold at least one image, sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and list_images(p))


def looks_like_folder(root: Path) -> bool:
    return root.is_dir() and bool(class_folders(root))


def read_folder(root: str | Path, *, label_map: dict[str, str | None] | None = None, name: str = "folder",
                to_ier: dict[str, str] | None = None) -> ImageDataset:
    """List ``ROOT/<class>/*`` images.

    Args:
        root: the dataset folder.
        label_map: folder name → label; a folder mapped to ``None`` is skipped, folders not in the
            map keep their own name.
        name: the dataset name recorded in the result.
        to_ier: map from labels to IER classes (default: identity when the labels are IER classes,
            the FER map when they are FER classes, else none).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} is not a folder")
    folders = class_folders(root)
    if not folders:
        raise DatasetLayoutError(f"{root} has no class sub-folders with images (expected ROOT/<class>/*.jpg; "
                                 f"image extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    label_map = label_map or {}
    samples = []
    for folder in folders:
        label = label_map.get(folder.name, folder.name)
        if label is not None:
            samples += [Sample(str(path), label) for path in list_images(folder)]
    classes = tuple(sorted({s.label for s in samples}))
    return ImageDataset(name, str(root), classes, samples, to_ier=to_ier or identity_or_fer_map(classes))


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given, folders expanded to their image files (recursive, sorted), globs expanded.
    A name that matches nothing is kept so that it is reported as missing."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if is_image_file(p))
        elif not path.exists() and glob.has_magic(item):
            paths += [Path(p) for p in sorted(glob.glob(item, recursive=True))]
        else:
            paths.append(path)
    return paths
