"""EMOTIC (Kosti et al., 2017/2019): people in context, each person box annotated with any of 26
emotion categories. Read from the commonly distributed CSV annotation files (``annot_arrs_train.csv``,
``annot_arrs_val.csv``, ``annot_arrs_test.csv``), one row per person:

* image: ``Filename`` plus an optional ``Folder`` (``mscoco/images``…), relative to the images
  root — by default the CSV's folder, or its parent when the images are found there;
* person box: a ``BBox`` column ``[x1, y1, x2, y2]``, or four columns ``x1,y1,x2,y2``;
* categories: a ``Categorical_Labels`` column (``['Engagement', 'Happiness']``, or names separated
  by ``;`` or ``|``), or 26 one-hot columns named after the categories;
* split: a ``split`` column, else ``train``/``val``/``test`` from the CSV's file name.

Each person box becomes one :class:`Sample` (``meta``: ``bbox``, ``categories``, ``person``: index of
the box within its image); the dataset's loader crops the box (``crop_person=False`` for whole
images). Splits keep all boxes of one image together (:mod:`emoadapt.data.splits` groups by path).

Labels are the 4 IER classes, by this rule: each category votes for at most one class —
Happiness, Pleasure, Affection → happy; Sadness, Suffering → sad; Aversion → hate (EMOTIC has no
disgust category); Anger, Annoyance → anger; the other 17 categories vote for none. A person whose
categories vote for exactly one class gets it; a person with no vote (no match) or votes for two or
more classes (ambiguous) is dropped — or kept with ``label=None`` when ``keep_unmapped=True``.
"""

from __future__ import annotations

import ast
import csv
import re
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import DatasetLayoutError, ImageDecodeError
from .csvfile import check_exist, read_header, resolve_inside
from .labels import IER_CLASSES
from .records import ImageDataset, Sample

EMOTIC_CATEGORIES: tuple[str, ...] = (
    "Affection", "Anger", "Annoyance", "Anticipation", "Aversion", "Confidence", "Disapproval", "Disconnection",
    "Disquietment", "Doubt/Confusion", "Embarrassment", "Engagement", "Esteem", "Excitement", "Fatigue", "Fear",
    "Happiness", "Pain", "Peace", "Pleasure", "Sadness", "Sensitivity", "Suffering", "Surprise", "Sympathy",
    "Yearning")

#: Category → IER class; categories not listed vote for no class.
EMOTIC_TO_IER: dict[str, str] = {"Happiness": "happy", "Pleasure": "happy", "Affection": "happy",
                                 "Sadness": "sad", "Suffering": "sad", "Aversion": "hate",
                                 "Anger": "anger", "Annoyance": "anger"}

_CANONICAL = {c.lower(): c for c in EMOTIC_CATEGORIES}
_SPLIT_WORDS = (("train", "train"), ("val", "val"), ("test", "test"))


def emotic_label(categories: list[str]) -> str | None:
    """The IER class of a person with these categories, or ``None`` (no match or ambiguous)."""
    votes = {EMOTIC_TO_IER[c] for c in categories if c in EMOTIC_TO_IER}
    return votes.pop() if len(votes) == 1 else None


def is_emotic_header(header: list[str]) -> bool:
    """True when a (lower-cased) CSV header looks like an EMOTIC annotation file."""
    has_box = "bbox" in header or {"x1", "y1", "x2", "y2"} <= set(header)
    has_categories = "categorical_labels" in header or "categories" in header or \
        sum(c in _CANONICAL for c in header) >= 13
    return "filename" in header and has_box and has_categories


def annotation_files(path: Path) -> list[Path]:
    """The EMOTIC CSV files at ``path`` (a CSV file, or a folder holding them)."""
    files = [path] if path.is_file() else sorted(path.glob("*.csv")) if path.is_dir() else []
    found = []
    for file in files:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
        if is_emotic_header([h.strip().lower() for h in header]):
            found.append(file)
    return found


def _parse_categories(text: str, where: str) -> list[str]:
    text = text.strip()
    if text.startswith("["):
        try:
            names = [str(v) for v in ast.literal_eval(text)]
        except (ValueError, SyntaxError):
            raise DatasetLayoutError(f"{where}: cannot parse categories {text!r}") from None
    else:
        names = [n for n in re.split(r"[;|]", text) if n.strip()]
    unknown = [n for n in names if n.strip().lower() not in _CANONICAL]
    if unknown:
        raise DatasetLayoutError(f"{where}: unknown EMOTIC categor{'y' if len(unknown) == 1 else 'ies'} "
                                 f"{', '.join(map(repr, unknown))}")
    return [_CANONICAL[n.strip().lower()] for n in names]


