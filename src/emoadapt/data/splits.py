"""Repeatable train/val/test splits and k folds, stratified by label and, where the data has them,
grouped by subject, saved as a JSON manifest.

Grouping (``group=``): ``"subject"`` keeps every image of one person in one split (CK+, JAFFE);
``"image"`` keeps every sample of one file together (EMOTIC person boxes); ``"none"`` splits
samples independently; ``"auto"`` (default) picks the first that applies, in that order.

The algorithm is deterministic for a given seed and file list: group keys are sorted, shuffled with
``random.Random(seed)``, ordered largest group first, then each group goes to the split (or fold)
whose per-class quota it fills best (ties: the split furthest below its overall size) — so every
split gets about its fraction of every class.

The manifest (written atomically) stores the seed, the fractions or fold count, the grouping and
every sample's split, keyed by its path relative to the dataset root (``#<n>`` appended for the
n-th person box of an image), so a run can be repeated exactly even if the algorithm changes::

    {"format": "emoadapt-split-manifest", "version": 1, "dataset": "ckplus48", "root": "...",
     "kind": "holdout", "seed": 0, "fractions": {"train": 0.7, "val": 0.15, "test": 0.15},
     "folds": null, "group": "subject", "counts": {"train": 687, ...},
     "assignments": {"anger/S010_004_00000017.png": "train", ...}}
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import DatasetLayoutError, EmoadaptError
from ..fileio import atomic_write_json
from .records import ImageDataset, Sample

FORMAT = "emoadapt-split-manifest"
VERSION = 1
GROUPINGS = ("auto", "subject", "image", "none")
_SPLIT_ORDER = ("Training", "PublicTest", "PrivateTest", "train", "val", "test")


def split_sort_key(name: str) -> tuple[int, int, str]:
    """Order split names: FER2013's official ones, train/val/test, fold0, fold1… (numerically), then the rest."""
    if name in _SPLIT_ORDER:
        return (0, _SPLIT_ORDER.index(name), "")
    if name.startswith("fold") and name[4:].isdigit():
        return (1, int(name[4:]), "")
    return (2, 0, name)


@dataclass
class SplitManifest:
    """Which split (``train``/``val``/``test``, or ``fold0``…) every sample of a dataset is in."""

    assignments: dict[str, str]
    seed: int
    group: str
    kind: str = "holdout"  # or "kfold"
    fractions: dict[str, float] | None = None
    folds: int | None = None
    dataset: str = ""
    root: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.assignments.values()).items(), key=lambda kv: split_sort_key(kv[0])))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "dataset": self.dataset, "root": self.root,
                "kind": self.kind, "seed": self.seed, "fractions": self.fractions, "folds": self.folds,
                "group": self.group, "counts": self.counts(), **self.extra,
                "assignments": dict(sorted(self.assignments.items()))}


def sample_key(sample: Sample, root: str | Path) -> str:
    """The manifest key of a sample: its POSIX path relative to ``root`` (``#n`` for person boxes)."""
    path = Path(sample.path)
    try:
        key = path.relative_to(root).as_posix()
    except ValueError:
        key = path.as_posix()
    return f"{key}#{sample.meta['person']}" if "person" in sample.meta else key


def choose_grouping(dataset: ImageDataset, group: str = "auto") -> str:
    """Resolve ``group="auto"`` and check that the requested grouping is possible."""
    if group not in GROUPINGS:
        raise EmoadaptError(f"group must be one of {', '.join(GROUPINGS)}, got {group!r}")
    has_subjects = any(s.subject for s in dataset.samples)
    if group == "subject" and not has_subjects:
        raise DatasetLayoutError(f"dataset {dataset.name!r} has no subject ids; use group='image' or 'none'")
    if group != "auto":
        return group
    if has_subjects:
        return "subject"
    paths = Counter(s.path for s in dataset.samples)
    return "image" if any(n > 1 for n in paths.values()) else "none"


def _group_of(sample: Sample, index: int, grouping: str) -> str:
    if grouping == "subject":
        return f"subject:{sample.subject}"
    if grouping == "image":
        return f"image:{sample.path}"
    return f"sample:{sample.path}#{sample.meta.get('person', index)}"


def _assign(dataset: ImageDataset, bins: list[str], fractions: list[float], seed: int,
            grouping: str) -> list[str]:
    """Split name of every sample (see the module docstring for the algorithm)."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, sample in enumerate(dataset.samples):
        members[_group_of(sample, i, grouping)].append(i)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -len(members[g]))  # stable: ties keep the shuffled order
    totals = Counter(str(s.label) for s in dataset.samples)
    deficit = [{label: f * n for label, n in totals.items()} for f in fractions]
    result = [""] * len(dataset.samples)
    for group in order:
        labels = Counter(str(dataset.samples[i].label) for i in members[group])
        scores = [sum(n * need[label] for label, n in labels.items()) for need in deficit]
        overall = [sum(need.values()) for need in deficit]  # ties: the split furthest below its size
        best = max(range(len(bins)), key=lambda b: (scores[b], overall[b], -b))
        for label, n in labels.items():
            deficit[best][label] -= n
        for i in members[group]:
            result[i] = bins[best]
    return result


def _manifest(dataset: ImageDataset, names: list[str], **fields: Any) -> SplitManifest:
    assignments: dict[str, str] = {}
    for sample, name in zip(dataset.samples, names):
        key = sample_key(sample, dataset.root)
        if assignments.setdefault(key, name) != name:
            raise DatasetLayoutError(f"two samples share the manifest key {key!r} but landed in different splits")
    return SplitManifest(assignments, dataset=dataset.name, root=dataset.root, **fields)


def split_dataset(dataset: ImageDataset, *, val: float = 0.15, test: float = 0.15, seed: int = 0,
                  group: str = "auto") -> SplitManifest:
    """A stratified (and, where possible, subject-wise) train/val/test split of ``dataset``."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise EmoadaptError(f"val and test must be fractions in [0, 1) with val + test < 1, got {val}, {test}")
    grouping = choose_grouping(dataset, group)
    fractions = {"train": round(1 - val - test, 10), "val": val, "test": test}
    names = _assign(dataset, list(fractions), list(fractions.values()), seed, grouping)
    return _manifest(dataset, names, seed=seed, group=grouping, kind="holdout", fractions=fractions)


