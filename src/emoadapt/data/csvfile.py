"""A CSV list of images: a header row, then ``path,label[,split][,subject]`` rows.

Paths are relative to the CSV file's folder (absolute paths are allowed when they lie inside the
dataset root). A path that resolves outside the root — ``../x.jpg``, an absolute path elsewhere, or
a symlink that points out — is refused with a :class:`DatasetLayoutError` naming the row, so a
shared CSV cannot make emoadapt read arbitrary files. An empty label means "unlabelled".
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DatasetLayoutError
from .labels import identity_or_fer_map
from .records import ImageDataset, Sample

REQUIRED_COLUMNS = ("path", "label")
OPTIONAL_COLUMNS = ("split", "subject")


def resolve_inside(root: Path, value: str, where: str) -> Path:
    """Resolve ``value`` (relative to ``root``, or absolute) and check it stays inside ``root``.

    Args:
        root: the resolved dataset root.
        value: the path as written in the file.
        where: ``"FILE row N"``, used in error messages.
    """
    if not value.strip():
        raise DatasetLayoutError(f"{where}: empty path")
    path = (root / value.strip()).resolve()
    if not path.is_relative_to(root):
        raise DatasetLayoutError(f"{where}: path {value!r} resolves to {path}, outside the dataset root {root}; "
                                 f"paths must stay inside the root (no '..', no links pointing out)")
    return path


def read_header(handle, source: Path) -> list[str]:
    """Read the header row (lower-cased, stripped); an empty file is a layout error."""
    header = next(csv.reader(handle), None)
    if not header:
        raise DatasetLayoutError(f"{source} is empty: expected a header row such as 'path,label'")
    return [h.strip().lower().lstrip("\ufeff") for h in header]


def read_csv_dataset(csv_path: str | Path, *, root: str | Path | None = None, name: str = "csv",
                     check_files: bool = True) -> ImageDataset:
    """Read a ``path,label[,split][,subject]`` CSV.

    Args:
        csv_path: the CSV file.
        root: dataset root that every path must stay inside (default: the CSV's folder).
        name: dataset name recorded in the result.
        check_files: raise when listed files do not exist.
    """
    csv_path = Path(csv_path).resolve()
    root = Path(root).resolve() if root is not None else csv_path.parent
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        header = read_header(handle, csv_path)
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DatasetLayoutError(f"{csv_path}: missing column(s) {', '.join(missing)}; the header has "
                                     f"{', '.join(header) or 'nothing'} (expected path,label[,split][,subject])")
        index = {c: header.index(c) for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in header}
        samples = []
        for row_number, row in enumerate(csv.reader(handle), start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{csv_path} row {row_number}"
            if len(row) < len(header):
                raise DatasetLayoutError(f"{where}: {len(row)} column(s), the header has {len(header)}")
            cell = {c: row[i].strip() for c, i in index.items()}
            path = resolve_inside(root, cell["path"], where)
            samples.append(Sample(str(path), cell["label"] or None, split=cell.get("split") or None,
                                  subject=cell.get("subject") or None))
    if check_files:
        check_exist(samples, csv_path)
    classes = tuple(sorted({s.label for s in samples if s.label is not None}))
    return ImageDataset(name, str(root), classes, samples, to_ier=identity_or_fer_map(classes))


def check_exist(samples: list[Sample], source: Path) -> None:
    """Raise a :class:`DatasetLayoutError` listing (up to 5) files that ``source`` names but are missing."""
    missing = [s.path for s in samples if not Path(s.path).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetLayoutError(f"{source}: {len(missing)} listed file(s) do not exist: {shown}")
