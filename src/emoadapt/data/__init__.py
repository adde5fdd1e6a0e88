"""Datasets: readers for every supported layout, safe decoding, splits and summaries.

``open_dataset(path, layout="auto")`` returns an :class:`ImageDataset` (a list of :class:`Sample`
records; pixels are decoded lazily). Layouts: ``fer2013``, ``ckplus48``, ``jaffe``, ``emotion6``,
``fi``, ``artphoto``, ``iaps``, ``emotic``, ``folder`` (a folder per class) and ``csv``
(``path,label[,split]``). See docs/data.md for each layout and its map onto the 4 IER classes.
"""

from __future__ import annotations

import csv
import random
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from ..errors import DatasetLayoutError, ImageDecodeError
from .artphoto import artphoto_root, read_artphoto
from .ckplus import CKPLUS_CLASSES, CKPLUS_TO_IER, ckplus_root, read_ckplus48
from .csvfile import read_csv_dataset
from .decode import DEFAULT_MAX_PIXELS, decode_image, probe_image
from .emotic import EMOTIC_CATEGORIES, EMOTIC_TO_IER, annotation_files, is_emotic_header, read_emotic
from .emotion6 import EMOTION6_CLASSES, EMOTION6_TO_IER, emotion6_root, read_emotion6
from .faces import crop_face, find_cascade
from .fer2013 import looks_like_fer2013, read_fer2013
from .fi import looks_like_mikels_folder, read_fi
from .folder import IMAGE_EXTENSIONS, looks_like_folder, read_folder
from .iaps import LIST_SUFFIXES, read_iaps
from .jaffe import JAFFE_CODES, FaceCropLoader, jaffe_root, read_jaffe
from .labels import FER_CLASSES, FER_TO_IER, IER_CLASSES, MIKELS_CLASSES, MIKELS_TO_IER
from .locate import data_home, dataset_path
from .records import ImageDataset, Sample
from .splits import (SplitManifest, apply_manifest, fold, kfold_dataset, read_manifest, split_dataset,
                     split_sort_key, write_manifest)

__all__ = [
    "ImageDataset", "Sample", "open_dataset", "detect_layout", "summarize", "LAYOUTS", "decode_image",
    "probe_image", "DEFAULT_MAX_PIXELS", "read_fer2013", "read_ckplus48", "read_jaffe", "read_emotion6", "read_fi",
    "read_artphoto", "read_iaps", "read_emotic", "read_folder", "read_csv_dataset", "crop_face", "find_cascade",
    "FaceCropLoader", "SplitManifest", "split_dataset", "kfold_dataset", "write_manifest", "read_manifest",
    "apply_manifest", "fold", "FER_CLASSES", "IER_CLASSES", "FER_TO_IER", "MIKELS_CLASSES", "MIKELS_TO_IER",
    "CKPLUS_CLASSES", "CKPLUS_TO_IER", "JAFFE_CODES", "EMOTION6_CLASSES", "EMOTION6_TO_IER",
    "EMOTIC_CATEGORIES", "EMOTIC_TO_IER", "IMAGE_EXTENSIONS", "data_home", "dataset_path",
]

READERS: dict[str, Callable[..., ImageDataset]] = {
    "fer2013": read_fer2013, "ckplus48": read_ckplus48, "jaffe": read_jaffe, "emotion6": read_emotion6,
    "fi": read_fi, "artphoto": read_artphoto, "iaps": read_iaps, "emotic": read_emotic,
    "folder": read_folder, "csv": read_csv_dataset,
}
LAYOUTS: tuple[str, ...] = tuple(READERS)

#: Specific folder layouts and how to recognise them; the generic ``folder`` is tried last.
_FOLDER_TESTS: dict[str, Callable[[Path], Any]] = {
    "fer2013": looks_like_fer2013, "ckplus48": ckplus_root, "jaffe": jaffe_root, "emotion6": emotion6_root,
    "artphoto": artphoto_root, "emotic": annotation_files,
}


