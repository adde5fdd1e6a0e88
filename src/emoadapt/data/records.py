"""What every dataset reader returns: a list of :class:`Sample` records wrapped in an
:class:`ImageDataset`. Readers only list files and parse labels; pixels are decoded lazily, on
``Sample.load()`` or while iterating ``ImageDataset.iter_images()``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from PIL import Image

from ..errors import EmoadaptError
from .decode import decode_image


@dataclass(frozen=True)
class Sample:
    """One labelled image on disk.

    Attributes:
        path: absolute path of the image file.
        label: class name in the dataset's own vocabulary (e.g. ``"angry"`` for FER2013,
            ``"joy"`` for Emotion6), or ``None`` when unlabelled.
        split: split name when the dataset defines one (``"Training"``, ``"PublicTest"``…).
        subject: person id where the dataset has one (CK+ ``S005``, JAFFE ``KA``).
        meta: anything else the layout carries (votes, valence, boxes, crop info…).
    """

    path: str
    label: str | None
    split: str | None = None
    subject: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def load(self, mode: str = "RGB", **decode_kwargs: Any) -> Image.Image:
        """Decode this sample's image (see :func:`emoadapt.data.decode_image`)."""
        return decode_image(self.path, mode=mode, **decode_kwargs)


@dataclass
class ImageDataset:
    """A named list of samples with its class vocabulary.

    Attributes:
        name: layout name (``"fer2013"``, ``"folder"``…).
        root: the folder (or file) it was read from.
        classes: the dataset's class names, in a fixed order.
        samples: the records.
        to_ier: map from the dataset's labels to the 4 IER classes (labels missing from the
            map have no IER class), or ``None`` when the dataset has no such map.
        loader: optional custom image loader ``Sample -> PIL.Image`` (JAFFE crops faces).
    """

    name: str
    root: str
    classes: tuple[str, ...]
    samples: list[Sample]
    to_ier: dict[str, str] | None = None
    loader: Callable[[Sample, str], Image.Image] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def load(self, sample: Sample, mode: str = "RGB") -> Image.Image:
        """Decode one sample with this dataset's loader."""
        if self.loader is not None:
            return self.loader(sample, mode)
        return sample.load(mode)

    def iter_images(self, mode: str = "RGB") -> Iterator[tuple[Image.Image, Sample]]:
        """Yield ``(image, sample)`` pairs, decoding one image at a time."""
        for sample in self.samples:
            yield self.load(sample, mode), sample

    def subset(self, keep: Callable[[Sample], bool], name: str | None = None) -> "ImageDataset":
        """A copy holding only the samples for which ``keep(sample)`` is true."""
        return replace(self, name=name or self.name, samples=[s for s in self.samples if keep(s)])

    def sample(self, limit: int | None, seed: int = 0) -> "ImageDataset":
        """A seeded random choice of at most ``limit`` samples, kept in dataset order (the same
        ones for the same seed); the dataset itself when ``limit`` is None or not smaller."""
        if limit is None or limit >= len(self.samples):
            return self
        if limit < 1:
            raise EmoadaptError(f"a limit of images must be at least 1, got {limit}")
        import numpy as np

        keep = np.sort(np.random.default_rng(seed).permutation(len(self.samples))[:limit])
        return replace(self, samples=[self.samples[i] for i in keep])

    def split(self, *names: str) -> "ImageDataset":
        """Samples whose ``split`` is one of ``names``."""
        wanted = set(names)
        return self.subset(lambda s: s.split in wanted)

    def with_label_map(self, label_map: dict[str, str] | None) -> "ImageDataset":
        """A copy whose map onto the IER classes is ``label_map`` (``--label-map``: dataset label →
        IER class; labels that are IER classes already keep their name, labels named nowhere have
        no IER class). ``None`` leaves the dataset as it is."""
        from .labels import IER_CLASSES, checked_label_map

        if label_map is None:
            return self
        label_map = checked_label_map(label_map)
        unknown = sorted(set(label_map) - set(self.classes))
        if unknown:
            raise EmoadaptError(f"{self.root}: --label-map names {', '.join(unknown)}, which is not a label here "
                                f"(its labels: {', '.join(sorted(self.classes))})")
        identity = {label: label for label in self.classes if label in IER_CLASSES}
        return replace(self, to_ier={**identity, **label_map})

    def to_ier_dataset(self) -> "ImageDataset":
        """Relabel onto the 4 IER classes, dropping samples whose label has no IER class. Raises
        :func:`~emoadapt.data.labels.no_ier_map_error` when the dataset has no such map."""
        from .labels import IER_CLASSES, no_ier_map_error

        if self.to_ier is None:
            raise no_ier_map_error(self.root, self.classes)
        mapped = [
            replace(s, label=self.to_ier[s.label], meta={**s.meta, "source_label": s.label})
            for s in self.samples
            if s.label in self.to_ier
        ]
        identity = {c: c for c in IER_CLASSES}
        return replace(self, classes=IER_CLASSES, samples=mapped, to_ier=identity)

    def label_counts(self) -> Counter:
        return Counter(s.label for s in self.samples)

    def split_counts(self) -> Counter:
        return Counter(s.split for s in self.samples)