def kfold_dataset(dataset: ImageDataset, *, folds: int = 5, seed: int = 0, group: str = "auto") -> SplitManifest:
    """Stratified (and, where possible, subject-wise) assignment of every sample to one of ``folds`` folds."""
    if folds < 2:
        raise EmoadaptError(f"folds must be at least 2, got {folds}")
    grouping = choose_grouping(dataset, group)
    names = _assign(dataset, [f"fold{k}" for k in range(folds)], [1 / folds] * folds, seed, grouping)
    return _manifest(dataset, names, seed=seed, group=grouping, kind="kfold", folds=folds)


def write_manifest(manifest: SplitManifest, path: str | Path) -> Path:
    """Write ``manifest`` as JSON, atomically."""
    atomic_write_json(path, manifest.to_json())
    return Path(path)


def read_manifest(path: str | Path) -> SplitManifest:
    """Read a manifest written by :func:`write_manifest`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetLayoutError(f"cannot read split manifest {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("assignments"), dict):
        raise DatasetLayoutError(f"{path} is not an emoadapt split manifest (format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise DatasetLayoutError(f"{path}: manifest version {data.get('version')} is not supported "
                                 f"(expected {VERSION})")
    known = {"format", "version", "dataset", "root", "kind", "seed", "fractions", "folds", "group", "counts",
             "assignments"}
    return SplitManifest(assignments=dict(data["assignments"]), seed=data.get("seed"), group=data.get("group", ""),
                         kind=data.get("kind", "holdout"), fractions=data.get("fractions"), folds=data.get("folds"),
                         dataset=data.get("dataset", ""), root=data.get("root", ""),
                         extra={k: v for k, v in data.items() if k not in known})


def apply_manifest(dataset: ImageDataset, manifest: SplitManifest, *, strict: bool = True) -> ImageDataset:
    """A copy of ``dataset`` whose samples carry the manifest's split names.

    With ``strict`` (default) every sample must be in the manifest and every manifest entry in the
    dataset, so a changed dataset cannot silently change an experiment; otherwise samples missing
    from the manifest are dropped.
    """
    keys = [sample_key(s, dataset.root) for s in dataset.samples]
    missing = [k for k in keys if k not in manifest.assignments]
    if strict:
        extra = set(manifest.assignments) - set(keys)
        if missing or extra:
            raise DatasetLayoutError(
                f"the split manifest does not match dataset {dataset.name!r} at {dataset.root}: "
                f"{len(missing)} sample(s) not in the manifest (e.g. {', '.join(missing[:3]) or '-'}), "
                f"{len(extra)} manifest entr{'y' if len(extra) == 1 else 'ies'} not in the dataset "
                f"(e.g. {', '.join(sorted(extra)[:3]) or '-'})")
    samples = [replace(s, split=manifest.assignments[k]) for s, k in zip(dataset.samples, keys)
               if k in manifest.assignments]
    return replace(dataset, samples=samples)


def fold(dataset: ImageDataset, manifest: SplitManifest, k: int) -> tuple[ImageDataset, ImageDataset]:
    """``(train, test)`` for fold ``k`` of a k-fold manifest: fold ``k`` is the test set."""
    if manifest.kind != "kfold" or manifest.folds is None or not 0 <= k < manifest.folds:
        raise EmoadaptError(f"fold {k} does not exist in this manifest (kind {manifest.kind}, folds {manifest.folds})")
    split = apply_manifest(dataset, manifest)
    return (split.subset(lambda s: s.split != f"fold{k}"), split.subset(lambda s: s.split == f"fold{k}"))


def select_splits(dataset: ImageDataset, manifest: str | Path | None = None,
                  splits: list[str] | tuple[str, ...] | None = None) -> ImageDataset:
    """``dataset`` with the split names of ``manifest`` (when given), restricted to ``splits``
    (when given). A manifest made by ``adapt`` lists only the samples with an IER class; it is
    then applied to the IER-relabelled dataset. Raises when the chosen splits hold no images."""
    if manifest is not None:
        plan = read_manifest(manifest)
        try:
            dataset = apply_manifest(dataset, plan)
        except EmoadaptError:
            if dataset.to_ier is None:
                raise
            dataset = apply_manifest(dataset.to_ier_dataset(), plan)
    if splits:
        dataset = dataset.split(*splits)
        if len(dataset) == 0:
            raise EmoadaptError(f"no images in split(s) {', '.join(splits)} of {dataset.root}")
    return dataset
