"""IAPSa: the subset of the International Affective Picture System that Mikels et al. (2005)
labelled with eight emotions (amusement, anger, awe, contentment, disgust, excitement, fear,
sadness). Two layouts are read:

* a folder per emotion, ``ROOT/<emotion>/<IAPS number>.jpg`` (as FI);
* a list file (``.csv`` or ``.txt``) of ``file,label`` rows next to the images: comma-, tab- or
  space-separated, an optional header (``file``/``path``/``filename``/``image`` and
  ``label``/``emotion``/``category``), ``#`` comments. File names are relative to the list's folder
  and must stay inside it; a name without extension (``1050``) matches ``1050.jpg`` etc. An image
  listed twice with different emotions (Mikels' blended categories) gets ``label=None`` and
  ``meta["labels"]`` with all of them, so it is left out of training and of the IER set.

IER map (:data:`~emoadapt.data.labels.MIKELS_TO_IER`): amusement, awe, contentment and
excitement → happy; sadness → sad; disgust → hate; anger → anger; fear is dropped.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..errors import DatasetLayoutError
from .csvfile import check_exist, resolve_inside
from .fi import read_mikels_folder
from .folder import IMAGE_EXTENSIONS
from .labels import MIKELS_CLASSES, MIKELS_TO_IER
from .records import ImageDataset, Sample

LIST_SUFFIXES = (".csv", ".txt", ".tsv")
_FILE_COLUMNS = ("file", "path", "filename", "image", "image_id", "name")
_LABEL_COLUMNS = ("label", "emotion", "category", "class")


def read_iaps(path: str | Path) -> ImageDataset:
    """Read IAPSa from a folder per emotion or from a ``file,label`` list file."""
    path = Path(path).resolve()
    if path.is_file():
        return read_iaps_list(path)
    return read_mikels_folder(path, "iaps")


def _split_line(line: str) -> list[str]:
    if "," in line:
        return [cell.strip() for cell in next(csv.reader([line]))]
    return line.split("\t") if "\t" in line else line.split()


def _columns(first: list[str]) -> tuple[int, int, bool]:
    """``(file column, label column, has_header)`` from the first row."""
    names = [c.strip().lower() for c in first]
    file_col = next((names.index(c) for c in _FILE_COLUMNS if c in names), None)
    label_col = next((names.index(c) for c in _LABEL_COLUMNS if c in names), None)
    if file_col is not None and label_col is not None:
        return file_col, label_col, True
    return 0, 1, False


def _find_image(root: Path, value: str, where: str) -> Path:
    path = resolve_inside(root, value, where)
    if path.suffix.lower() not in IMAGE_EXTENSIONS and not path.exists():
        for ext in sorted(IMAGE_EXTENSIONS):
            for candidate in (path.with_name(path.name + ext), path.with_name(path.name + ext.upper())):
                if candidate.is_file():
                    return candidate
    return path


def read_iaps_list(list_path: str | Path, *, check_files: bool = True) -> ImageDataset:
    """Read a ``file,label`` list (see the module docstring)."""
    list_path = Path(list_path).resolve()
    root = list_path.parent
    rows = [(n, line) for n, line in enumerate(list_path.read_text(encoding="utf-8-sig").splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise DatasetLayoutError(f"{list_path} is empty: expected file,label rows")
    file_col, label_col, has_header = _columns(_split_line(rows[0][1]))
    labels: dict[Path, list[str]] = {}
    for number, line in rows[1:] if has_header else rows:
        cells, where = _split_line(line), f"{list_path} row {number}"
        if len(cells) <= max(file_col, label_col):
            raise DatasetLayoutError(f"{where}: expected file and label columns, got {line.strip()!r}")
        label = re.sub(r"\s+", "", cells[label_col]).lower()
        if label not in MIKELS_CLASSES:
            raise DatasetLayoutError(f"{where}: unknown emotion {cells[label_col]!r} "
                                     f"(expected one of {', '.join(MIKELS_CLASSES)})")
        path = _find_image(root, cells[file_col], where)
        labels.setdefault(path, [])
        if label not in labels[path]:
            labels[path].append(label)
    samples = [Sample(str(p), found[0] if len(found) == 1 else None, meta={"labels": found} if len(found) > 1 else {})
               for p, found in labels.items()]
    if check_files:
        check_exist(samples, list_path)
    return ImageDataset("iaps", str(root), MIKELS_CLASSES, samples, to_ier=dict(MIKELS_TO_IER))