def _file_layout(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = [h.strip().lower() for h in next(csv.reader(handle), [])]
        if is_emotic_header(header):
            return "emotic"
        if "path" in header and "label" in header:
            return "csv"
    elif suffix in LIST_SUFFIXES:
        return "iaps"
    raise DatasetLayoutError(f"cannot tell the layout of {path}: a CSV needs a path,label header (layout csv) or "
                             f"EMOTIC columns (layout emotic); pass --layout, one of {', '.join(LAYOUTS)}")


def _archive_hint(path: Path) -> str:
    """Why a dataset path that is missing (or holds only archives) cannot be read, and what to do."""
    candidates = [path.with_name(path.name + ext) for ext in (".tar.gz", ".tgz", ".zip", ".tar")]
    archives = [c for c in candidates if c.is_file()]
    if path.is_dir():
        archives += sorted(p for p in path.iterdir() if p.name.endswith((".tar.gz", ".tgz", ".zip", ".tar")))
    if not archives:
        return ""
    folder = archives[0].parent
    unpack = f"{folder}/unpack.sh DIR" if (folder / "unpack.sh").exists() else f"tar -xzf {archives[0]} -C DIR"
    return (f"; {folder} holds archives ({', '.join(a.name for a in archives[:4])}), not images: unpack them "
            f"first ({unpack}) and pass the unpacked folder, e.g. DIR/{archives[0].name.split('.')[0]}")


def detect_layout(path: str | Path) -> str:
    """The layout of the dataset at ``path``; raises when none or several specific layouts fit."""
    path = Path(path)
    if not path.exists():
        raise DatasetLayoutError(f"{path} does not exist{_archive_hint(path)}")
    if path.is_file():
        return _file_layout(path)
    found = [name for name, test in _FOLDER_TESTS.items() if test(path)]
    if looks_like_mikels_folder(path):
        found += ["fi", "iaps"]
    if len(found) == 1:
        return found[0]
    if found:
        raise DatasetLayoutError(f"{path} fits several layouts ({', '.join(found)}); pass --layout with one of them")
    hint = _archive_hint(path)
    if hint:
        raise DatasetLayoutError(f"{path} is not a dataset folder{hint}")
    if looks_like_folder(path):
        return "folder"
    raise DatasetLayoutError(f"cannot tell the layout of {path}; pass --layout, one of {', '.join(LAYOUTS)} "
                             f"(see docs/data.md)")


def open_dataset(path: str | Path, layout: str = "auto", **options: Any) -> ImageDataset:
    """Read the dataset at ``path`` (a folder, or a CSV/list file) in ``layout`` (``"auto"``:
    :func:`detect_layout`). ``options`` go to the layout's reader (e.g. ``crop_faces=False`` for
    JAFFE, ``keep_unmapped=True`` for EMOTIC, ``label_map=`` for folder)."""
    if layout == "auto":
        layout = detect_layout(path)
    if layout not in READERS:
        raise DatasetLayoutError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)} or auto")
    if not Path(path).exists():
        raise DatasetLayoutError(f"{path} does not exist{_archive_hint(Path(path))}")
    return READERS[layout](path, **options)


def _stats(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else {}


def image_sizes(paths: list[str], limit: int | None = 200, seed: int = 0) -> dict[str, Any]:
    """Width/height statistics, modes and formats of (a seeded sample of at most ``limit`` of) ``paths``,
    from the file headers only; unreadable files are listed with their reason."""
    unique = sorted(set(paths))
    chosen = unique if limit is None or len(unique) <= limit else sorted(random.Random(seed).sample(unique, limit))
    widths, heights, modes, formats, failed = [], [], Counter(), Counter(), []
    for path in chosen:
        try:
            info = probe_image(path)
        except ImageDecodeError as exc:
            failed.append({"path": path, "reason": exc.reason})
            continue
        widths.append(info["width"])
        heights.append(info["height"])
        modes[info["mode"]] += 1
        formats[info["format"]] += 1
    return {"sampled": len(chosen), "files": len(unique), "width": _stats(widths), "height": _stats(heights),
            "modes": dict(modes.most_common()), "formats": dict(formats.most_common()), "unreadable": failed}


def summarize(dataset: ImageDataset, *, sizes: int | None = 200, seed: int = 0) -> dict[str, Any]:
    """Counts per class, per split and per split × class (always exact), subjects, the IER
    mapping, and image-size statistics from at most ``sizes`` files (``None``: all; ``0``: skip)."""
    labels = Counter(s.label for s in dataset.samples)
    order = list(dataset.classes) + sorted(str(c) for c in labels if c not in dataset.classes and c is not None)
    classes = {c: labels.get(c, 0) for c in order}
    if labels.get(None):
        classes["(unlabelled)"] = labels[None]
    splits: dict[str, dict[str, int]] = {}
    for sample in dataset.samples:
        split = splits.setdefault(sample.split or "(none)", {})
        label = "(unlabelled)" if sample.label is None else sample.label
        split[label] = split.get(label, 0) + 1
    splits = dict(sorted(splits.items(), key=lambda kv: split_sort_key(kv[0])))
    summary: dict[str, Any] = {
        "name": dataset.name, "root": dataset.root, "samples": len(dataset),
        "files": len({s.path for s in dataset.samples}), "classes": classes,
        "splits": {k: sum(v.values()) for k, v in splits.items()}, "split_classes": splits,
        "subjects": len({s.subject for s in dataset.samples if s.subject}) or None,
    }
    if dataset.to_ier is not None:
        mapped = Counter(dataset.to_ier.get(s.label) for s in dataset.samples if s.label is not None)
        summary["ier"] = {c: mapped.get(c, 0) for c in IER_CLASSES}
        summary["ier"]["(no IER class)"] = mapped.get(None, 0) + labels.get(None, 0)
    agrees = [s for s in dataset.samples if "vote_agrees" in s.meta]
    if agrees:
        summary["vote_agrees"] = {c: sum(1 for s in agrees if s.label == c and s.meta["vote_agrees"]) for c in order}
    if sizes != 0:
        summary["sizes"] = image_sizes([s.path for s in dataset.samples], sizes, seed)
    return summary