def _parse_box(row: dict[str, str], where: str) -> list[float]:
    try:
        if "bbox" in row:
            box = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", row["bbox"])]
        else:
            box = [float(row[k]) for k in ("x1", "y1", "x2", "y2")]
    except ValueError:
        box = []
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise DatasetLayoutError(f"{where}: person box must be x1,y1,x2,y2 with x2>x1 and y2>y1, "
                                 f"got {row.get('bbox') or [row.get(k) for k in ('x1', 'y1', 'x2', 'y2')]}")
    return box


def _images_root(csv_path: Path, first: dict[str, str] | None) -> Path:
    """The CSV's folder, or its parent when the first listed image is found there instead."""
    if first is not None:
        relative = Path(first.get("folder", "")) / first["filename"]
        for candidate in (csv_path.parent, csv_path.parent.parent):
            if (candidate / relative).is_file():
                return candidate
    return csv_path.parent


def _split_from_name(path: Path) -> str | None:
    name = path.stem.lower()
    return next((split for word, split in _SPLIT_WORDS if word in name), None)


def _read_rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """``(row number, row)`` pairs, each row a dict keyed by the lower-cased header; a row of the
    wrong width is an error."""
    rows = []
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        header = read_header(handle, csv_path)
        for number, row in enumerate(csv.reader(handle), start=2):
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DatasetLayoutError(f"{csv_path} row {number}: {len(row)} column(s), the header has {len(header)}")
            rows.append((number, dict(zip(header, (c.strip() for c in row)))))
    return rows


def read_emotic_csv(csv_path: str | Path, *, images_root: str | Path | None = None,
                    keep_unmapped: bool = False) -> list[Sample]:
    """Samples (one per person box) from one EMOTIC annotation CSV."""
    csv_path = Path(csv_path).resolve()
    rows = _read_rows(csv_path)
    if rows and not is_emotic_header(list(rows[0][1])):
        raise DatasetLayoutError(f"{csv_path}: not an EMOTIC annotation file; expected columns Filename, "
                                 f"[Folder], BBox (or x1,y1,x2,y2) and Categorical_Labels (or 26 category columns); "
                                 f"found {', '.join(rows[0][1])}")
    root = Path(images_root).resolve() if images_root else _images_root(csv_path, rows[0][1] if rows else None)
    default_split = _split_from_name(csv_path)
    persons: dict[str, int] = {}
    samples = []
    for number, row in rows:
        where = f"{csv_path} row {number}"
        path = resolve_inside(root, str(Path(row.get("folder", "")) / row["filename"]), where)
        if "categorical_labels" in row or "categories" in row:
            categories = _parse_categories(row.get("categorical_labels", row.get("categories", "")), where)
        else:
            categories = [_CANONICAL[k] for k, v in row.items() if k in _CANONICAL and v not in ("", "0", "0.0")]
        label = emotic_label(categories)
        person = persons.get(str(path), 0)
        persons[str(path)] = person + 1
        if label is None and not keep_unmapped:
            continue
        meta: dict[str, Any] = {"bbox": _parse_box(row, where), "categories": categories, "person": person}
        samples.append(Sample(str(path), label, split=row.get("split") or default_split, meta=meta))
    return samples


def crop_person(sample: Sample, mode: str = "RGB") -> Image.Image:
    """:attr:`ImageDataset.loader` for EMOTIC: decode the image and crop the person box (clipped
    to the image)."""
    image = sample.load(mode)
    x1, y1, x2, y2 = sample.meta["bbox"]
    box = (max(0, round(x1)), max(0, round(y1)), min(image.width, round(x2)), min(image.height, round(y2)))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ImageDecodeError(sample.path, "corrupt", f"person box {sample.meta['bbox']} lies outside the "
                               f"{image.width}x{image.height} image")
    return image.crop(box)


def read_emotic(path: str | Path, *, images_root: str | Path | None = None, keep_unmapped: bool = False,
                crop_person_box: bool = True, check_files: bool = True) -> ImageDataset:
    """Read EMOTIC from one annotation CSV or a folder of them (train/val/test)."""
    path = Path(path).resolve()
    files = annotation_files(path)
    if not files:
        raise DatasetLayoutError(f"{path}: no EMOTIC annotation CSV found (expected columns Filename, [Folder], "
                                 f"BBox and Categorical_Labels, as in annot_arrs_train.csv)")
    if images_root is None:
        rows = _read_rows(files[0])
        images_root = _images_root(files[0], rows[0][1] if rows else None)
    root = Path(images_root).resolve()
    samples = [s for f in files for s in read_emotic_csv(f, images_root=root, keep_unmapped=keep_unmapped)]
    if check_files:
        check_exist(samples, path)
    return ImageDataset("emotic", str(root), IER_CLASSES, samples, to_ier={c: c for c in IER_CLASSES},
                        loader=crop_person if crop_person_box else None)
